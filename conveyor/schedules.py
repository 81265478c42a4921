"""`app.schedules`: periodic schedules stored in Redis, upserted, paused, resumed, removed
and run now from code (the CLI and the API do the same through the Inspector).

Building a schedule checks it whole, against the app's task registry too, before
anything is stored: a bad cron, an unknown time zone or task, both or neither of cron=
and every=, every <= 0, all raise ConfigurationError and leave Redis as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from conveyor.broker.schedules import AsyncSchedules, SyncSchedules
from conveyor.errors import ConfigurationError
from conveyor.options import DEFAULT_QUEUE
from conveyor.producer import Message, TaskHandle
from conveyor.schedule import Misfire, Schedule, ScheduleInfo
from conveyor.task import TaskDefinition

if TYPE_CHECKING:
    from conveyor.app import Conveyor


class ScheduleArgs(TypedDict, total=False):
    """What a schedule takes besides its id and task (see `Schedule`)."""

    cron: str | None
    every: timedelta | float | None
    tz: str | None
    args: tuple[Any, ...] | list[Any]
    kwargs: dict[str, Any] | None
    queue: str | None
    priority: int | None
    max_retries: int | None
    timeout: float | None
    misfire: Misfire
    jitter: float


def build_schedule(
    schedule_id: str,
    task: str | TaskDefinition,
    registry: Mapping[str, object] | None,
    **given: Unpack[ScheduleArgs],
) -> Schedule:
    """A checked Schedule. With a `registry`, the task must be in it, and its decorator's
    queue and priority apply unless given; the result stores them, so every worker
    enqueues the ticks to the same queue whatever code it runs."""
    name = task.name if isinstance(task, TaskDefinition) else task
    definition = task if isinstance(task, TaskDefinition) else None
    if registry is not None:
        found = registry.get(name)
        definition = found if isinstance(found, TaskDefinition) else None
        if found is None:
            known = ", ".join(sorted(registry)[:10]) or "none"
            raise ConfigurationError(f"unknown task {name!r} (known tasks: {known})")
    rest: dict[str, Any] = dict(given)
    defaults = definition.defaults if definition is not None else None
    if rest.get("queue") is None:
        rest["queue"] = (defaults.queue if defaults else None) or DEFAULT_QUEUE
    if rest.get("priority") is None:
        rest["priority"] = (defaults.priority if defaults else None) or 0
    return Schedule.build(schedule_id, name, **rest)


def schedule_message(
    schedule: Schedule, tasks: Mapping[str, TaskDefinition], tick: int | None = None
) -> Message:
    """The task a schedule enqueues: its arguments and options, with a tick's key and
    delay (none for `run_now`), and the flow control its task's definition in `tasks`
    gives (a unique periodic task skips a tick while the last one is live)."""
    if tick is None:
        options = schedule.options()
    else:
        options = schedule.options(schedule.tick_delay(tick), schedule.tick_key(tick))
    definition = tasks.get(schedule.task)
    if definition is not None:
        options = definition.with_flow(options, schedule.args, schedule.kwargs)
    return Message(schedule.task, schedule.args, dict(schedule.kwargs), options)


class ScheduleBook:
    """The schedules of an app's keyspace, from synchronous code (`app.schedules`)."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app

    @property
    def _store(self) -> SyncSchedules:
        return self.app.inspector.schedules

    def upsert(
        self, id: str, task: str | TaskDefinition, **given: Unpack[ScheduleArgs]
    ) -> ScheduleInfo:
        """Create or replace schedule `id`: `task` (registered in this app) at each tick.

        Args:
            cron: a 5-field cron expression, evaluated in `tz` (default UTC).
            every: an interval (timedelta or seconds, >= 1 s); ticks at its multiples
                since the epoch.
            args, kwargs: the handler's arguments, fixed.
            queue, priority: default to the task's; max_retries, timeout as in enqueue.
            misfire: "skip" (default), "once" or "all": ticks missed while no worker ran.
            jitter: each tick's task waits a fixed random delay in [0, jitter] seconds.
        """
        schedule = build_schedule(id, task, self.app.tasks, **given)
        self._store.upsert(schedule)
        return self._store.get(id)

    def list(self) -> list[ScheduleInfo]:
        """Every schedule with its state (paused, next and last run)."""
        return self._store.list()

    def get(self, id: str) -> ScheduleInfo:
        """One schedule; ScheduleNotFoundError if none has this id."""
        return self._store.get(id)

    def remove(self, id: str) -> None:
        """Delete a schedule (one still declared in running code comes back within a
        minute); ScheduleNotFoundError if unknown."""
        self._store.remove(id)

    def pause(self, id: str) -> ScheduleInfo:
        """Stop firing a schedule until resumed (kept across upserts and restarts)."""
        return self._store.set_paused(id, True)

    def resume(self, id: str) -> ScheduleInfo:
        """Fire a paused schedule again, from its next tick (the paused ones are skipped)."""
        return self._store.set_paused(id, False)

    def run_now(self, id: str) -> TaskHandle:
        """Enqueue the schedule's task now, once, outside its ticks; its handle."""
        schedule = self._store.get(id).schedule
        return self.app.enqueue_many([schedule_message(schedule, self.app.tasks)])[0]


class AsyncScheduleBook:
    """Like ScheduleBook, from asyncio code (`app.async_schedules()`)."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app

    @property
    def _store(self) -> AsyncSchedules:
        return self.app.async_inspector().schedules

    async def upsert(
        self, id: str, task: str | TaskDefinition, **given: Unpack[ScheduleArgs]
    ) -> ScheduleInfo:
        """Like `ScheduleBook.upsert`."""
        schedule = build_schedule(id, task, self.app.tasks, **given)
        await self._store.upsert(schedule)
        return await self._store.get(id)

    async def list(self) -> list[ScheduleInfo]:
        """Every schedule with its state."""
        return await self._store.list()

    async def get(self, id: str) -> ScheduleInfo:
        """One schedule; ScheduleNotFoundError if unknown."""
        return await self._store.get(id)

    async def remove(self, id: str) -> None:
        """Delete a schedule; ScheduleNotFoundError if unknown."""
        await self._store.remove(id)

    async def pause(self, id: str) -> ScheduleInfo:
        """Stop firing a schedule until resumed."""
        return await self._store.set_paused(id, True)

    async def resume(self, id: str) -> ScheduleInfo:
        """Fire a paused schedule again, from its next tick."""
        return await self._store.set_paused(id, False)

    async def run_now(self, id: str) -> TaskHandle:
        """Enqueue the schedule's task now, once; its handle."""
        schedule = (await self._store.get(id)).schedule
        return (await self.app.enqueue_many_async([schedule_message(schedule, self.app.tasks)]))[0]
