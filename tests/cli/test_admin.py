"""`conveyor fsck` and `conveyor doctor`, run by click's CliRunner against the test Redis,
and doctor's pure verdicts on hand-made INFO and CONFIG replies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any, Protocol

import pytest
import redis
from click.testing import CliRunner, Result

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from conveyor.cli import cli
from conveyor.tools.doctor import Check, Verdict, _memory, _mode, _persistence, _version
from conveyor.tools.embedded import RedisServer, free_port
from tests.broker.seed import claim_one
from tests.support.keyspace import dump
from tests.support.worker import running_worker, wait_until

MiB = 2**20


class Invoke(Protocol):
    """Runs `conveyor --redis-url <test server> --prefix <test prefix> *args`."""

    def __call__(self, *args: str) -> Result: ...


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The root command points the root logger at the runner's stderr; undo it after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def invoke(redis_server: RedisServer, prefix: str) -> Invoke:
    runner = CliRunner()

    def run(*args: str) -> Result:
        options = ["--redis-url", redis_server.url, "--prefix", prefix]
        return runner.invoke(cli, [*options, *args], prog_name="conveyor")

    return run


def unreachable(*args: str) -> Result:
    """Runs `conveyor` against a port where no Redis listens."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    return CliRunner().invoke(cli, ["--redis-url", url, *args], prog_name="conveyor")


# -- fsck ------------------------------------------------------------------------------


def lose_lease(app: Conveyor, r: redis.Redis, queue: str = "default") -> str:
    """A task of `queue` that is active but holds no lease; returns its id."""
    task_id = app.enqueue("job", queue=queue).id
    broker = app.sync_broker()
    task = broker.run(broker.ops.claim(queue, 1, "w1")).tasks[0]
    assert task.id == task_id
    r.zrem(GlobalKeys(app.settings.prefix).queue(queue).active, task_id)
    return task_id


def test_fsck_of_a_healthy_keyspace_finds_nothing(invoke: Invoke, app: Conveyor) -> None:
    app.enqueue("job")
    app.enqueue("job", delay=60)
    claim_one(app.sync_broker())
    result = invoke("fsck")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "0 problem(s) found" in result.stderr


