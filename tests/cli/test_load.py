"""`conveyor load` against a real Redis, a real worker of `conveyor demo`'s tasks and the
real API served over HTTP on a loopback port."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import Result

from conveyor import Conveyor
from conveyor.broker.admin import MAX_RECORDS
from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.producer import Message
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer, free_port
from conveyor.tools.load import DEFAULT_TASK, Plan, Schedule, Via, is_loopback
from conveyor.tools.load_follow import percentiles
from tests.api.test_server import running_api
from tests.cli.conftest import Invoke, _invoker
from tests.support.processes import WorkerProcess
from tests.support.worker import wait_until_sync

DEMO_APP = "conveyor.tools.demo_tasks:app"
#: More than the API's default body limit (1 MiB): every request is refused with a 413.
HUGE_PAYLOAD = json.dumps("x" * (1024 * 1024 + 10))


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    """`conveyor worker` of the demo's tasks, on the default queue."""
    process = WorkerProcess(settings, tmp_path, "--queues", "default", app=DEMO_APP)
    yield process
    process.stop()
    print(process.log())  # shown by pytest when a test fails


@pytest.fixture
def api_url(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """`conveyor api` on a free loopback port; its base URL."""
    with running_api(settings, tmp_path) as (_, base):
        yield base


def report(result: Result) -> dict[str, Any]:
    """The --json report of a run that exited as expected."""
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def pending(r: redis.Redis, keys: QueueKeys) -> int:
    count: int = r.zcard(keys.pending) + r.llen(keys.ready)
    return count


def stored_records(app: Conveyor, r: redis.Redis, keys: QueueKeys) -> list[Any]:
    """Every task record of the default queue, read one by one (not as `load` reads them)."""
    ids = [key.decode()[len(keys.task_prefix) :] for key in r.scan_iter(keys.task_prefix + "*")]
    return [app.get_record(task_id) for task_id in ids]


# -- the schedule and the batched read -----------------------------------------------


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_schedule_paces_slices_at_the_rate() -> None:
    clock = Clock()
    schedule = Schedule(Plan(Via.REDIS, tasks=10, rate=4), clock)
    slices = [schedule.take(4) for _ in range(4)]
    # task i is due i/4 s after the start; the last slice holds what is left
    assert slices == [(4, 100.0), (4, 101.0), (2, 102.0), None]


def test_schedule_stops_at_the_duration() -> None:
    clock = Clock()
    paced = Schedule(Plan(Via.REDIS, duration=1, rate=2), clock)
    assert [paced.take(1) for _ in range(3)] == [(1, 100.0), (1, 100.5), None]
    fast = Schedule(Plan(Via.REDIS, duration=1), clock)
    assert fast.take(50) == (50, 100.0)
    clock.now = 101.0
    assert fast.take(50) is None


def test_percentiles_by_nearest_rank() -> None:
    assert percentiles([]) is None
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0, "p99": 3.0}
    values = [float(v) for v in range(101)]  # 0..100; the order given does not matter
    assert percentiles(values[::-1]) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}


async def test_records_reads_many_in_order_on_both_faces(aapp: Conveyor) -> None:
    handles = aapp.enqueue_many([Message("t", (i,)) for i in range(MAX_RECORDS + 5)])
    ids = [h.id for h in handles]
    asked = [ids[0], "default:01JD0000000000000000000000", "not an id", *ids[1:]]
    for records in (aapp.inspector.records(asked), await aapp.async_inspector().records(asked)):
        assert records[1] is None and records[2] is None
        found = [records[0], *records[3:]]
        assert [r.id if r else None for r in found] == ids
        assert [r.args if r else None for r in found] == [[i] for i in range(MAX_RECORDS + 5)]


# -- sending -------------------------------------------------------------------------


def test_via_redis_sends_n_tasks_in_batches(
    invoke: Invoke, r: redis.Redis, keys: QueueKeys
) -> None:
    result = invoke("load", "--via", "redis", "-n", "250", "--batch", "40", "--json")
    assert result.exit_code == 0, result.output
    sending = report(result)["sending"]
    assert (sending["via"], sending["task"], sending["queue"]) == ("redis", DEFAULT_TASK, "default")
    assert (sending["sent"], sending["requests"], sending["errors"]) == (250, 7, {})
    assert sending["per_second"] > 0 and set(sending["request_seconds"]) == {"p50", "p95", "p99"}
    assert pending(r, keys) == 250
    assert report(result)["completion"] is None


