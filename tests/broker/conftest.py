"""Fixtures of the broker tests: the sync broker, brokers and apps with other settings,
tasks built in any state, stale claims, and the checks every script test makes."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.ops import Op
from conveyor.broker.records import ClaimedTask
from conveyor.broker.scripts import Call
from conveyor.broker.sync_broker import SyncBroker
from conveyor.settings import Settings
from tests.broker.seed import (
    SHORT_LEASE,
    STALE_WAYS,
    Stale,
    Window,
    assert_ttl,
    assert_ttls_kept,
    claim_one,
    clock,
    lose_lease,
    ttls,
    wait_leases_expired,
)
from tests.support.keyspace import archived, dump, events_after, last_event_id, moved, pop_history

#: The error a failed attempt of `task_in` records.
ERROR = b'{"type":"ValueError","message":"broken","traceback":""}'


@pytest.fixture
def broker(app: Conveyor) -> SyncBroker:
    """The app's synchronous broker, which runs the scripts under test."""
    return app.sync_broker()


@pytest.fixture
def short_lease(settings: Settings) -> Iterator[Conveyor]:
    """An app on the same keyspace whose claims expire after `SHORT_LEASE` seconds."""
    application = Conveyor(settings=settings.replace(lease_timeout=SHORT_LEASE))
    yield application
    application.close()


@pytest.fixture
def broker_with(settings: Settings) -> Iterator[Callable[..., SyncBroker]]:
    """Makes brokers on the same keyspace with some settings changed; closes them after."""
    made: list[SyncBroker] = []

    def make(**changes: Any) -> SyncBroker:
        made.append(SyncBroker(settings.replace(**changes)))
        return made[-1]

    yield make
    for each in made:
        each.close()


#: `task_in(state, name="job", queue=..., priority=..., ...)`: a task enqueued and taken to
#: `state` through the real transitions; returns its id.
TaskIn = Callable[..., str]


@pytest.fixture
def task_in(app: Conveyor, broker: SyncBroker) -> TaskIn:
    """Builds a task in any state (pending, scheduled, active, cancelling, succeeded,
    retrying, dead, failed, cancelled) by enqueueing it and running the scripts a worker
    would run; the claims are worker w1's, a wait (a delay, a retry's) lasts `retry_in`
    seconds."""

    def make(
        state: str,
        name: str = "job",
        *,
        queue: str = "default",
        priority: int = 0,
        error: bytes = ERROR,
        retry_in: float = 60.0,
    ) -> str:
        delay = retry_in if state == "scheduled" else None
        task_id = app.enqueue(name, queue=queue, priority=priority, delay=delay).id
        if state in ("pending", "scheduled"):
            return task_id
        if state == "cancelled":
            assert broker.run(broker.ops.cancel(task_id)) == (True, "pending")
            return task_id
        [task] = broker.run(broker.ops.claim(queue, 1, "w1")).tasks
        assert task.id == task_id, "another task was ahead of it in the queue"
        calls = {
            "succeeded": broker.ops.ack([(task, b'"done"')]),
            "retrying": broker.ops.retry(task, retry_in, error),
            "dead": broker.ops.dead_letter(task, "error", error),
            "failed": broker.ops.dead_letter(task, "error", error, keep=False),
        }
        if state == "cancelling":
            assert broker.run(broker.ops.cancel(task_id)) == (True, "active")
        elif state != "active":  # an ack answers per task, the others once
            assert broker.execute([calls[state]]) == ([[1]] if state == "succeeded" else [1])
        return task_id

    return make


@dataclass(frozen=True)
class StaleClaim:
    """A claim gone stale, and how."""

    task: ClaimedTask
    how: Stale


@pytest.fixture(params=STALE_WAYS)
def stale(request: pytest.FixtureRequest, app: Conveyor, broker: SyncBroker) -> StaleClaim:
    """A `job` task claimed by w1 whose claim then went stale, each way in turn:
    re-claimed by w2, released to pending, or completed."""
    app.enqueue("job")
    task = claim_one(broker)
    lose_lease(broker, task, request.param)
    return StaleClaim(task, request.param)


#: `claimed(priority=0)`: a fresh claim; see the `claimed` fixture.
Claimed = Callable[..., ClaimedTask]