def test_fsck_lists_findings_and_exits_1_changing_nothing(
    invoke: Invoke, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    task_id = lose_lease(app, r)
    before = dump(r, prefix)
    result = invoke("fsck")
    assert result.exit_code == 1, result.output
    assert result.stdout == f"default\trecord {task_id}\tactive without lease\n"
    assert "1 problem(s) found" in result.stderr
    assert "Traceback" not in result.output
    assert dump(r, prefix) == before


def test_fsck_repair_fixes_says_how_and_exits_0(
    invoke: Invoke, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    task_id = lose_lease(app, r)
    registry = GlobalKeys(prefix).queues
    r.srem(registry, "default")
    result = invoke("fsck", "--repair")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"default\t{registry}\tqueue missing from the registry -> registered",
        f"default\trecord {task_id}\tactive without lease -> requeued",
    ]
    assert "2 problem(s) repaired" in result.stderr
    keys = GlobalKeys(prefix).queue("default")
    assert r.smembers(registry) == {b"default"}
    assert r.hget(keys.task(task_id), "state") == b"pending"
    assert r.zscore(keys.pending, task_id) is not None
    again = invoke("fsck")
    assert (again.exit_code, again.stdout) == (0, "")
    assert "0 problem(s) found" in again.stderr


def test_fsck_queue_limits_the_scan(
    invoke: Invoke, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    in_default, in_emails = lose_lease(app, r), lose_lease(app, r, "emails")
    lose_lease(app, r, "sms")
    r.srem(GlobalKeys(prefix).queues, "sms")  # the registry check is skipped too
    only = invoke("fsck", "--queue", "emails")
    assert only.exit_code == 1, only.output
    assert only.stdout == f"emails\trecord {in_emails}\tactive without lease\n"
    both = invoke("fsck", "--queue", "emails", "--queue", "default")
    assert both.exit_code == 1, both.output
    assert both.stdout.splitlines() == [
        f"emails\trecord {in_emails}\tactive without lease",
        f"default\trecord {in_default}\tactive without lease",
    ]
    assert "2 problem(s) found" in both.stderr
    repaired = invoke("fsck", "--queue", "emails", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert r.hget(GlobalKeys(prefix).queue("emails").task(in_emails), "state") == b"pending"
    assert r.hget(GlobalKeys(prefix).queue("default").task(in_default), "state") == b"active"


def test_fsck_rejects_an_invalid_queue_name(invoke: Invoke) -> None:
    result = invoke("fsck", "--queue", "a:b")
    assert result.exit_code == 1
    assert "invalid queue name 'a:b'" in result.stderr
    assert "Traceback" not in result.output


def test_fsck_with_redis_unreachable_exits_3() -> None:
    result = unreachable("fsck")
    assert result.exit_code == 3
    assert "unavailable" in result.stderr
    assert "Traceback" not in result.output


# -- doctor ----------------------------------------------------------------------------


def verdicts(result: Result) -> dict[str, tuple[str, str]]:
    """Each check's name -> (verdict, rest of its line)."""
    lines = [line.split(None, 2) for line in result.stdout.splitlines()]
    return {name: (verdict, rest) for verdict, name, rest in lines}


CHECKS = ["version", "mode", "eviction", "persistence", "memory", "latency", "clock", "workers"]


def test_doctor_on_the_test_server(
    invoke: Invoke, r: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """Our test server persists nothing and has no maxmemory: warnings, not failures."""
    result = invoke("doctor")
    assert result.exit_code == 0, result.output
    seen = verdicts(result)
    assert list(seen) == CHECKS
    for name in ["version", "mode", "eviction", "latency", "clock"]:
        assert seen[name][0] == "OK", seen[name]
    assert seen["version"][1] == f"Redis {r.info('server')['redis_version']}"
    assert seen["mode"][1] == "standalone, master"
    assert seen["eviction"][1] == "maxmemory-policy noeviction"
    assert seen["persistence"] == (
        "WARN",
        "Redis persists nothing: a Redis restart loses every task.  (fix: appendonly yes)",
    )
    assert seen["memory"][0] == "WARN" and "no maxmemory" in seen["memory"][1]
    assert seen["workers"][0] == "WARN" and f"(prefix {prefix})" in seen["workers"][1]


def test_doctor_fails_on_an_evicting_policy(invoke: Invoke, r: redis.Redis) -> None:
    r.config_set("maxmemory-policy", "allkeys-lru")
    try:
        result = invoke("doctor")
    finally:
        r.config_set("maxmemory-policy", "noeviction")
    assert result.exit_code == 1, result.output
    verdict, detail = verdicts(result)["eviction"]
    assert verdict == "FAIL"
    assert "maxmemory-policy allkeys-lru" in detail
    assert "(fix: CONFIG SET maxmemory-policy noeviction)" in detail


def test_doctor_fails_when_memory_is_nearly_full(invoke: Invoke, r: redis.Redis) -> None:
    used = int(r.info("memory")["used_memory"])
    r.config_set("maxmemory", used + used // 20)
    try:
        result = invoke("doctor")
    finally:
        r.config_set("maxmemory", 0)
    assert result.exit_code == 1, result.output
    verdict, detail = verdicts(result)["memory"]
    assert verdict == "FAIL"
    assert "(fix: raise maxmemory or drain queues)" in detail
    assert [name for name, (v, _) in verdicts(result).items() if v == "FAIL"] == ["memory"]


async def test_doctor_names_the_queues_of_a_live_worker(
    invoke: Invoke, aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    registry = GlobalKeys(prefix)

    async def registered() -> bool:
        return bool(r.exists(registry.worker("doctor-test-worker")))

    async with running_worker(aapp, "default,emails", worker_id="doctor-test-worker"):
        await wait_until(registered, 10, "the worker to register")
        result = await asyncio.to_thread(invoke, "doctor")
    assert result.exit_code == 0, result.output
    assert verdicts(result)["workers"] == ("OK", "1 alive, serving default, emails")


def test_doctor_with_redis_unreachable_exits_3() -> None:
    result = unreachable("doctor")
    assert result.exit_code == 3
    assert "unavailable" in result.stderr
    assert "Traceback" not in result.output


# -- doctor's verdicts, pure -----------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "verdict"),
    [
        ("5.0.14", Verdict.FAIL),
        ("6.0.20", Verdict.FAIL),
        ("6.2.0", Verdict.OK),
        ("6.2.14", Verdict.OK),
        ("7.0.15", Verdict.OK),
        ("10.0.0", Verdict.OK),
        ("garbage", Verdict.FAIL),
    ],
)
def test_version(version: str, verdict: Verdict) -> None:
    check = _version({"redis_version": version})
    assert (check.name, check.verdict, check.detail) == ("version", verdict, f"Redis {version}")
    assert check.fix == ("Conveyor needs Redis 6.2+" if verdict is Verdict.FAIL else "")


def test_version_unknown_fails() -> None:
    assert _version({}) == Check("version", Verdict.FAIL, "Redis ?", "Conveyor needs Redis 6.2+")


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (
            {"redis_mode": "standalone", "role": "master"},
            Check("mode", Verdict.OK, "standalone, master"),
        ),
        ({}, Check("mode", Verdict.OK, "standalone, master")),
        (
            {"redis_mode": "sentinel", "role": "master"},
            Check("mode", Verdict.FAIL, "this is a Sentinel", "point Conveyor at the master"),
        ),
        (
            {"redis_mode": "standalone", "role": "slave"},
            Check("mode", Verdict.FAIL, "role slave (read-only)", "point at the master"),
        ),
        (
            {"redis_mode": "cluster", "role": "slave"},
            Check("mode", Verdict.FAIL, "role slave (read-only)", "point at the master"),
        ),
    ],
    ids=["standalone", "defaults", "sentinel", "replica", "cluster-replica"],
)
def test_mode(info: dict[str, Any], expected: Check) -> None:
    assert _mode(info) == expected


def test_mode_cluster_warns_about_multi_queue_waits() -> None:
    check = _mode({"redis_mode": "cluster", "role": "master"})
    assert (check.verdict, check.detail) == (Verdict.WARN, "Redis Cluster")
    assert "hash tag" in check.fix


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"appendonly": "yes", "appendfsync": "always", "save": ""},
            Check("persistence", Verdict.OK, "AOF, appendfsync always: no loss on restart"),
        ),
        (
            {"appendonly": "yes", "appendfsync": "everysec", "save": "3600 1"},
            Check(
                "persistence",
                Verdict.WARN,
                "AOF, appendfsync everysec: a crash may lose the last second of writes",
                "appendfsync always",
            ),
        ),
        (
            {"appendonly": "no", "save": "3600 1 300 100", "maxmemory-policy": "allkeys-lru"},
            Check(
                "persistence",
                Verdict.WARN,
                "Redis persists by RDB snapshots only: a crash loses tasks since the last "
                "snapshot.",
                "appendonly yes",
            ),
        ),
        (
            {"appendonly": "no", "save": ""},
            Check(
                "persistence",
                Verdict.WARN,
                "Redis persists nothing: a Redis restart loses every task.",
                "appendonly yes",
            ),
        ),
        (
            None,
            Check(
                "persistence",
                Verdict.WARN,
                "CONFIG is not allowed here",
                "check appendonly=yes with your provider",
            ),
        ),
    ],
    ids=["aof-always", "aof-everysec", "rdb-only", "none", "config-forbidden"],
)
def test_persistence(config: dict[str, str] | None, expected: Check) -> None:
    assert _persistence(config) == expected


