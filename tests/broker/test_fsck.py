"""fsck: each broken state, seeded by hand on real tasks, is reported without a change,
repaired so that a second run finds nothing, and a healthy keyspace stays clean under load."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis

from conveyor import Conveyor, Retry, TaskContext
from conveyor.broker.fsck import BATCH, STUCK_AFTER, Finding
from conveyor.broker.inspect import SyncInspector
from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.producer import Message, TaskHandle
from tests.broker.conftest import TaskIn
from tests.broker.seed import (
    assert_ttl,
    assert_ttls_kept,
    claim,
    claim_one,
    clock,
    pending_score,
    redis_ms,
    scores,
    ttls,
)
from tests.support.keyspace import dump, entry, pending_order
from tests.support.worker import running_worker, wait_until

#: Distinct retentions (s), so a repaired TTL shows which setting it came from.
RETENTION = {"succeeded": 1000.0, "failed": 2000.0, "cancelled": 3000.0, "dead": 4000.0}


@pytest.fixture
def ran(app: Conveyor) -> list[str]:
    """Registers the `job` task on the app; lists the ids a worker ran, in order."""
    seen: list[str] = []

    @app.task(name="job")
    async def job(ctx: TaskContext) -> str:
        seen.append(ctx.task_id)
        return "done"

    return seen


def ordered(findings: list[Finding]) -> list[Finding]:
    """Findings in a stable order (SCAN returns keys in hash order)."""
    return sorted(findings, key=str)


def check_and_repair(
    broker: SyncBroker,
    r: redis.Redis,
    prefix: str,
    expected: list[Finding],
    stuck_after: float = STUCK_AFTER,
) -> dict[str, Any]:
    """A report-only run finds `expected` (with no action) and changes nothing, TTLs
    included; a repairing run reports `expected` with the actions it took. Returns the
    keyspace as it was before the repair, to derive the repaired one from."""
    inspector = SyncInspector(broker)
    before, lives = dump(r, prefix), ttls(r, prefix)
    unrepaired = [dataclasses.replace(f, action="") for f in expected]
    assert ordered(inspector.fsck(stuck_after=stuck_after)) == ordered(unrepaired)
    assert dump(r, prefix) == before
    assert_ttls_kept(lives, ttls(r, prefix))
    assert ordered(inspector.fsck(True, stuck_after=stuck_after)) == ordered(expected)
    return before


def assert_clean(broker: SyncBroker, stuck_after: float = STUCK_AFTER) -> None:
    """A fresh run finds nothing."""
    assert SyncInspector(broker).fsck(stuck_after=stuck_after) == []


def record(task_id: str) -> str:
    """Subject of a finding about a task record."""
    return f"record {task_id}"


# -- leases ----------------------------------------------------------------------------


async def test_an_active_record_without_a_lease_is_requeued_and_runs(
    aapp: Conveyor, ran: list[str], broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    handle = aapp.enqueue("job", priority=5)
    task = claim_one(broker)
    r.zrem(keys.active, task.id)
    expected = [Finding("default", record(task.id), "active without lease", "requeued")]
    with clock(r) as window:
        before = check_and_repair(broker, r, prefix, expected)
    after = copy.deepcopy(before)
    after[keys.pending] = {task.id: window.pending(5)}
    after[keys.task(task.id)]["state"] = "pending"
    assert dump(r, prefix) == after
    assert keys.active not in after
    assert_clean(broker)
    async with running_worker(aapp):
        assert await handle.result_async(timeout=10) == "done"
    assert ran == [task.id]
    assert r.hget(keys.task(task.id), "attempts") == b"2"


def test_a_cancelling_record_without_a_lease_ends_cancelled(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    assert broker.run(broker.ops.cancel(task.id)) == (True, "active")
    r.zrem(keys.active, task.id)
    expected = [Finding("default", record(task.id), "cancelling without lease", "cancelled")]
    with clock(r) as window:
        before = check_and_repair(broker, r, prefix, expected)
    after = copy.deepcopy(before)
    after[keys.task(task.id)].update(state="cancelled", finished_at=window.now)
    assert dump(r, prefix) == after
    assert 0 < r.pttl(keys.task(task.id)) <= broker.settings.cancelled_retention * 1000
    assert_clean(broker)


def test_a_cancelling_task_holding_its_lease_and_slot_is_sound(
    app: Conveyor, broker: SyncBroker
) -> None:
    app.task(name="limited", concurrency=1)(lambda: None).enqueue()
    task = claim_one(broker)
    assert broker.run(broker.ops.cancel(task.id)) == (True, "active")
    assert_clean(broker)


def test_a_lease_whose_record_is_gone_is_dropped(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue_many([app.message("job", n) for n in range(2)])
    gone, held = claim(broker, 2)
    r.delete(keys.task(gone.id))
    expected = copy.deepcopy(dump(r, prefix))
    del expected[keys.active][gone.id]
    check_and_repair(
        broker, r, prefix, [Finding("default", f"active {gone.id}", "record gone", "entry dropped")]
    )
    assert dump(r, prefix) == expected
    assert list(expected[keys.active]) == [held.id]
    assert_clean(broker)


# -- index entries ---------------------------------------------------------------------


@pytest.mark.parametrize("index", ["ready", "scheduled", "dead"])
def test_an_index_entry_whose_record_is_gone_is_dropped(
    task_in: TaskIn,
    broker: SyncBroker,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
    index: str,
) -> None:
    seeded = "pending" if index == "ready" else index
    gone, kept = task_in(seeded), task_in(seeded)
    r.delete(keys.task(gone))
    key = getattr(keys, index)
    expected = copy.deepcopy(dump(r, prefix))
    if index == "ready":
        expected[key].remove(entry(gone))
    else:
        del expected[key][gone]
    check_and_repair(
        broker, r, prefix, [Finding("default", f"{index} {gone}", "record gone", "entry dropped")]
    )
    assert dump(r, prefix) == expected
    assert list(expected[key]) == [entry(kept) if index == "ready" else kept]
    assert_clean(broker)


async def test_a_pending_task_also_listed_as_scheduled_runs_once(
    aapp: Conveyor, ran: list[str], broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    handle = aapp.enqueue("job")
    stray_due = redis_ms(r) + 500
    r.zadd(keys.scheduled, {handle.id: stray_due})
    expected = copy.deepcopy(dump(r, prefix))
    del expected[keys.scheduled]
    check_and_repair(
        broker,
        r,
        prefix,
        [Finding("default", f"scheduled {handle.id}", "wrong index", "entry dropped")],
    )
    assert dump(r, prefix) == expected
    assert_clean(broker)
    async with running_worker(aapp):
        assert await handle.result_async(timeout=10) == "done"
    while redis_ms(r) <= stray_due:  # past the stray due time, nothing promotes it again
        await asyncio.sleep(0.05)
    assert broker.run(broker.ops.promote_due("default"))[0] == 0
    assert ran == [handle.id]
    assert r.exists(keys.pending, keys.scheduled, keys.active) == 0


def test_a_scheduled_task_listed_as_pending_goes_back_to_its_due_time(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task_id = app.enqueue("job", delay=60).id
    due = scores(r, keys.scheduled)[task_id]
    r.zrem(keys.scheduled, task_id)
    r.zadd(keys.pending, {task_id: pending_score(0, redis_ms(r))})
    expected = [
        Finding("default", f"pending {task_id}", "wrong index", "entry dropped"),
        Finding("default", record(task_id), "unindexed", "re-indexed"),
    ]
    after = copy.deepcopy(check_and_repair(broker, r, prefix, expected))
    del after[keys.pending]
    after[keys.scheduled] = {task_id: due}
    assert dump(r, prefix) == after
    assert after[keys.task(task_id)]["state"] == "scheduled"
    assert_clean(broker)


def test_a_succeeded_task_still_holding_a_lease_loses_it(
    task_in: TaskIn, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task_id = task_in("succeeded")
    r.zadd(keys.active, {task_id: redis_ms(r) + 60_000})
    expected = copy.deepcopy(dump(r, prefix))
    del expected[keys.active]
    lives = ttls(r, prefix)
    check_and_repair(
        broker, r, prefix, [Finding("default", f"active {task_id}", "wrong index", "entry dropped")]
    )
    assert dump(r, prefix) == expected
    assert_ttls_kept({k: v for k, v in lives.items() if k != keys.active}, ttls(r, prefix))
    assert_clean(broker)


# -- records in no index ---------------------------------------------------------------


async def test_an_unindexed_pending_task_is_reindexed_with_its_priority_and_runs(
    aapp: Conveyor, ran: list[str], broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    handle = aapp.enqueue("job", priority=-3)
    r.zrem(keys.pending, handle.id)
    found = [Finding("default", record(handle.id), "unindexed", "re-indexed")]
    with clock(r) as window:
        after = copy.deepcopy(check_and_repair(broker, r, prefix, found))
    after[keys.pending] = {handle.id: window.pending(-3)}
    assert dump(r, prefix) == after
    assert_clean(broker)
    async with running_worker(aapp):
        assert await handle.result_async(timeout=10) == "done"
    assert ran == [handle.id]


@pytest.mark.parametrize("state", ["scheduled", "retrying"])
async def test_an_unindexed_waiting_task_is_reindexed_at_its_due_time_and_runs(
    task_in: TaskIn,
    aapp: Conveyor,
    ran: list[str],
    broker: SyncBroker,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
    state: str,
) -> None:
    task_id = task_in(state, retry_in=0.5)
    due = scores(r, keys.scheduled)[task_id]
    assert r.hget(keys.task(task_id), "due_at") == str(int(due)).encode()
    r.zrem(keys.scheduled, task_id)
    found = [Finding("default", record(task_id), "unindexed", "re-indexed")]
    after = copy.deepcopy(check_and_repair(broker, r, prefix, found))
    after[keys.scheduled] = {task_id: due}
    assert dump(r, prefix) == after
    assert after[keys.task(task_id)]["state"] == state
    assert_clean(broker)
    async with running_worker(aapp):
        assert await TaskHandle(aapp.producer, task_id).result_async(timeout=10) == "done"
    assert ran == [task_id]


def test_an_unindexed_dead_letter_is_reindexed_at_its_time_of_death(
    task_in: TaskIn, app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task_id = task_in("dead")
    died = int(r.hget(keys.task(task_id), "finished_at") or 0)
    assert scores(r, keys.dead) == {task_id: died}
    r.zrem(keys.dead, task_id)
    found = [Finding("default", record(task_id), "unindexed", "re-indexed")]
    after = copy.deepcopy(check_and_repair(broker, r, prefix, found))
    after[keys.dead] = {task_id: died}
    assert dump(r, prefix) == after
    assert_ttl(r, keys.task(task_id), app.settings.dead_retention)
    assert_clean(broker)


def test_a_dead_letter_in_no_index_and_without_a_ttl_is_repaired_in_one_pass(
    task_in: TaskIn,
    app: Conveyor,
    broker: SyncBroker,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
) -> None:
    task_id = task_in("dead")
    died = int(r.hget(keys.task(task_id), "finished_at") or 0)
    r.zrem(keys.dead, task_id)
    r.persist(keys.task(task_id))
    repaired = SyncInspector(broker).fsck(repair=True)
    assert Finding("default", record(task_id), "unindexed", "re-indexed") in repaired
    assert scores(r, keys.dead) == {task_id: died}
    assert round(int(r.pttl(keys.task(task_id))) / 1000) == app.settings.dead_retention
    assert_clean(broker)


# -- retention -------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(RETENTION))
def test_a_finished_record_without_a_ttl_gets_the_retention_of_its_state(
    task_in: TaskIn,
    broker_with: Callable[..., SyncBroker],
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
    state: str,
) -> None:
    """The TTL fsck restores is the one the transition into `state` would have set."""
    task_id = task_in(state)
    assert r.hget(keys.task(task_id), "state") == state.encode()
    r.persist(keys.task(task_id))
    checker = broker_with(**{f"{name}_retention": s for name, s in RETENTION.items()})
    check_and_repair(
        checker, r, prefix, [Finding("default", record(task_id), "no retention", "expires")]
    )
    assert round(int(r.pttl(keys.task(task_id))) / 1000) == RETENTION[state]
    assert_clean(checker)


# -- scheduled tasks nobody promoted ---------------------------------------------------


def miss(r: redis.Redis, keys: QueueKeys, task_id: str, ago_ms: int) -> None:
    """Make scheduled task `task_id` due `ago_ms` ago, as if every scheduler missed it."""
    due = redis_ms(r) - ago_ms
    r.zadd(keys.scheduled, {task_id: due})
    r.hset(keys.task(task_id), "due_at", due)


async def test_a_scheduled_task_long_past_due_is_promoted_and_runs(
    aapp: Conveyor, ran: list[str], broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    late, recent = aapp.enqueue("job", delay=60, priority=2), aapp.enqueue("job", delay=60)
    miss(r, keys, late.id, 10 * 60_000)
    miss(r, keys, recent.id, 5_000)
    found = [Finding("default", record(late.id), "stuck scheduled", "promoted")]
    with clock(r) as first:
        after = copy.deepcopy(check_and_repair(broker, r, prefix, found))
    del after[keys.scheduled][late.id]  # 5 s late is not stuck by default
    after[keys.pending] = {late.id: first.pending(2)}
    after[keys.task(late.id)]["state"] = "pending"
    assert dump(r, prefix) == after
    assert_clean(broker)
    found = [Finding("default", record(recent.id), "stuck scheduled", "promoted")]
    with clock(r) as second:
        after = copy.deepcopy(check_and_repair(broker, r, prefix, found, stuck_after=1.0))
    del after[keys.scheduled]
    after[keys.pending][recent.id] = second.pending(0)
    after[keys.task(recent.id)]["state"] = "pending"
    assert dump(r, prefix) == after
    assert_clean(broker, stuck_after=1.0)
    async with running_worker(aapp):
        assert await late.result_async(timeout=10) == "done"
        assert await recent.result_async(timeout=10) == "done"
    assert ran == [late.id, recent.id]


# -- corrupt records -------------------------------------------------------------------


@pytest.mark.parametrize("corruption", ["not a hash", "no state"])
def test_a_corrupt_record_is_dead_lettered_once(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys, corruption: str
) -> None:
    """A key under the task prefix that is no task record ends in the dead set for
    inspection, as claim.lua leaves one; that state is then consistent."""
    corrupt, healthy = app.enqueue("job").id, app.enqueue("job").id
    if corruption == "not a hash":
        r.delete(keys.task(corrupt))
        r.set(keys.task(corrupt), "garbage")
    else:
        r.hdel(keys.task(corrupt), "state")
    found = [Finding("default", record(corrupt), "corrupt record", "dead-lettered")]
    with clock(r) as window:
        after = copy.deepcopy(check_and_repair(broker, r, prefix, found))
    after[keys.ready].remove(entry(corrupt))
    after[keys.dead] = {corrupt: window.now}
    # how the corrupt key itself is kept is the repair's choice; every other key is exact
    assert {k: v for k, v in dump(r, prefix).items() if k != keys.task(corrupt)} == {
        k: v for k, v in after.items() if k != keys.task(corrupt)
    }
    assert after[keys.ready] == [entry(healthy)]
    assert_clean(broker)


@pytest.mark.parametrize("corruption", ["not a hash", "bad token"])
def test_a_corrupt_record_the_worker_dead_lettered_is_consistent(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, corruption: str
) -> None:
    """claim.lua keeps a corrupt record in the dead set for inspection: a state the
    scripts themselves produce, so fsck has nothing to say about it."""
    task_id = app.enqueue("job").id
    if corruption == "not a hash":
        r.delete(keys.task(task_id))
        r.set(keys.task(task_id), "garbage")
    else:
        r.hset(keys.task(task_id), "token", "not a number")
    assert claim(broker, 5) == []
    assert list(scores(r, keys.dead)) == [task_id]
    assert SyncInspector(broker).fsck() == []


# -- the queue registry ----------------------------------------------------------------


def test_a_queue_missing_from_the_registry_is_registered_and_checked(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str
) -> None:
    registry = GlobalKeys(prefix).queues
    app.enqueue("job")
    emails = app.enqueue("job", queue="emails").id
    r.srem(registry, "emails")
    emails_keys = GlobalKeys(prefix).queue("emails")
    r.lrem(emails_keys.ready, 0, entry(emails))  # a problem of the unregistered queue is found too
    expected = [
        Finding("emails", registry, "queue missing from the registry", "registered"),
        Finding("emails", record(emails), "unindexed", "re-indexed"),
    ]
    with clock(r) as window:
        after = copy.deepcopy(check_and_repair(broker, r, prefix, expected))
    after[registry] = ["default", "emails"]
    after[emails_keys.pending] = {emails: window.pending(0)}
    assert dump(r, prefix) == after
    assert_clean(broker)


@pytest.mark.parametrize("queue", ["a:b", "bad name", "q" * 65])
def test_an_invalid_queue_name_in_keys_is_reported_but_not_registered(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, queue: str
) -> None:
    registry = GlobalKeys(prefix).queues
    app.enqueue("job")
    r.zadd(f"{prefix}:{{{queue}}}:pending", {f"{queue}:01JD0000000000000000000000": 1})
    before = dump(r, prefix)
    found = [Finding(queue, registry, "queue missing from the registry", "")]
    assert SyncInspector(broker).fsck() == found
    assert SyncInspector(broker).fsck(repair=True) == found  # no action: it cannot be a queue
    assert dump(r, prefix) == before
    assert r.smembers(registry) == {b"default"}


# -- batches ---------------------------------------------------------------------------


def test_every_record_and_index_entry_past_the_first_batch_is_checked(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    count = 2 * BATCH + 201
    ids = [h.id for h in app.enqueue_many([app.message("job", n) for n in range(count)])]
    unindexed, gone = ids[::97] + ids[-1:], ids[50::97] + ids[-2:-1]
    for task_id in unindexed:
        r.lrem(keys.ready, 0, entry(task_id))
    r.delete(*[keys.task(i) for i in gone])
    expected = [Finding("default", record(i), "unindexed", "re-indexed") for i in unindexed]
    expected += [Finding("default", f"ready {i}", "record gone", "entry dropped") for i in gone]
    check_and_repair(broker, r, prefix, expected)
    # back in pending, the re-indexed are in the ZSET: they are not new any more
    assert set(scores(r, keys.pending)) == set(unindexed)
    assert set(pending_order(r, keys)) == set(ids) - set(gone)
    assert_clean(broker)


# -- a healthy keyspace under load -----------------------------------------------------

#: Tasks of the load test: some retry, some wait for a delay, some end dead.
LOAD = 3000


class Repeatedly(threading.Thread):
    """Runs a report-only fsck back to back until stopped, keeping every result."""

    def __init__(self, inspector: SyncInspector) -> None:
        super().__init__(daemon=True)
        self.inspector = inspector
        self.halt = threading.Event()
        self.runs: list[list[Finding]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                self.runs.append(self.inspector.fsck())
        except BaseException as exc:  # surfaced by stop(), in the test's thread
            self.error = exc

    def stop(self) -> list[list[Finding]]:
        """Stop after the current run; every run's findings, or the error it raised."""
        self.halt.set()
        self.join(30)
        if self.error is not None:
            raise self.error
        return self.runs


