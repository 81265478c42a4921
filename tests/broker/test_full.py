"""Every script at maxmemory (policy noeviction), on Redis 6.2 and 7: an enqueue is refused
before it writes anything (BrokerFullError), and everything a worker does to drain the
queue (claim, renew, complete, recover, promote) goes through, so memory comes back.

Each test runs on a private server the test makes full (maxmemory 1 byte): the shared
test server never gets a limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from conveyor import BrokerFullError, Conveyor
from conveyor.broker.coalescer import _own, _Request
from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.broker.ops import Op, Renewal
from conveyor.broker.records import ClaimedTask
from conveyor.broker.scripts import Call
from conveyor.broker.sync_broker import SyncBroker
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer
from tests.broker.conftest import Run, TaskIn, Unchanged
from tests.broker.seed import claim, claim_one, scores, wait_due, wait_leases_expired
from tests.support.full import Memory, private_redis
from tests.support.keyspace import dump


@pytest.fixture
def private(redis_server: RedisServer) -> Iterator[RedisServer]:
    """A server of this test alone, of the shared test server's Redis version."""
    with private_redis(redis_server) as server:
        yield server


@pytest.fixture
def settings(settings: Settings, private: RedisServer) -> Settings:
    """The usual test settings, on the private server."""
    return settings.replace(redis_url=private.url)


@pytest.fixture
def r(private: RedisServer) -> Iterator[redis.Redis]:
    """A plain client of the private server."""
    client = redis.Redis.from_url(private.url)
    yield client
    client.close()


@pytest.fixture
def memory(r: redis.Redis) -> Iterator[Memory]:
    """The private server's memory limit; lifted after the test, so teardown can write."""
    limits = Memory(r)
    yield limits
    limits.free()


# -- what Conveyor relies on ---------------------------------------------------------------


SCRIPTS = {
    "a first write that may grow memory": ("redis.call('HSET', KEYS[1], 'f', 'v')", False),
    "ZADD XX first, though it only moves a score": (
        "redis.call('ZADD', KEYS[2], 'XX', 5, 'a')",
        False,
    ),
    "ZREM first, then ZADD": (
        "redis.call('ZREM', KEYS[2], 'a') redis.call('ZADD', KEYS[2], 5, 'a')",
        True,
    ),
    "a ZREM that removes nothing, then HSET": (
        "redis.call('ZREM', KEYS[2], 'nobody') redis.call('HSET', KEYS[1], 'f', 'v')",
        True,
    ),
    "PEXPIRE first, then HSET": (
        "redis.call('PEXPIRE', KEYS[2], 60000) redis.call('HSET', KEYS[1], 'f', 'v')",
        True,
    ),
}


@pytest.mark.parametrize("source", sorted(SCRIPTS))
def test_redis_checks_memory_only_at_a_scripts_first_write(
    source: str, r: redis.Redis, memory: Memory
) -> None:
    """The premise of every script here, on each Redis version: at maxmemory, a script whose
    first write may grow memory is refused before it writes; one whose first write cannot
    (ZREM, PEXPIRE) runs to its end, whatever it writes next."""
    body, runs = SCRIPTS[source]
    r.zadd("z", {"a": 1})
    memory.fill()
    before = dump_all(r)
    if runs:
        r.eval(body, 2, "h", "z")
        assert r.hget("h", "f") == b"v" or r.zscore("z", "a") == 5
    else:
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            r.eval(body, 2, "h", "z")
        assert dump_all(r) == before


def test_a_script_that_started_below_the_limit_writes_past_it(
    r: redis.Redis, memory: Memory
) -> None:
    """The other half of the premise: the check is made once, when the script starts."""
    memory.limit_above_use(100_000)
    grow = "for i = 1, 5000 do redis.call('HSET', KEYS[1], 'f' .. i, string.rep('x', 64)) end"
    r.eval(grow, 1, "h")
    assert r.hlen("h") == 5000
    assert memory.is_full()


def dump_all(r: redis.Redis) -> dict[bytes, Any]:
    """Every key of the private server, serialized (DUMP), expiry aside."""
    client: Any = r
    return {key: client.dump(key) for key in client.keys("*")}


# -- enqueues are refused, whole ---------------------------------------------------------


