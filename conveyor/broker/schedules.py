"""Schedules in Redis: read, upsert, pause, resume and remove them (the Inspector's
`schedules`), and the two steps of firing them (the worker's `periodic` component).

Keys (broker/keys.py): one index ZSET, schedule id -> when its next tick is due (+inf
while paused), and one HASH per schedule: `spec` (the definition, canonical JSON),
`timing`, `origin`, `cursor` (ms: ticks at or before it are done), `paused`, `runs`,
`last_run`, `last_task`, and times. All under the `{schedules}` hash tag: one slot.
Times come from Redis' clock, the one clock every worker shares.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, TypeVar

from conveyor.broker.admin import Procedure, command
from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.audit import Actor, audited, record
from conveyor.broker.ops import Op, Operations, scored
from conveyor.broker.scripts import Arg, Call
from conveyor.broker.steps import drive, drive_async
from conveyor.broker.sync_broker import SyncBroker
from conveyor.errors import ConveyorError
from conveyor.schedule import Origin, Schedule, ScheduleInfo, from_millis, validate_schedule_id

log = logging.getLogger("conveyor.schedules")
T = TypeVar("T")

#: Most schedules `list` reads (and fsck checks).
MAX_SCHEDULES = 10_000
#: Most due schedules one firing step reads.
DUE_BATCH = 100


class ScheduleNotFoundError(ConveyorError):
    """No schedule has this id."""


@dataclass(frozen=True, slots=True)
class Due:
    """A schedule whose next tick has come, as a worker read it."""

    schedule: Schedule
    #: the cursor read with it: the check-and-set compares against it
    cursor: int


@dataclass(frozen=True, slots=True)
class DueRead:
    """What one look at the index found."""

    now: int
    due: list[Due]
    #: when the earliest tick not yet due falls (ms), if any schedule is active
    next_due: int | None
    #: ids due whose hash could not be decoded (fsck reports them)
    corrupt: list[str]
    #: ids in the index whose hash is gone
    gone: list[str]


class ScheduleAdmin:
    """The sans-IO procedures over the schedule keys (run by both faces and the worker)."""

    def __init__(self, ops: Operations) -> None:
        self.keys = ops.keys
        self.scripts = ops.scripts

    def _script(self, name: str, schedule_id: str, argv: list[Arg]) -> Call:
        keys = [self.keys.schedules, self.keys.schedule(schedule_id)]
        return Call.script_call(self.scripts[name], keys, [schedule_id, *argv])

    def now(self) -> Procedure[int]:
        """Redis' clock in ms."""
        seconds, micros = yield command("TIME")
        return int(seconds) * 1000 + int(micros) // 1000

    # -- reading ---------------------------------------------------------------------

    def list(self) -> Procedure[list[ScheduleInfo]]:
        """Every schedule, by id (those that cannot be decoded are left out: fsck)."""
        entries = yield command("ZRANGE", self.keys.schedules, 0, MAX_SCHEDULES - 1, "WITHSCORES")
        by_id = {m.decode(): score for m, score in scored(entries)}
        ids = sorted(by_id)
        calls = [Call.command("HGETALL", self.keys.schedule(i)) for i in ids]
        hashes: list[Any] = (yield Op(calls, list)) if calls else []
        found = []
        for schedule_id, raw in zip(ids, hashes, strict=True):
            info = decode_info(schedule_id, by_id[schedule_id], raw)
            if info is not None:
                found.append(info)
        return found

    def get(self, schedule_id: str) -> Procedure[ScheduleInfo]:
        """One schedule; ScheduleNotFoundError if none has this id."""
        validate_schedule_id(schedule_id)
        raw, score = yield Op(
            [
                Call.command("HGETALL", self.keys.schedule(schedule_id)),
                Call.command("ZSCORE", self.keys.schedules, schedule_id),
            ],
            list,
        )
        info = decode_info(schedule_id, None if score is None else float(score), raw)
        if info is None:
            raise ScheduleNotFoundError(f"no schedule {schedule_id!r}")
        return info

    # -- changing --------------------------------------------------------------------

    def upsert(self, schedule: Schedule, origin: Origin = "api") -> Procedure[str]:
        """Create or replace a schedule; "created", "updated" or "unchanged"."""
        now = yield from self.now()
        argv: list[Arg] = [
            schedule.spec(), schedule.timing_key(), origin, now, schedule.timing.next_after(now)
        ]  # fmt: skip
        result = yield _raw(self._script("upsert_schedule", schedule.id, argv))
        return str(result.decode() if isinstance(result, bytes) else result)

    def remove(self, schedule_id: str) -> Procedure[None]:
        """Delete a schedule; ScheduleNotFoundError if none has this id."""
        validate_schedule_id(schedule_id)
        deleted, _ = yield Op(
            [
                Call.command("DEL", self.keys.schedule(schedule_id)),
                Call.command("ZREM", self.keys.schedules, schedule_id),
            ],
            list,
        )
        if not deleted:
            raise ScheduleNotFoundError(f"no schedule {schedule_id!r}")

    def set_paused(self, schedule_id: str, paused: bool) -> Procedure[ScheduleInfo]:
        """Pause or resume a schedule; it as it is after. Ticks due while it was paused
        are not fired on resuming."""
        info = yield from self.get(schedule_id)
        now = yield from self.now()
        argv: list[Arg] = [int(paused), now, info.schedule.timing.next_after(now)]
        if not (yield _raw(self._script("pause_schedule", schedule_id, argv))):
            raise ScheduleNotFoundError(f"no schedule {schedule_id!r}")
        return (yield from self.get(schedule_id))

    # -- firing (the worker) ---------------------------------------------------------

    def due(self) -> Procedure[DueRead]:
        """The schedules whose next tick has come (up to DUE_BATCH), with Redis' time."""
        (seconds, micros), head = yield Op(
            [
                Call.command("TIME", route=self.keys.schedules),  # the clock of their node
                Call.command("ZRANGE", self.keys.schedules, 0, 0, "WITHSCORES"),
            ],
            list,
        )
        now = int(seconds) * 1000 + int(micros) // 1000
        first = scored(head)
        next_due = _finite(first[0][1]) if first else None
        if next_due is None or next_due > now:
            return DueRead(now, [], next_due, [], [])
        ids = yield command(
            "ZRANGEBYSCORE", self.keys.schedules, "-inf", now, "LIMIT", 0, DUE_BATCH
        )
        fields = ("spec", "cursor", "paused")
        calls = [Call.command("HMGET", self.keys.schedule(i.decode()), *fields) for i in ids]
        rows: list[Any] = yield Op(calls, list)
        due: list[Due] = []
        corrupt: list[str] = []
        gone: list[str] = []
        for raw_id, (spec, cursor, paused) in zip(ids, rows, strict=True):
            schedule_id = raw_id.decode()
            if spec is None:  # removed meanwhile, or the index outlived it: forget it
                gone.append(schedule_id)
                continue
            if paused == b"1":
                continue
            try:
                due.append(Due(Schedule.from_spec(spec), int(cursor)))
            except (ConveyorError, TypeError, ValueError):
                corrupt.append(schedule_id)
        return DueRead(now, due, next_due, corrupt, gone)

    def advance(
        self, due: Due, cursor: int, next_due: int, fired: int, last: int | None, task: str
    ) -> Op[int]:
        """The check-and-set after a firing (see advance_schedule.lua); 1, 0 or -1."""
        argv: list[Arg] = [due.cursor, cursor, next_due, fired, last or "", task]
        return _raw(self._script("advance_schedule", due.schedule.id, argv))

    def forget(self, schedule_id: str) -> Op[int]:
        """Drop the index entry of a schedule whose hash is gone (and only then)."""
        return _raw(self._script("advance_schedule", schedule_id, [0, 0, 0, 0, "", ""]))