def test_via_redis_to_another_queue(invoke: Invoke, r: redis.Redis, prefix: str) -> None:
    result = invoke("load", "--via", "redis", "-n", "30", "--queue", "bulk", "--json")
    assert result.exit_code == 0, result.output
    assert report(result)["sending"]["queue"] == "bulk"
    assert pending(r, GlobalKeys(prefix).queue("bulk")) == 30


def test_rate_paces_the_run(invoke: Invoke, r: redis.Redis, keys: QueueKeys) -> None:
    result = invoke("load", "--via", "redis", "-d", "2", "--rate", "50", "--batch", "1", "--json")
    assert result.exit_code == 0, result.output
    sending = report(result)["sending"]
    # task i is due at i/50 s: 100 fit in 2 s; a busy machine may send a few less, never more
    assert 70 <= sending["sent"] <= 100
    assert 1.5 <= sending["seconds"] <= 4
    assert pending(r, keys) == sending["sent"]


def test_duration_stops_a_run_as_fast_as_possible(
    invoke: Invoke, r: redis.Redis, keys: QueueKeys
) -> None:
    began = time.monotonic()
    result = invoke("load", "--via", "redis", "-d", "0.5", "--json")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - began < 5
    sending = report(result)["sending"]
    assert sending["sent"] > 100 and sending["seconds"] < 2.5
    assert pending(r, keys) == sending["sent"]


def test_ctrl_c_stops_the_run_with_a_report(
    settings: Settings, r: redis.Redis, keys: QueueKeys
) -> None:
    command = [sys.executable, "-m", "conveyor", "--redis-url", settings.redis_url,
               "--prefix", settings.prefix, "load", "--via", "redis", "-d", "60", "--rate", "20",
               "--batch", "1", "--json"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until_sync(lambda: pending(r, keys) >= 5, 15, "the run to send")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 1, err
    answer = json.loads(out)
    assert answer["interrupted"] is True
    assert 5 <= answer["sending"]["sent"] == pending(r, keys) < 600
    assert answer["sending"]["seconds"] < 30


# -- the whole system: API, worker, --wait -------------------------------------------


def test_via_http_with_wait_reports_what_the_records_say(
    invoke: Invoke, api_url: str, worker: WorkerProcess, app: Conveyor, r: redis.Redis,
    keys: QueueKeys,
) -> None:  # fmt: skip
    result = invoke("load", "--url", api_url, "-n", "120", "-c", "4", "--wait", "--json")
    assert result.exit_code == 0, result.output + worker.log()
    sent = report(result)["sending"]
    assert (sent["via"], sent["sent"], sent["requests"], sent["errors"]) == ("http", 120, 120, {})
    done = report(result)["completion"]
    assert (done["finished"], done["unfinished"], done["missing"]) == (120, 0, 0)
    assert done["states"] == {"succeeded": 120}
    # the same figures, computed here from every record in Redis
    records = stored_records(app, r, keys)
    assert len(records) == 120 and all(rec.name == DEFAULT_TASK for rec in records)
    waits = [(rec.started_at - rec.enqueued_at).total_seconds() for rec in records]
    assert done["wait_seconds"] == percentiles(waits)
    first = min(rec.enqueued_at for rec in records)
    last = max(rec.finished_at for rec in records)
    assert done["seconds"] == pytest.approx((last - first).total_seconds())
    assert done["per_second"] == pytest.approx(120 / done["seconds"])
    p = done["wait_seconds"]
    assert 0 <= p["p50"] <= p["p95"] <= p["p99"]


def test_records_read_from_another_keyspace_are_all_missing_and_it_says_why(
    api_url: str, worker: WorkerProcess, redis_server: RedisServer
) -> None:
    """The API writes under the test's prefix; this load reads under another one."""
    elsewhere = _invoker(redis_server.url, "elsewhere")
    result = elsewhere("load", "--url", api_url, "-n", "5", "--wait", "--timeout", "5")
    assert "missing 5" in result.output
    assert "no record of any task sent: is this the Redis behind the API?" in result.output


def test_via_redis_with_wait_prints_a_report(invoke: Invoke, worker: WorkerProcess) -> None:
    result = invoke("load", "--via", "redis", "-n", "300", "--wait")
    assert result.exit_code == 0, result.output + worker.log()
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"sent 300 {DEFAULT_TASK} tasks to queue default via redis in ")
    assert lines[2].startswith("finished 300 (succeeded 300) in ")
    assert "wait (enqueued -> started) p50 " in lines[3] and " p99 " in lines[3]