@pytest.mark.parametrize(
    ("used", "limit", "verdict", "detail"),
    [
        (10 * MiB, 0, Verdict.WARN, "10.0 MiB used, no maxmemory"),
        (50 * MiB, 100 * MiB, Verdict.OK, "50.0 MiB used of 100.0 MiB (50%)"),
        (70 * MiB, 100 * MiB, Verdict.OK, "70.0 MiB used of 100.0 MiB (70%)"),
        (71 * MiB, 100 * MiB, Verdict.WARN, "71.0 MiB used of 100.0 MiB (71%)"),
        (90 * MiB, 100 * MiB, Verdict.WARN, "90.0 MiB used of 100.0 MiB (90%)"),
        (91 * MiB, 100 * MiB, Verdict.FAIL, "91.0 MiB used of 100.0 MiB (91%)"),
        (120 * MiB, 100 * MiB, Verdict.FAIL, "120.0 MiB used of 100.0 MiB (120%)"),
    ],
)
def test_memory_thresholds(used: int, limit: int, verdict: Verdict, detail: str) -> None:
    check = _memory({"used_memory": used, "maxmemory": limit})
    assert (check.name, check.verdict, check.detail) == ("memory", verdict, detail)
    fixes = {
        Verdict.OK: "",
        Verdict.WARN: "plan more memory" if limit else "set maxmemory",
        Verdict.FAIL: "raise maxmemory or drain queues",
    }
    assert check.fix.startswith(fixes[verdict])
    assert bool(check.fix) == (verdict is not Verdict.OK)