def _raw(call: Call) -> Op[Any]:
    return Op([call], lambda replies: replies[0])


def _finite(score: float) -> int | None:
    return None if score == float("inf") else int(score)


def decode_info(schedule_id: str, score: float | None, raw: Any) -> ScheduleInfo | None:
    """A schedule's hash as a ScheduleInfo; None if absent or undecodable."""
    if not raw:
        return None
    try:
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        schedule = Schedule.from_spec(fields["spec"])
        paused = fields.get("paused") == "1"
        return ScheduleInfo(
            schedule=schedule,
            origin=fields.get("origin", "api"),
            paused=paused,
            next_run=None if paused or score is None else from_millis(_finite(score)),
            last_run=from_millis(_number(fields.get("last_run"))),
            last_task=fields.get("last_task") or None,
            runs=int(fields.get("runs") or 0),
            created_at=from_millis(_number(fields.get("created_at"))),
            updated_at=from_millis(_number(fields.get("updated_at"))),
            declared_at=from_millis(_number(fields.get("declared_at"))),
        )
    except (ConveyorError, AttributeError, KeyError, TypeError, ValueError):
        log.warning("schedule %s cannot be decoded (conveyor fsck reports it)", schedule_id)
        return None


def _number(text: str | None) -> int | None:
    return int(text) if text else None