@pytest.fixture
def claimed(app: Conveyor, broker: SyncBroker) -> Claimed:
    """`claimed(priority=0)`: a fresh `job` task, claimed by w1."""

    def make(priority: int = 0) -> ClaimedTask:
        app.enqueue("job", priority=priority)
        return claim_one(broker)

    return make


@dataclass(frozen=True)
class Ran:
    """What a script run left to check: the keyspace before, the Redis clock around the
    call (its `now`), its reply (decoded, for an Op), and the events it added to the
    default queue's stream (field dicts)."""

    before: dict[str, Any]
    window: Window
    reply: Any
    events: list[dict[str, str]]

    def kinds(self) -> list[tuple[str, str]]:
        """The events as (event, task id) pairs, in order."""
        return [(e["event"], e["id"]) for e in self.events]


class Run(Protocol):
    """`run(op_or_call, on=broker)`: runs it as the test's one change; see the fixture."""

    def __call__(self, work: Op[Any] | Call, on: SyncBroker | None = None) -> Ran: ...


@pytest.fixture
def run(broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys) -> Run:
    """Runs one operation or script call on the default queue's keyspace (by `broker`, or
    another broker on it) and keeps what its test checks. The wake-up token is taken first
    (as a worker's BLPOP would), so any token afterwards is the script's."""

    def go(work: Op[Any] | Call, on: SyncBroker | None = None) -> Ran:
        runner = on or broker
        r.delete(keys.signal)
        before, last = dump(r, prefix), last_event_id(r, keys.events)
        with clock(r) as window:
            reply = runner.run(work) if isinstance(work, Op) else runner.execute([work])[0]
        return Ran(before, window, reply, events_after(r, keys.events, last))

    return go


#: `with unchanged():` asserts that the block changed no key, value or expiry.
Unchanged = Callable[[], AbstractContextManager[None]]


@pytest.fixture
def unchanged(r: redis.Redis, prefix: str) -> Unchanged:
    """A refused or idle script must leave the keyspace exactly as it was, TTLs included."""

    @contextlib.contextmanager
    def check() -> Iterator[None]:
        before, expiries = dump(r, prefix, events=True), ttls(r, prefix)
        yield
        assert dump(r, prefix, events=True) == before
        assert_ttls_kept(expiries, ttls(r, prefix))

    return check


@pytest.fixture
def expired(short_lease: Conveyor, r: redis.Redis, keys: QueueKeys) -> ClaimedTask:
    """A `job` task claimed by w1 of `short_lease`, its lease now past its deadline."""
    short_lease.enqueue("job")
    task = claim_one(short_lease.sync_broker())
    wait_leases_expired(r, keys)
    return task


def lost_error(what: str) -> bytes:
    """The error a crashed attempt gets in the history: what died."""
    return orjson.dumps({"type": "WorkerLostError", "message": what})


#: `buried(ran, task_id, crashes, message)`: asserts the poison-pill outcome.
Buried = Callable[[Ran, str, int, str], None]


@pytest.fixture
def buried(r: redis.Redis, prefix: str, keys: QueueKeys, settings: Settings) -> Buried:
    """Checks that a task whose worker was lost `crashes` times went from active to the
    dead letters at the script's `now`, with a WorkerLostError saying `message`, and
    nothing else changed: not pending, and no worker woken for it."""

    def check(ran: Ran, task_id: str, crashes: int, message: str) -> None:
        state = dump(r, prefix)
        record = state[keys.task(task_id)]
        error = orjson.loads(record.pop("error"))
        died = int(record["finished_at"])
        assert died == ran.window.now
        expected = moved(
            ran.before, keys, task_id, source="active", target="dead", score=died,
            state="dead", reason="worker lost", crashes=str(crashes), finished_at=str(died),
        )  # fmt: skip
        # the lost attempt joins the history the record had
        key = keys.task(task_id)
        history = pop_history(expected, key)
        number = int(ran.before[key]["attempts"])
        # what died: the dead letter's message without `<n> times; last worker <id>`
        what = re.fullmatch(r"(.+) \d+ times; last worker .*", message)
        assert what, message
        history[number] = archived(ran.before, key, died, "crashed", lost_error(what[1]))
        assert pop_history(state, key) == history
        assert state == expected
        assert error == {"type": "WorkerLostError", "message": message}
        assert_ttl(r, keys.task(task_id), settings.dead_retention)

    return check