ENQUEUES: dict[str, Callable[[Conveyor], object]] = {
    "one task": lambda app: app.enqueue("job", 1),
    "a delayed task": lambda app: app.enqueue("job", delay=60),
    "a task with an idempotency key": lambda app: app.enqueue("job", idempotency_key="k1"),
    "a bulk enqueue to two queues, one new": lambda app: app.enqueue_many(
        [app.message("job", i, queue=q) for i in range(3) for q in ("default", "emails")]
    ),
}


@pytest.mark.parametrize("how", sorted(ENQUEUES))
def test_an_enqueue_at_maxmemory_is_refused_and_stores_nothing(
    how: str, app: Conveyor, r: redis.Redis, prefix: str, memory: Memory, unchanged: Unchanged
) -> None:
    app.enqueue("job", 0)  # the default queue exists, with one task
    memory.fill()
    with unchanged(), pytest.raises(BrokerFullError) as refused:
        ENQUEUES[how](app)
    assert "Redis is full" in str(refused.value)
    assert "nothing was stored" in str(refused.value)
    assert refused.value.stored == ()
    used, limit, policy = refused.value.memory or (0, 0, "")
    assert (used > 2**19, limit, policy) == (True, 1, "noeviction")
    assert app.inspector.queue_names() == ["default"]
    memory.free()  # the same call goes through once Redis has room, a new queue listed
    ENQUEUES[how](app)
    assert len(app.inspector.queue_names()) == (2 if "bulk" in how else 1)


async def test_an_async_enqueue_at_maxmemory_is_refused_and_stores_nothing(
    aapp: Conveyor, r: redis.Redis, prefix: str, memory: Memory
) -> None:
    await aapp.enqueue_async("job", 0)
    before = dump(r, prefix)
    memory.fill()
    with pytest.raises(BrokerFullError, match="nothing was stored"):
        await aapp.enqueue_many_async([aapp.message("job", i) for i in range(3)])
    with pytest.raises(BrokerFullError, match="nothing was stored"):
        await aapp.enqueue_async("job", idempotency_key="k2")
    assert dump(r, prefix) == before


def test_a_bulk_enqueue_refused_part_way_names_the_tasks_it_stored(
    app: Conveyor, r: redis.Redis, prefix: str, memory: Memory
) -> None:
    """A bulk enqueue of two queues is two script calls in one pipeline: Redis may fill up
    with the first. Here it does so on cue (a CONFIG SET between the two calls): the
    error names what the first call stored, and the second stored nothing."""
    app.enqueue_many([app.message("job", queue=q) for q in ("default", "emails")])  # listed
    broker = app.sync_broker()
    tasks = [app.producer.encode(app.message("job", i, queue=q)) for q in ("default", "emails")
             for i in range(3)]  # fmt: skip
    op = broker.ops.enqueue(tasks)
    assert len(op.calls) == 2
    fill = Call.command("CONFIG", "SET", "maxmemory", "1")
    replies = broker.execute([op.calls[0], fill, op.calls[1]], raise_errors=False)
    with pytest.raises(BrokerFullError) as refused:
        op.decode([replies[0], replies[2]])
    stored = tuple(t.id for t in tasks if t.queue == "default")
    assert refused.value.stored == stored
    assert "3 of the 6 tasks were stored" in str(refused.value)
    memory.free()
    records = {k for k in dump(r, prefix) if ":task:" in k}
    for task in tasks:
        present = GlobalKeys(prefix).queue(task.queue).task(task.id) in records
        assert present == (task.id in stored)


# -- what a worker does goes through -----------------------------------------------------


def test_a_claim_at_maxmemory_leases_the_task(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, memory: Memory
) -> None:
    task_id = app.enqueue("job").id
    memory.fill()
    task = claim_one(broker)
    assert task.id == task_id
    assert r.hget(keys.task(task_id), "state") == b"active"
    assert list(scores(r, keys.active)) == [task_id]
    assert scores(r, keys.pending) == {}


def test_a_claim_at_maxmemory_still_dead_letters_a_corrupt_record(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, memory: Memory
) -> None:
    task_id = app.enqueue("job").id
    r.hset(keys.task(task_id), "token", "not a number")
    memory.fill()
    assert broker.run(broker.ops.claim("default", 1, "w1")).tasks == []
    assert r.hget(keys.task(task_id), "state") == b"dead"
    assert list(scores(r, keys.dead)) == [task_id]