def test_wait_gives_up_at_its_timeout(invoke: Invoke) -> None:
    began = time.monotonic()
    result = invoke("load", "--via", "redis", "-n", "20", "--wait", "--timeout", "0.5", "--json")
    assert result.exit_code == 1  # no worker: nothing finishes
    assert time.monotonic() - began < 5
    done = report(result)["completion"]
    assert (done["finished"], done["unfinished"], done["states"]) == (0, 20, {})
    assert done["wait_seconds"] is None


def test_http_errors_are_counted_not_fatal(
    invoke: Invoke, api_url: str, r: redis.Redis, keys: QueueKeys
) -> None:
    result = invoke("load", "--url", api_url, "-n", "5", "-c", "2", "--payload", HUGE_PAYLOAD,
                    "--json")  # fmt: skip
    assert result.exit_code == 1  # nothing was sent
    sending = report(result)["sending"]
    assert (sending["sent"], sending["requests"], sending["errors"]) == (0, 5, {"413": 5})
    assert pending(r, keys) == 0
    # the same API takes a normal run right after
    result = invoke("load", "--url", api_url, "-n", "20", "--batch", "8", "--json")
    assert result.exit_code == 0, result.output
    assert (report(result)["sending"]["sent"], report(result)["sending"]["requests"]) == (20, 3)
    assert pending(r, keys) == 20


# -- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8085", True),
        ("http://localhost:8085", True),
        ("http://[::1]:8085", True),
        ("redis://127.0.0.2:6379/0", True),
        ("unix:///run/redis.sock", True),
        ("http://10.0.0.7:8085", False),
        ("http://api.example.com", False),
        ("redis://192.168.1.2:6379/0", False),
    ],
)
def test_loopback(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


def test_a_remote_target_is_refused_without_allow_remote(invoke: Invoke) -> None:
    result = invoke("load", "--url", "http://10.0.0.7:8085", "-n", "1")
    assert result.exit_code == 2
    assert "Error: http://10.0.0.7:8085 is not this machine: add --allow-remote" in result.output


def test_a_remote_redis_is_refused_without_allow_remote(prefix: str) -> None:
    from click.testing import CliRunner

    from conveyor.cli import cli

    url = "redis://10.0.0.7:6379/0"
    args = ["--redis-url", url, "--prefix", prefix, "load", "--via", "redis", "-n", "1"]
    result = CliRunner().invoke(cli, args, prog_name="conveyor")
    assert result.exit_code == 2
    assert f"Error: {url} is not this machine" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --tasks or --duration"),
        (("-n", "5", "-d", "1"), "give --tasks or --duration"),
        (("-n", "0"), "Invalid value for '-n' / '--tasks'"),
        (("-n", "10000001"), "Invalid value for '-n' / '--tasks'"),
        (("-d", "86401"), "Invalid value for '-d' / '--duration'"),
        (("-n", "5", "--payload", "{oops"), "Invalid value for --payload"),
        (("-n", "5", "--rate", "-1"), "Invalid value for '--rate'"),
        (("-n", "5", "--via", "smtp"), "Invalid value for '--via'"),
        (("-n", "1000001", "--wait"), "--wait follows at most 1,000,000 tasks"),
        (("-n", "100000", "--rate", "1"), "would take more than 24 h"),
    ],
)
def test_bad_input_is_one_clear_error(invoke: Invoke, args: tuple[str, ...], message: str) -> None:
    result = invoke("load", *args)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_an_api_that_does_not_answer_is_one_clear_error(invoke: Invoke) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("load", "--url", url, "-n", "10")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: the API at {url} does not answer: ")
    assert len(result.stderr.splitlines()) == 1
