"""`conveyor worker` as a real subprocess: it runs tasks, drains on SIGTERM, rejects bad input."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.broker.keys import GlobalKeys
from conveyor.tools.embedded import RedisServer, env_without_redis_url
from tests.support.handlers import read_ledger
from tests.support.worker import wait_until_sync

ROOT = Path(__file__).resolve().parents[2]


def worker_env(redis_url: str | None = None, prefix: str | None = None) -> dict[str, str]:
    """The test's environment for a worker subprocess, with `tests.support` importable."""
    env = env_without_redis_url()
    env.pop("CONVEYOR_PREFIX", None)
    env.update(PYTHONPATH=str(ROOT), CONVEYOR_LEASE_TIMEOUT="2")
    if redis_url is not None:
        env["CONVEYOR_REDIS_URL"] = redis_url
    if prefix is not None:
        env["CONVEYOR_PREFIX"] = prefix
    return env


def conveyor_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "conveyor", *args]


@pytest.fixture
def worker_process(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A `conveyor worker` subprocess on the test server; its output goes to a log file."""
    log = tmp_path / "worker.log"
    command = conveyor_command("worker", "tests.support.tasks:app", "--queues", "default")
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=worker_env(redis_server.url, prefix), cwd=ROOT, stdout=out, stderr=out
        )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_worker_runs_a_task_and_stops_cleanly_on_sigterm(
    worker_process: tuple[subprocess.Popen[bytes], Path],
    app: Conveyor,
    r: redis.Redis,
    prefix: str,
) -> None:
    process, log = worker_process
    handle = app.enqueue("record", "from-the-cli")

    def succeeded() -> bool:
        record = handle.record()
        return record is not None and record.state is TaskState.SUCCEEDED

    wait_until_sync(succeeded, 20, "the worker subprocess to run the task")
    record = handle.record()
    assert record is not None
    assert (record.result, record.attempts, record.reason) == ("from-the-cli", 1, None)
    ledger = read_ledger(r, prefix)
    assert [(e["id"], e["event"]) for e in ledger] == [(handle.id, "start"), (handle.id, "end")]
    assert {e["pid"] for e in ledger} == {process.pid}
    workers = GlobalKeys(prefix).workers
    assert r.zcard(workers) == 1

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0, log.read_text()
    assert r.zcard(workers) == 0
    assert "Traceback" not in log.read_text()


def run_worker_command(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `conveyor worker ...` to completion (bad input: it must exit on its own)."""
    return subprocess.run(
        conveyor_command("worker", *args),
        env=worker_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_worker_with_a_bad_app_spec_exits_1() -> None:
    result = run_worker_command("no.such.module:app")
    assert result.returncode == 1, result.stderr
    assert "Error: cannot import 'no.such.module'" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_with_an_app_spec_that_is_not_an_app_exits_1() -> None:
    result = run_worker_command("tests.support.tasks:handlers")
    assert result.returncode == 1, result.stderr
    assert "'tests.support.tasks:handlers' is not a Conveyor app" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_with_a_bad_queue_weight_exits_1() -> None:
    result = run_worker_command("tests.support.tasks:app", "--queues", "a:x")
    assert result.returncode == 1, result.stderr
    assert "queue weight must be an integer: 'a:x'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_pool_with_a_bad_app_spec_exits_1_and_leaves_no_process() -> None:
    # the supervisor starts its children before it imports the app: it must still fail
    # fast with the import error, and take its children down with it (a crash loop of
    # restarts would show in the log, and never end before the command's timeout)
    result = run_worker_command("no.such.module:app", "--workers", "2", "--metrics-port", "0")
    assert result.returncode == 1, result.stderr
    assert "Error: cannot import 'no.such.module'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("started (pid") == 2, result.stderr  # the two children only
    assert "restarting" not in result.stderr, result.stderr
    assert not [
        p for p in psutil.process_iter(["cmdline"])
        if "no.such.module:app" in " ".join(p.info["cmdline"] or [])
    ]  # fmt: skip


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stop_whose_exit_was_dropped_during_startup_still_stops_the_worker(
    redis_server: RedisServer, app: Conveyor, r: redis.Redis, prefix: str, workers: str
) -> None:
    """SIGTERM lands in a weakref callback while the app loads: the handler's SystemExit is
    dropped there, yet the worker (or each of the pool's) stops at once, claiming nothing.
    It used to start a worker that never heard the signal, and its supervisor waited on."""
    handle = app.enqueue("record", "must-stay-pending")
    result = subprocess.run(
        conveyor_command("worker", "tests.support.dropped_stop:app", "--workers", workers,
                         "--metrics-port", "0"),
        env=worker_env(redis_server.url, prefix), cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # the case under test did happen, and nothing else failed (counted by what each process
    # writes at once: a pool's children write to stderr together, their lines interleave)
    dropped = result.stderr.count("Exception ignored in:")
    assert dropped >= 1 and "_stop_me" in result.stderr, result.stderr
    assert result.stderr.count("Traceback") == dropped, result.stderr
    record = handle.record()
    assert record is not None and (record.state, record.attempts) == (TaskState.PENDING, 0)
    assert r.zcard(GlobalKeys(prefix).workers) == 0  # each worker that started deregistered