async def one_more_run(checker: Repeatedly) -> None:
    """Until fsck has completed a run that began after this call: each batch of the load
    meets a check, however slow the machine (a fixed sleep let a slow one finish the load
    after only two runs)."""
    seen = len(checker.runs)

    async def ran() -> bool:
        return len(checker.runs) > seen + 1

    await wait_until(ran, 30, "a run of fsck")


def load_messages(app: Conveyor) -> tuple[list[Message], int]:
    """The load: steady tasks (every 8th retries once, every 6th delayed), and every
    50th doomed to the dead-letter queue; returns the messages and the doomed count."""

    @app.task(name="steady", max_retries=2)
    async def steady(n: int, ctx: TaskContext) -> int:
        await asyncio.sleep(0.001 * (n % 3))
        if n % 8 == 0 and ctx.attempt == 1:
            raise Retry(delay=0.05)
        return n

    @app.task(name="doomed", max_retries=1)
    async def doomed(n: int) -> None:
        raise ValueError(f"doomed {n}")

    messages = [
        doomed.message(n) if n % 50 == 0 else steady.message(n, delay=0.3 * (n % 6 == 0))
        for n in range(LOAD)
    ]
    return messages, len(range(0, LOAD, 50))


async def test_a_healthy_keyspace_under_load_has_no_findings(
    aapp: Conveyor, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    messages, doomed = load_messages(aapp)
    ids = [h.id for h in await aapp.enqueue_many_async(messages[:100])]
    checker = Repeatedly(aapp.inspector)
    async with running_worker(aapp, concurrency=100):
        checker.start()
        try:
            for start in range(100, LOAD, 500):
                handles = await aapp.enqueue_many_async(messages[start : start + 500])
                ids += [h.id for h in handles]
                await one_more_run(checker)

            async def settled() -> bool:
                busy = sum(r.zcard(k) for k in (keys.pending, keys.active, keys.scheduled))
                return busy == 0 and r.zcard(keys.dead) == doomed

            await wait_until(settled, 30, "every task to end")
            during = len(checker.runs)
        finally:
            runs = await asyncio.to_thread(checker.stop)
    assert during >= 3, "fsck should have run several times while tasks were moving"
    assert [finding for run in runs for finding in run] == []
    pipe = r.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(keys.task(task_id), "state")
    states = Counter(state.decode() for state in pipe.execute())
    assert states == {"succeeded": LOAD - doomed, "dead": doomed}
    assert_clean(aapp.sync_broker())
