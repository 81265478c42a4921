"""`app.schedules` and `@app.periodic`: upsert, list, pause, resume, remove and run now
from code, sync and async, and every bad input refused before anything is stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.broker.schedules import ScheduleNotFoundError
from conveyor.errors import ConfigurationError, SerializationError
from tests.support.keyspace import dump


def register(app: Conveyor) -> None:
    @app.task(name="report", queue="reports", priority=7)
    def report(day: str = "") -> None:
        """A task with decorator defaults."""


def test_upsert_list_pause_resume_remove(app: Conveyor, r: redis.Redis, prefix: str) -> None:
    register(app)
    info = app.schedules.upsert("nightly", "report", cron="30 2 * * *", tz="Europe/Paris",
                                kwargs={"day": "today"})  # fmt: skip
    # the task's decorator queue and priority are stored with the schedule
    assert (info.schedule.queue, info.schedule.priority) == ("reports", 7)
    assert info.schedule.timing.tz == "Europe/Paris" and not info.paused
    assert info.next_run is not None and info.next_run.minute in (0, 30)
    assert [i.id for i in app.schedules.list()] == ["nightly"]
    assert app.schedules.pause("nightly").paused
    assert app.schedules.get("nightly").paused
    assert not app.schedules.resume("nightly").paused
    app.schedules.upsert("nightly", "report", every=timedelta(hours=1), queue="other")
    assert app.schedules.get("nightly").schedule.queue == "other"
    app.schedules.remove("nightly")
    assert app.schedules.list() == [] and dump(r, prefix) == {}
    with pytest.raises(ScheduleNotFoundError):
        app.schedules.remove("nightly")


def test_run_now_enqueues_the_task_once_outside_its_ticks(app: Conveyor) -> None:
    register(app)
    app.schedules.upsert("nightly", "report", every=3600, args=["x"], priority=-2)
    handle = app.schedules.run_now("nightly")
    record = handle.record()
    assert record is not None and record.state == TaskState.PENDING
    assert (record.name, record.args, record.queue) == ("report", ["x"], "reports")
    assert record.priority == -2
    assert record.idempotency_key is None
    assert app.schedules.run_now("nightly").id != handle.id  # each run is a new task
    with pytest.raises(ScheduleNotFoundError):
        app.schedules.run_now("nope")


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ({"cron": "not a cron"}, ConfigurationError, "cron"),
        ({"cron": "0 * * * *", "tz": "Nowhere/City"}, ConfigurationError, "unknown time zone"),
        ({"cron": "0 * * * *", "every": 60}, ConfigurationError, "exactly one"),
        ({}, ConfigurationError, "exactly one"),
        ({"every": 0}, ConfigurationError, "every must be > 0"),
        ({"every": timedelta(seconds=-1)}, ConfigurationError, "every must be > 0"),
        ({"every": 60, "task": "nobody.registered.this"}, ConfigurationError, "unknown task"),
        ({"every": 60, "misfire": "never"}, ConfigurationError, "misfire"),
        ({"every": 60, "args": [{1, 2}]}, SerializationError, "JSON"),
        ({"every": 60, "id": "bad id"}, ConfigurationError, "invalid schedule id"),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(
    app: Conveyor, r: redis.Redis, prefix: str, given: dict[str, Any], error: type, message: str
) -> None:
    register(app)
    given = dict(given)  # the parameters are shared by each Redis version's run
    schedule_id, task = given.pop("id", "nightly"), given.pop("task", "report")
    with pytest.raises(error, match=message):
        app.schedules.upsert(schedule_id, task, **given)
    assert dump(r, prefix) == {}


async def test_the_async_book_does_the_same(aapp: Conveyor, r: redis.Redis, prefix: str) -> None:
    register(aapp)
    book = aapp.async_schedules()
    info = await book.upsert("hourly", "report", cron="0 * * * *")
    assert info.schedule.queue == "reports"
    assert [i.id for i in await book.list()] == ["hourly"]
    assert (await book.pause("hourly")).paused
    assert not (await book.resume("hourly")).paused
    assert (await book.get("hourly")).schedule.task == "report"
    handle = await book.run_now("hourly")
    assert (await handle.record_async()) is not None
    await book.remove("hourly")
    assert await book.list() == []
    with pytest.raises(ScheduleNotFoundError):
        await book.get("hourly")
    with pytest.raises(ConfigurationError, match="unknown task"):
        await book.upsert("x", "unknown", every=60)


def test_periodic_declares_schedules_on_tasks_and_plain_functions(app: Conveyor) -> None:
    @app.periodic(every=timedelta(minutes=5), args=[1], misfire="once")
    @app.task(queue="reports")
    def five(n: int) -> None:
        """Every five minutes."""

    @app.periodic(id="paris", cron="30 2 * * *", tz="Europe/Paris", jitter=30)
    def plain() -> None:
        """Registered as a task by the decorator."""

    assert plain.name in app.tasks and plain() is None
    declared = app.declared_schedules
    assert set(declared) == {five.name, "paris"}
    assert declared[five.name].queue == "reports" and declared[five.name].misfire == "once"
    assert declared["paris"].task == plain.name and declared["paris"].jitter == 30
    with pytest.raises(ConfigurationError, match="declared already"):
        app.periodic(id="paris", every=60)(five)
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        app.periodic(cron="0 * * * *", tz="Atlantis")(five)
    assert app.schedules.list() == []  # declaring stores nothing: workers upsert at start
