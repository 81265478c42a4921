"""`conveyor fsck` and `conveyor doctor`: their output and exit codes against the test
Redis (doctor's verdicts themselves are tested in tests/tools/test_doctor.py, fsck's
findings in tests/broker/test_fsck.py)."""

from __future__ import annotations

import asyncio

import redis
from click.testing import Result

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from conveyor.tools.embedded import RedisServer
from tests.broker.seed import claim_one
from tests.cli.conftest import Invoke, LiveWorker
from tests.support.keyspace import dump

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


def test_fsck_with_redis_unreachable_exits_3(unreachable: Invoke) -> None:
    result = unreachable("fsck")
    assert result.exit_code == 3
    assert "unavailable" in result.stderr
    assert "Traceback" not in result.output


# -- doctor ----------------------------------------------------------------------------


def verdicts(result: Result) -> dict[str, tuple[str, str]]:
    """Each check's name -> (verdict, rest of its line)."""
    lines = [line.split(None, 2) for line in result.stdout.splitlines()]
    return {name: (verdict, rest) for verdict, name, rest in lines}


CHECKS = [
    "connection",
    "permissions",
    "version",
    "mode",
    "eviction",
    "persistence",
    "memory",
    "latency",
    "clock",
    "workers",
]


def test_doctor_on_the_test_server(
    invoke: Invoke, r: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """Our test server persists nothing and has no maxmemory: warnings, not failures."""
    result = invoke("doctor")
    assert result.exit_code == 0, result.output
    seen = verdicts(result)
    assert list(seen) == CHECKS
    for name in ["connection", "permissions", "version", "mode", "eviction", "latency", "clock"]:
        assert seen[name][0] == "OK", seen[name]
    assert seen["connection"][1] == f"standalone Redis at 127.0.0.1:{redis_server.port}, TLS off"
    everything = f"user default may run every command Conveyor needs on {prefix}:*"
    assert seen["permissions"][1] == everything
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
    assert ", noeviction: " in detail and "refuses new tasks" in detail
    assert "(fix: raise maxmemory or drain queues; " in detail
    assert [name for name, (v, _) in verdicts(result).items() if v == "FAIL"] == ["memory"]


async def test_doctor_names_the_queues_of_a_live_worker(
    invoke: Invoke, live_worker: LiveWorker
) -> None:
    async with live_worker("doctor-test-worker"):
        result = await asyncio.to_thread(invoke, "doctor")
    assert result.exit_code == 0, result.output
    assert verdicts(result)["workers"] == ("OK", "1 alive, serving default, emails")


def test_doctor_with_redis_unreachable_exits_3(unreachable: Invoke) -> None:
    result = unreachable("doctor")
    assert result.exit_code == 3
    assert "unavailable" in result.stderr
    assert "Traceback" not in result.output
