"""Reading the queues' event streams (sans-IO): a page of events after a cursor, a blocking
wait for the next ones, and a wait for a task's end that reads no record until an event
says the task ended.

One cursor serves any number of queues: the scripts take each entry's id from Redis'
clock, so ids of different streams compare in time, and reading every stream after the
same id misses nothing. A page that one stream fills (`count`) is cut at that stream's
last id, so the events of the others beyond it are read next time, not skipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from conveyor.broker.admin import Procedure, queue_names
from conveyor.broker.ops import Op, Operations, as_text
from conveyor.broker.scripts import Call
from conveyor.broker.transport import READ_BLOCK_MAX
from conveyor.events import Event
from conveyor.ids import is_task_id, queue_of
from conveyor.model import TaskRecord
from conveyor.options import DEFAULT_QUEUE

#: The cursor before every event.
START = "0-0"
#: Events a page holds at most, per queue.
MAX_PAGE = 1000
#: While waiting for a task's end, its record is read again at least this often (seconds):
#: a waiter that fell behind a stream's cap, or a record that expired without an event,
#: is noticed within this, not at its timeout.
RECHECK_EVERY = 5.0


def parse_cursor(cursor: str) -> tuple[int, int]:
    """`<ms>-<seq>` (or `<ms>`) as a pair; ValueError for anything else."""
    ms, _, seq = cursor.partition("-")
    if not ms.isdigit() or not (seq.isdigit() or seq == ""):
        raise ValueError(f"not an event id: {cursor!r} (expected <ms>-<seq>)")
    return int(ms), int(seq or 0)


def read_events(
    ops: Operations, queues: Sequence[str], after: str, count: int, block: float = 0.0
) -> Op[list[Event]]:
    """The events of `queues` after cursor `after`, oldest first, at most `count` a queue;
    with `block` > 0, wait up to that long (at most READ_BLOCK_MAX s) for one to come."""
    parse_cursor(after)
    if not 1 <= count <= MAX_PAGE:
        raise ValueError(f"a page holds 1..{MAX_PAGE} events, not {count}")
    streams = {ops.queue_keys(q).events: q for q in queues}
    args: list[Any] = ["XREAD", "COUNT", count]
    if block > 0:
        args += ["BLOCK", max(1, round(min(block, READ_BLOCK_MAX) * 1000))]
    args += ["STREAMS", *streams, *([after] * len(streams))]
    return Op([Call.command(*args)], lambda r: _page(r[0], streams, count), blocks=block > 0)


def latest(ops: Operations, queues: Sequence[str]) -> Op[str]:
    """The cursor after every event of `queues` so far (START when they have none)."""
    calls = [Call.command("XREVRANGE", ops.queue_keys(q).events, "+", "-", "COUNT", 1)
             for q in queues]  # fmt: skip

    def decode(replies: list[Any]) -> str:
        ids = [as_text(reply[0][0]) for reply in replies if reply]
        return max(ids, key=parse_cursor, default=START)

    return Op(calls, decode)


def _page(reply: Any, streams: dict[str, str], count: int) -> list[Event]:
    """XREAD's reply as events in id order, cut where a full stream's page ends."""
    events: list[Event] = []
    cut: tuple[int, int] | None = None
    for raw_key, entries in reply or []:
        queue = streams[as_text(raw_key)]
        for raw_id, fields in entries:
            events.append(_event(queue, as_text(raw_id), fields))
        if len(entries) == count:
            last = parse_cursor(as_text(entries[-1][0]))
            cut = last if cut is None else min(cut, last)
    events.sort(key=lambda e: parse_cursor(e.id))
    if cut is not None:
        events = [e for e in events if parse_cursor(e.id) <= cut]
    return events


def _event(queue: str, event_id: str, fields: dict[Any, Any]) -> Event:
    text = {as_text(k): as_text(v) for k, v in fields.items()}
    kind, task_id, name = text.pop("event", ""), text.pop("id", ""), text.pop("task", "")
    return Event(event_id, queue, kind, task_id, name, parse_cursor(event_id)[0], text)


def page(
    ops: Operations, queues: Sequence[str] | None, after: str, count: int, block: float
) -> Procedure[list[Event]]:
    """`read_events` of `queues`, or of every known queue (None). With no queue known yet,
    a blocking read waits on the default queue's stream (no busy loop for followers)."""
    names = yield from _names(ops, queues)
    if not names and block <= 0:
        return []
    names = names or [DEFAULT_QUEUE]
    found: list[Event] = yield read_events(ops, names, after, count, block)
    return found


def cursor_now(ops: Operations, queues: Sequence[str] | None) -> Procedure[str]:
    """`latest` of `queues`, or of every known queue (None)."""
    names = yield from _names(ops, queues)
    if not names:
        return START
    cursor: str = yield latest(ops, names)
    return cursor


def _names(ops: Operations, queues: Sequence[str] | None) -> Procedure[list[str]]:
    if queues is None:
        return (yield from queue_names(ops))
    for queue in queues:
        ops.queue_keys(queue)  # raises on an invalid name
    return list(queues)


def wait_finished(
    ops: Operations, task_id: str, timeout: float | None
) -> Procedure[TaskRecord | None]:
    """The task's record once it ended, or as it is when `timeout` s passed (None: it is
    unknown or its record expired).

    The cursor is taken before the record is read, so an end that comes between the two
    is in the events read after it. Then only the stream is read, blocking, until an event
    of this task's end; the record is read again then (or every RECHECK_EVERY s).
    """
    if not is_task_id(task_id):
        return None
    queue = queue_of(task_id)
    key = ops.queue_keys(queue).task(task_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    cursor: str = yield latest(ops, [queue])
    while True:
        raw = yield Op([Call.command("HGETALL", key)], lambda r: r[0])
        record = TaskRecord.from_hash(task_id, raw) if raw else None
        if record is None or record.state.is_terminal:
            return record
        checked = time.monotonic()
        ended = False
        while not ended and time.monotonic() - checked < RECHECK_EVERY:
            left = RECHECK_EVERY if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return record
            events: list[Event] = yield read_events(
                ops, [queue], cursor, MAX_PAGE, block=min(left, RECHECK_EVERY)
            )
            if events:
                cursor = events[-1].id
            ended = any(e.task_id == task_id and e.final for e in events)
