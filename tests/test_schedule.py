"""Schedule definitions: checked whole before anything is stored, stored canonically, and
each tick's key and jitter fixed by the tick alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from conveyor.errors import ConfigurationError, SerializationError
from conveyor.schedule import Schedule


def build(**given: Any) -> Schedule:
    given.setdefault("every", 60)
    return Schedule.build(given.pop("id", "nightly"), given.pop("task", "report"), **given)


def test_a_spec_round_trips_and_is_canonical() -> None:
    schedule = build(
        cron="30 2 * * *", every=None, tz="Europe/Paris", args=[1, "a"],
        kwargs={"b": 2, "a": 1}, queue="reports", priority=5, max_retries=2, timeout=9.5,
        misfire="all", jitter=3,
    )  # fmt: skip
    assert Schedule.from_spec(schedule.spec()) == schedule
    reordered = build(
        cron="30 2 * * *", every=None, tz="Europe/Paris", args=(1, "a"),
        kwargs={"a": 1, "b": 2}, queue="reports", priority=5, max_retries=2, timeout=9.5,
        misfire="all", jitter=3,
    )  # fmt: skip
    assert reordered.spec() == schedule.spec()  # same definition, same bytes: "unchanged"
    every = build(every=timedelta(minutes=5))
    assert Schedule.from_spec(every.spec()) == every
    assert every.to_json()["every"] == 300 and every.to_json()["tz"] is None


def test_options_of_a_tick() -> None:
    schedule = build(queue="reports", priority=-3, timeout=5)
    options = schedule.options(1.5, schedule.tick_key(60_000))
    assert (options.queue, options.priority, options.timeout) == ("reports", -3, 5)
    assert options.delay == 1.5 and options.idempotency_key == "schedule:nightly:60000"


def test_jitter_is_fixed_per_tick_and_within_bounds() -> None:
    assert build().tick_delay(60_000) is None
    schedule = build(jitter=10)
    delays = [schedule.tick_delay(tick * 60_000) for tick in range(200)]
    assert all(d is not None and 0 <= d <= 10 for d in delays)
    assert delays == [schedule.tick_delay(tick * 60_000) for tick in range(200)]  # fixed
    assert len(set(delays)) > 150  # and spread
    assert build(id="other", jitter=10).tick_delay(0) != schedule.tick_delay(0)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"id": "a{b}"}, "invalid schedule id"),
        ({"id": "a:b"}, "invalid schedule id"),
        ({"id": ""}, "invalid schedule id"),
        ({"id": "x" * 129}, "invalid schedule id"),
        ({"task": "no spaces"}, "invalid task name"),
        ({"misfire": "sometimes"}, "misfire must be one of skip, once, all"),
        ({"jitter": -1}, "jitter must be in"),
        ({"jitter": 90_000}, "jitter must be in"),
        ({"jitter": "1"}, "jitter must be a number"),
        ({"queue": "a:b"}, "invalid queue name"),
        ({"priority": 101}, "priority must be an integer"),
        ({"timeout": 0}, "timeout must be"),
        ({"max_retries": -1}, "max_retries must be"),
        ({"kwargs": []}, "kwargs a dict"),
    ],
)
def test_bad_definitions_are_refused(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build(**given)


def test_arguments_must_be_json() -> None:
    with pytest.raises(SerializationError):
        build(args=[object()])


@pytest.mark.parametrize(
    "spec", [b"not json", b"[]", b'{"id": "x"}', b'{"id": "x", "task": "t", "cron": null}']
)
def test_a_corrupt_spec_is_an_error(spec: bytes) -> None:
    with pytest.raises((SerializationError, ConfigurationError)):
        Schedule.from_spec(spec)