class AsyncSchedules:
    """Read and administer schedules (asyncio); the Inspector's `schedules`."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker
        self.admin = ScheduleAdmin(broker.ops)

    async def _run(self, procedure: Procedure[T]) -> T:
        return await drive_async(procedure, self.broker.shared.run)

    async def list(self) -> list[ScheduleInfo]:
        """Every schedule, by id."""
        return await self._run(self.admin.list())

    async def get(self, schedule_id: str) -> ScheduleInfo:
        """One schedule; ScheduleNotFoundError if unknown."""
        return await self._run(self.admin.get(schedule_id))

    async def upsert(
        self, schedule: Schedule, *, origin: Origin = "api", actor: Actor | None = None
    ) -> str:
        """Create or replace a schedule; "created", "updated" or "unchanged"."""
        procedure = self.admin.upsert(schedule, origin)
        return await self._run(audited(self.admin.keys, procedure, actor, "schedule.upsert",
                                       schedule.id, _one))  # fmt: skip

    async def remove(self, schedule_id: str, *, actor: Actor | None = None) -> None:
        """Delete a schedule; ScheduleNotFoundError if unknown."""
        procedure = self.admin.remove(schedule_id)
        await self._run(audited(self.admin.keys, procedure, actor, "schedule.remove",
                                schedule_id, _one))  # fmt: skip

    async def set_paused(
        self, schedule_id: str, paused: bool, *, actor: Actor | None = None
    ) -> ScheduleInfo:
        """Pause or resume a schedule; ScheduleNotFoundError if unknown."""
        action = "schedule.pause" if paused else "schedule.resume"
        procedure = self.admin.set_paused(schedule_id, paused)
        return await self._run(audited(self.admin.keys, procedure, actor, action, schedule_id,
                                       _one))  # fmt: skip

    async def ran(self, schedule_id: str, task_id: str, *, actor: Actor | None = None) -> None:
        """Log that an operator ran the schedule now (the enqueue is the producer's)."""
        if actor is not None:
            await self.broker.run(_ran(self.admin, actor, schedule_id, task_id))


class SyncSchedules:
    """The same as AsyncSchedules, blocking."""

    def __init__(self, broker: SyncBroker) -> None:
        self.broker = broker
        self.admin = ScheduleAdmin(broker.ops)

    def _run(self, procedure: Procedure[T]) -> T:
        return drive(procedure, self.broker.run)

    def list(self) -> list[ScheduleInfo]:
        """Every schedule, by id."""
        return self._run(self.admin.list())

    def get(self, schedule_id: str) -> ScheduleInfo:
        """One schedule; ScheduleNotFoundError if unknown."""
        return self._run(self.admin.get(schedule_id))

    def upsert(
        self, schedule: Schedule, *, origin: Origin = "api", actor: Actor | None = None
    ) -> str:
        """Create or replace a schedule; "created", "updated" or "unchanged"."""
        procedure = self.admin.upsert(schedule, origin)
        return self._run(audited(self.admin.keys, procedure, actor, "schedule.upsert",
                                 schedule.id, _one))  # fmt: skip

    def remove(self, schedule_id: str, *, actor: Actor | None = None) -> None:
        """Delete a schedule; ScheduleNotFoundError if unknown."""
        procedure = self.admin.remove(schedule_id)
        self._run(audited(self.admin.keys, procedure, actor, "schedule.remove", schedule_id,
                          _one))  # fmt: skip

    def set_paused(
        self, schedule_id: str, paused: bool, *, actor: Actor | None = None
    ) -> ScheduleInfo:
        """Pause or resume a schedule; ScheduleNotFoundError if unknown."""
        action = "schedule.pause" if paused else "schedule.resume"
        procedure = self.admin.set_paused(schedule_id, paused)
        return self._run(audited(self.admin.keys, procedure, actor, action, schedule_id, _one))

    def ran(self, schedule_id: str, task_id: str, *, actor: Actor | None = None) -> None:
        """Log that an operator ran the schedule now (the enqueue is the producer's)."""
        if actor is not None:
            self.broker.run(_ran(self.admin, actor, schedule_id, task_id))


def _ran(admin: ScheduleAdmin, actor: Actor, schedule_id: str, task_id: str) -> Op[None]:
    return record(admin.keys, actor, "schedule.run", f"{schedule_id}: {task_id}", 1)


def _one(_: object) -> int:
    return 1
