"""The event streams: every state change writes exactly one event, in the script that
makes it; refused changes write none; readers page and wait with their own cursor."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.events import MAX_PAGE, START, parse_cursor
from conveyor.broker.inspect import SyncInspector
from conveyor.broker.keys import QueueKeys
from conveyor.broker.records import ClaimedTask
from conveyor.broker.sync_broker import SyncBroker
from conveyor.events import EVENTS_MAX_LEN, Event, EventKind
from tests.broker.conftest import ERROR, Claimed, Run, TaskIn, Unchanged
from tests.broker.seed import claim_one, wait_due
from tests.support.keyspace import events_after

# -- writing ---------------------------------------------------------------------------


def test_enqueue_writes_enqueued_or_scheduled_with_the_name(
    app: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    now, later = app.enqueue("emails.send"), app.enqueue("report", delay=60)
    [first, second] = events_after(r, keys.events)
    assert first == {"event": "enqueued", "id": now.id, "task": "emails.send"}
    assert second.pop("due_at").isdigit()
    assert second == {"event": "scheduled", "id": later.id, "task": "report"}


def test_a_bulk_enqueue_writes_one_event_per_task_in_order(
    app: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    handles = app.enqueue_many([app.message("job", i) for i in range(5)])
    assert [e["id"] for e in events_after(r, keys.events)] == [h.id for h in handles]


def test_a_replayed_enqueue_writes_nothing(app: Conveyor, r: redis.Redis, keys: QueueKeys) -> None:
    app.enqueue("job", idempotency_key="k")
    app.enqueue("job", idempotency_key="k")
    assert len(events_after(r, keys.events)) == 1


def test_a_claim_writes_started_with_the_attempt_and_worker(
    app: Conveyor, broker: SyncBroker, run: Run
) -> None:
    task_id = app.enqueue("job").id
    ran = run(broker.ops.claim("default", 10, "w1"))
    assert ran.events == [
        {"event": "started", "id": task_id, "task": "job", "attempt": "1", "worker": "w1"}
    ]


def test_a_retried_claim_request_writes_no_second_start(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("job")
    op = broker.ops.claim("default", 10, "w1")
    broker.run(op)
    broker.run(op)  # the same request again: the same task back, not a new start
    assert [e["event"] for e in events_after(r, keys.events)] == ["enqueued", "started"]


Outcome = Callable[[SyncBroker, ClaimedTask], Any]
OUTCOMES: dict[str, tuple[Outcome, str, set[str]]] = {
    "ack": (lambda b, t: b.ops.ack([(t, b"1")]), "succeeded", set()),
    "retry": (lambda b, t: b.ops.retry(t, 60, ERROR), "retrying", {"due_at"}),
    "dead letter": (lambda b, t: b.ops.dead_letter(t, "error", ERROR), "dead", {"reason"}),
    "fail": (lambda b, t: b.ops.dead_letter(t, "x", ERROR, keep=False), "failed", {"reason"}),
    "requeue": (lambda b, t: b.ops.requeue(t, crashed=False), "requeued", set()),
    "crash": (lambda b, t: b.ops.requeue(t, crashed=True), "recovered", {"crashes", "worker"}),
}


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_each_outcome_writes_its_event(
    outcome: str, claimed: Claimed, broker: SyncBroker, run: Run
) -> None:
    call, kind, extra = OUTCOMES[outcome]
    task = claimed()
    ran = run(call(broker, task))
    [event] = ran.events
    assert (event["event"], event["id"], event["task"]) == (kind, task.id, "job")
    assert set(event) - {"event", "id", "task"} == extra


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_a_stale_outcome_writes_no_event(
    outcome: str, claimed: Claimed, broker: SyncBroker, unchanged: Unchanged
) -> None:
    call, _, _ = OUTCOMES[outcome]
    task = claimed()
    stale = dataclasses.replace(task, token=task.token + 1)
    with unchanged():
        broker.execute([call(broker, stale)], raise_errors=False)


def test_an_expired_lease_writes_recovered(
    expired: ClaimedTask, broker: SyncBroker, run: Run
) -> None:
    ran = run(broker.ops.recover("default"))
    [event] = ran.events
    assert (event["event"], event["id"], event["crashes"]) == ("recovered", expired.id, "1")


def test_a_worker_lost_too_often_writes_dead(
    app: Conveyor, run: Run, broker_with: Callable[..., SyncBroker]
) -> None:
    broker = broker_with(max_crashes=1)
    app.enqueue("job")
    task = claim_one(broker)
    ran = run(broker.ops.release_worker("default", "w1"))
    [event] = ran.events
    assert (event["event"], event["id"], event["reason"]) == ("dead", task.id, "worker lost")


def test_cancelling_a_running_task_writes_cancelling_once_then_cancelled(
    claimed: Claimed, broker: SyncBroker, run: Run
) -> None:
    task = claimed()
    assert run(broker.ops.cancel(task.id)).kinds() == [("cancelling", task.id)]
    assert run(broker.ops.cancel(task.id)).events == []  # asked again: published, no change
    ended = run(broker.ops.end_cancel(task))
    assert ended.kinds() == [("cancelled", task.id)]
    assert ended.events[0]["was"] == "active"


def test_a_cancelling_task_whose_worker_is_lost_writes_cancelled(
    app: Conveyor, broker: SyncBroker, run: Run
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    broker.run(broker.ops.cancel(task.id))
    assert run(broker.ops.release_worker("default", "w1")).kinds() == [("cancelled", task.id)]


def test_progress_writes_progress_and_a_checkpoint_alone_writes_nothing(
    claimed: Claimed, broker: SyncBroker, run: Run
) -> None:
    task = claimed()
    ran = run(broker.ops.report_progress(task, b'{"fraction":0.5,"message":"half"}', None))
    [event] = ran.events
    assert (event["event"], event["id"]) == ("progress", task.id)
    progress = orjson.loads(event["progress"])
    assert progress["fraction"] == 0.5 and progress["message"] == "half"
    assert isinstance(progress["at"], int)
    assert run(broker.ops.report_progress(task, None, b'{"page":3}')).events == []


def test_a_due_task_writes_due(
    app: Conveyor, broker: SyncBroker, run: Run, r: redis.Redis, keys: QueueKeys
) -> None:
    task_id = app.enqueue("job", delay=0.05).id
    wait_due(r, keys)
    assert run(broker.ops.promote_due("default")).kinds() == [("due", task_id)]


ADMIN: dict[str, tuple[str, Callable[[SyncInspector], Callable[[str], object]], str]] = {
    "cancel": ("pending", lambda i: i.cancel, "cancelled"),
    "run now": ("scheduled", lambda i: i.run_now, "due"),
    "delete": ("retrying", lambda i: i.delete_task, "deleted"),
    "replay": ("dead", lambda i: lambda t: i.replay([t]), "replayed"),
    "delete a dead letter": ("dead", lambda i: lambda t: i.delete_dead([t]), "deleted"),
}


@pytest.mark.parametrize("action", sorted(ADMIN))
def test_each_operator_action_writes_its_event(
    action: str, app: Conveyor, task_in: TaskIn, r: redis.Redis, keys: QueueKeys
) -> None:
    state, method, kind = ADMIN[action]
    task_id = task_in(state)
    before = events_after(r, keys.events)
    method(app.inspector)(task_id)
    [event] = events_after(r, keys.events)[len(before) :]
    assert (event["event"], event["id"], event["task"]) == (kind, task_id, "job")


def test_a_rate_limited_claim_writes_scheduled_with_the_reason(
    app: Conveyor, broker: SyncBroker, run: Run
) -> None:
    limited = app.task(name="paced", rate_limit="1/m")(lambda: None)
    first, second = limited.enqueue(), limited.enqueue()
    ran = run(broker.ops.claim("default", 10, "w1"))
    assert [(e["event"], e["id"]) for e in ran.events] == [
        ("scheduled", second.id),
        ("started", first.id),
    ]
    assert ran.events[0]["reason"] == "rate limit"


def test_the_stream_stays_near_its_cap(app: Conveyor, r: redis.Redis, keys: QueueKeys) -> None:
    for _ in range(EVENTS_MAX_LEN // 1000 + 2):
        app.enqueue_many([app.message("job") for _ in range(1000)])
    # MAXLEN ~ trims whole nodes (at most 100 entries each, by default)
    assert EVENTS_MAX_LEN <= r.xlen(keys.events) <= EVENTS_MAX_LEN + 100


def xtrims(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_xtrim", {}).get("calls", 0))


def test_a_call_of_one_task_trims_with_its_xadd_a_batch_once_at_its_end(
    app: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue_many([app.message("job") for _ in range(EVENTS_MAX_LEN + 1000)])
    assert r.xlen(keys.events) <= EVENTS_MAX_LEN + 100
    before = xtrims(r)
    for _ in range(300):  # one task a call: each XADD trims, no XTRIM follows
        app.enqueue("job")
    assert xtrims(r) == before
    assert EVENTS_MAX_LEN <= r.xlen(keys.events) <= EVENTS_MAX_LEN + 100
    app.enqueue_many([app.message("job") for _ in range(300)])  # many: one XTRIM at the end
    assert xtrims(r) == before + 1
    assert EVENTS_MAX_LEN <= r.xlen(keys.events) <= EVENTS_MAX_LEN + 100


# -- reading ---------------------------------------------------------------------------


def test_a_page_reads_after_the_cursor_and_resumes_from_its_last_event(app: Conveyor) -> None:
    handles = app.enqueue_many([app.message("job", i) for i in range(5)])
    first = app.inspector.events(count=3)
    assert [e.task_id for e in first] == [h.id for h in handles[:3]]
    rest = app.inspector.events(after=first[-1].id)
    assert [e.task_id for e in rest] == [h.id for h in handles[3:]]
    assert all(isinstance(e, Event) and e.kind == EventKind.ENQUEUED for e in first + rest)


def test_one_cursor_reads_many_queues_and_a_full_page_skips_nothing(app: Conveyor) -> None:
    ids = [app.enqueue("job", queue=("a" if i % 3 else "b")).id for i in range(30)]
    seen: list[Event] = []
    cursor = START
    while page := app.inspector.events(["a", "b"], after=cursor, count=2):
        seen += page
        cursor = page[-1].id
    # each queue's events in order, every one once; across queues by time, to the ms
    for queue in ("a", "b"):
        assert [e.task_id for e in seen if e.queue == queue] == [i for i in ids if i[0] == queue]
    assert [e.at for e in seen] == sorted(e.at for e in seen)


def test_queues_default_to_every_known_queue(app: Conveyor) -> None:
    ids = [app.enqueue("job", queue=q).id for q in ("x", "y")]
    assert [e.task_id for e in app.inspector.events()] == ids
    assert {e.queue for e in app.inspector.events()} == {"x", "y"}


def test_latest_event_is_the_cursor_for_only_what_comes_next(app: Conveyor) -> None:
    app.enqueue("job")
    cursor = app.inspector.latest_event()
    assert app.inspector.events(after=cursor) == []
    later = app.enqueue("job")
    assert [e.task_id for e in app.inspector.events(after=cursor)] == [later.id]


def test_a_blocking_read_returns_as_soon_as_an_event_comes(app: Conveyor) -> None:
    cursor = app.inspector.latest_event(["default"])
    threading.Timer(0.3, lambda: app.enqueue("job")).start()
    began = time.monotonic()
    [event] = app.inspector.events(["default"], after=cursor, block=5)
    assert event.kind == "enqueued"
    assert 0.2 < time.monotonic() - began < 4


def test_a_blocking_read_ends_empty_at_its_timeout(app: Conveyor) -> None:
    cursor = app.inspector.latest_event(["default"])
    assert app.inspector.events(["default"], after=cursor, block=0.2) == []


@pytest.mark.parametrize("bad", ["latest", "1-x", "-1", ""])
def test_a_bad_cursor_is_refused(app: Conveyor, bad: str) -> None:
    with pytest.raises(ValueError, match="not an event id"):
        app.inspector.events(["default"], after=bad)


@pytest.mark.parametrize("count", [0, MAX_PAGE + 1])
def test_a_page_size_out_of_range_is_refused(app: Conveyor, count: int) -> None:
    with pytest.raises(ValueError, match="a page holds"):
        app.inspector.events(["default"], count=count)


def test_cursors_order_by_time_then_sequence() -> None:
    assert parse_cursor("10-2") < parse_cursor("10-10") < parse_cursor("11-0")
    assert parse_cursor("7") == (7, 0)


# -- waiting for a task's end -----------------------------------------------------------


def test_result_waits_on_the_event_and_reads_the_record_once_more(
    app: Conveyor, broker: SyncBroker
) -> None:
    handle = app.enqueue("job")
    task = claim_one(broker)
    threading.Timer(0.3, lambda: broker.execute([broker.ops.ack([(task, b"42")])])).start()
    began = time.monotonic()
    assert handle.result(timeout=5) == 42
    assert time.monotonic() - began < 4


async def test_result_async_waits_the_same_way(aapp: Conveyor, broker: SyncBroker) -> None:
    handle = await aapp.enqueue_async("job")
    task = claim_one(broker)

    async def later() -> None:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(broker.execute, [broker.ops.ack([(task, b'"done"')])])

    finisher = asyncio.create_task(later())
    assert await handle.result_async(timeout=5) == "done"
    await finisher


def test_many_other_events_do_not_hide_the_end(app: Conveyor, broker: SyncBroker) -> None:
    handle = app.enqueue("job")
    task = claim_one(broker)

    def busy_then_done() -> None:
        app.enqueue_many([app.message("other") for _ in range(MAX_PAGE * 2)])
        broker.execute([broker.ops.ack([(task, b"7")])])

    threading.Timer(0.2, busy_then_done).start()
    assert handle.result(timeout=10) == 7


def test_wait_finished_returns_the_record_as_it_is_at_the_timeout(app: Conveyor) -> None:
    handle = app.enqueue("job")
    record = app.inspector.wait_finished(handle.id, 0.2)
    assert record is not None and record.state == "pending"
    assert app.inspector.wait_finished("default:" + "0" * 26, 1) is None
    assert app.inspector.wait_finished("not an id", 1) is None