def test_leases_are_renewed_at_maxmemory(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, memory: Memory
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    r.zadd(keys.active, {task.id: 1}, xx=True)  # about to run out
    memory.fill()
    renewal = broker.run(broker.ops.extend_leases("default", [(task.id, task.token)]))
    assert renewal == Renewal([], [])
    assert scores(r, keys.active)[task.id] > 1


OUTCOMES: dict[str, tuple[Callable[[SyncBroker, ClaimedTask], Call], str]] = {
    "ack": (lambda b, t: b.ops.ack([(t, b'"ok"')]), "succeeded"),
    "retry": (lambda b, t: b.ops.retry(t, 60, b"{}"), "retrying"),
    "dead letter": (lambda b, t: b.ops.dead_letter(t, "error", b"{}"), "dead"),
    "requeue": (lambda b, t: b.ops.requeue(t, crashed=False), "pending"),
    "requeue after a crash": (lambda b, t: b.ops.requeue(t, crashed=True), "pending"),
}


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_an_outcome_is_written_at_maxmemory(
    outcome: str, app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys,
    memory: Memory,
) -> None:  # fmt: skip
    app.enqueue("job")
    task = claim_one(broker)
    memory.fill()
    call, state = OUTCOMES[outcome]
    broker.execute([call(broker, task)])
    assert r.hget(keys.task(task.id), "state") == state.encode()
    assert task.id not in scores(r, keys.active)


def test_a_cancelled_task_is_ended_and_a_report_kept_at_maxmemory(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, memory: Memory
) -> None:
    """A progress report's first write is the lease's ZREM, as a renewal's; so is the end
    of a cancelled task's."""
    app.enqueue_many([app.message("job", i) for i in range(2)])
    reporting, cancelled = claim(broker, 2, "w1")
    assert broker.run(broker.ops.cancel(cancelled.id)) == (True, "active")
    memory.fill()
    assert broker.run(broker.ops.report_progress(reporting, b'{"fraction":0.5}', b"1")) is True
    assert r.hget(keys.task(reporting.id), "checkpoint") == b"1"
    assert broker.execute([broker.ops.end_cancel(cancelled)]) == [1]
    assert r.hget(keys.task(cancelled.id), "state") == b"cancelled"
    assert list(scores(r, keys.active)) == [reporting.id]


def test_expired_leases_are_recovered_at_maxmemory(
    short_lease: Conveyor, r: redis.Redis, keys: QueueKeys, memory: Memory
) -> None:
    broker = short_lease.sync_broker()
    short_lease.enqueue("job")
    task = claim_one(broker)
    wait_leases_expired(r, keys)
    memory.fill()
    assert broker.run(broker.ops.recover("default")) == [(task.id, "pending")]
    assert list(scores(r, keys.pending)) == [task.id]


def test_a_dead_workers_tasks_are_released_at_maxmemory(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, memory: Memory
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    memory.fill()
    assert broker.run(broker.ops.release_worker("default", "w1")) == (-1, [(task.id, "pending")])
    assert list(scores(r, keys.pending)) == [task.id]


def test_due_tasks_are_promoted_at_maxmemory(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, memory: Memory
) -> None:
    task_id = app.enqueue("job", delay=0.05).id
    wait_due(r, keys)
    memory.fill()
    assert broker.run(broker.ops.promote_due("default"))[0] == 1
    assert list(scores(r, keys.pending)) == [task_id]


ADMIN: dict[str, tuple[str, Callable[[SyncBroker, str], Op[Any]], str | None]] = {
    "cancel": ("pending", lambda b, i: b.ops.cancel(i), "cancelled"),
    "cancel a running task": ("active", lambda b, i: b.ops.cancel(i), "cancelling"),
    "replay": ("dead", lambda b, i: b.ops.replay_dead("default", [i]), "pending"),
    "delete a dead letter": ("dead", lambda b, i: b.ops.delete_dead("default", [i]), None),
}


@pytest.mark.parametrize("action", sorted(ADMIN))
def test_admin_actions_go_through_at_maxmemory(
    action: str, task_in: TaskIn, broker: SyncBroker, r: redis.Redis, keys: QueueKeys,
    memory: Memory,
) -> None:  # fmt: skip
    state, op, after = ADMIN[action]
    task_id = task_in(state)
    memory.fill()
    broker.run(op(broker, task_id))
    found = r.hget(keys.task(task_id), "state")
    assert found == (after.encode() if after else None)


def test_the_reapers_role_is_renewed_but_not_taken_at_maxmemory(
    broker: SyncBroker, r: redis.Redis, prefix: str, memory: Memory, unchanged: Unchanged
) -> None:
    ops = broker.ops
    assert broker.run(ops.lead("w1", 1.0)) is True
    memory.fill()
    assert broker.run(ops.lead("w1", 60.0)) is True  # renewed: a PEXPIRE
    assert r.pttl(GlobalKeys(prefix).reaper) > 2000
    r.delete(GlobalKeys(prefix).reaper)
    with unchanged(), pytest.raises(BrokerFullError):
        broker.run(ops.lead("w2", 1.0))


def test_a_registration_at_maxmemory_keeps_the_description_alive(
    broker: SyncBroker, r: redis.Redis, prefix: str, memory: Memory
) -> None:
    keys = GlobalKeys(prefix)
    assert broker.run(broker.ops.register_worker("w1", b'{"id":"w1"}', 1000)) is True
    r.pexpire(keys.worker("w1"), 50)
    memory.fill()
    assert broker.run(broker.ops.register_worker("w1", b'{"id":"w1"}', 2000)) is False
    assert r.pttl(keys.worker("w1")) > 1000  # its expiry renewed, not the beat
    assert scores(r, keys.workers) == {"w1": 1000}


def test_a_script_refused_for_another_reason_is_not_called_full(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, memory: Memory, run: Run
) -> None:
    """Only Redis' maxmemory refusal becomes BrokerFullError; other errors keep theirs."""
    r.set(GlobalKeys(app.settings.prefix).queue("default").pending, "not a zset")
    memory.fill()
    with pytest.raises(redis.ResponseError) as raised:
        run(broker.ops.claim("default", 1, "w1"))
    assert not isinstance(raised.value, BrokerFullError)


async def test_each_caller_of_a_merged_enqueue_hears_of_its_own_stored_tasks(
    app: Conveyor,
) -> None:
    """Concurrent enqueues to one queue share a script call (the coalescer); when Redis
    filled up part way, each caller's error names only its own tasks that were stored."""
    loop = asyncio.get_running_loop()
    mine = [app.producer.encode(app.message("job", i)) for i in range(2)]
    theirs = [app.producer.encode(app.message("job", i)) for i in range(3)]
    error = BrokerFullError((mine[0].id, theirs[0].id, theirs[1].id), 5)
    seen = [_own(error, _Request(loop.create_future(), tasks=tasks)) for tasks in (mine, theirs)]
    assert [(type(e), e.stored) for e in seen] == [  # type: ignore[attr-defined]
        (BrokerFullError, (mine[0].id,)),
        (BrokerFullError, (theirs[0].id, theirs[1].id)),
    ]
    assert "1 of the 2 tasks were stored" in str(seen[0])
    assert "2 of the 3 tasks were stored" in str(seen[1])
    nothing = _own(BrokerFullError(), _Request(loop.create_future(), tasks=mine))
    assert "nothing was stored" in str(nothing)


def test_a_refusal_says_so_without_figures_where_info_is_forbidden(
    private: RedisServer, settings: Settings, r: redis.Redis, memory: Memory
) -> None:
    """The memory figures are read after the refusal, where INFO is allowed (managed
    Redis often forbids it): without them the error still says what happened."""
    r.acl_setuser(
        "noinfo", enabled=True, passwords=["+secret"], keys=["*"], categories=["+@all"],
        commands=["-info"],
    )  # fmt: skip
    url = f"redis://noinfo:secret@127.0.0.1:{private.port}/0"
    app = Conveyor(settings=settings.replace(redis_url=url))
    try:
        app.enqueue("job")
        memory.fill()
        with pytest.raises(BrokerFullError) as refused:
            app.enqueue("job")
    finally:
        app.close()
    assert refused.value.memory is None
    assert str(refused.value).startswith(
        "Redis is full (used memory above maxmemory): it refused the write, nothing was stored."
    )
