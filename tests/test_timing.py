"""Timings: cron in a time zone across daylight-saving changes, and intervals; the ticks
read forward and backward agree, since a tick's time names it."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conveyor.errors import ConfigurationError
from conveyor.timing import Timing

PARIS = ZoneInfo("Europe/Paris")


def ms(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    *,
    tz: ZoneInfo = PARIS,
    fold: int = 0,
) -> int:
    return round(datetime(year, month, day, hour, minute, tzinfo=tz, fold=fold).timestamp() * 1000)


def local(tick: int) -> str:
    return datetime.fromtimestamp(tick / 1000, PARIS).isoformat()


def forward(timing: Timing, start: int, count: int) -> list[int]:
    ticks = []
    for _ in range(count):
        start = timing.next_after(start)
        ticks.append(start)
    return ticks


def test_daily_at_2_30_in_paris_runs_once_a_day_across_the_march_change() -> None:
    daily = Timing.of(cron="30 2 * * *", tz="Europe/Paris")
    ticks = forward(daily, ms(2026, 3, 27), 4)
    # 29 March 2026: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist: 03:00 instead
    assert [local(t) for t in ticks] == [
        "2026-03-27T02:30:00+01:00",
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    assert daily.latest(ms(2026, 3, 27), ticks[-1], 10) == ticks  # backward: the same ticks


def test_daily_at_2_30_in_paris_runs_once_a_day_across_the_october_change() -> None:
    daily = Timing.of(cron="30 2 * * *", tz="Europe/Paris")
    ticks = forward(daily, ms(2026, 10, 23), 4)
    # 25 October 2026: 03:00 CEST falls back to 02:00 CET, so 02:30 happens twice: once
    assert [local(t) for t in ticks] == [
        "2026-10-23T02:30:00+02:00",
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    assert daily.latest(ms(2026, 10, 23), ticks[-1], 10) == ticks
    # a look from inside the repeated hour does not find a second 02:30
    inside = ms(2026, 10, 25, 2, 45, fold=1)
    assert daily.latest(ticks[2], inside, 10) == []
    assert daily.next_after(inside) == ticks[3]


def test_an_hourly_schedule_follows_real_hours_across_both_changes() -> None:
    hourly = Timing.of(cron="0 * * * *", tz="Europe/Paris")
    spring = forward(hourly, ms(2026, 3, 29, 0, 30), 3)
    assert [local(t) for t in spring] == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:00 does not exist; one real hour after 01:00
        "2026-03-29T04:00:00+02:00",
    ]
    autumn = forward(hourly, ms(2026, 10, 25, 0, 30), 4)
    assert [local(t) for t in autumn] == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",  # the repeated hour fires too: it is a real hour
        "2026-10-25T03:00:00+01:00",
    ]
    for ticks in (spring, autumn):
        assert all(b - a == 3_600_000 for a, b in itertools.pairwise(ticks))
        assert hourly.latest(ticks[0] - 1, ticks[-1], 10) == ticks


def test_intervals_tick_on_multiples_since_the_epoch() -> None:
    every = Timing.of(every=timedelta(seconds=2))
    assert every.every_ms == 2000
    assert every.next_after(1999) == 2000
    assert every.next_after(2000) == 4000
    assert every.latest(1000, 9_500, 3) == [4000, 6000, 8000]  # the last three
    assert every.latest(1000, 9_500, 100) == [2000, 4000, 6000, 8000]
    assert every.latest(8000, 9_500, 100) == []  # nothing after the cursor
    assert Timing.of(every=90).describe() == "every 90s"


def test_cron_limits_and_utc_default() -> None:
    utc = Timing.of(cron="*/15 * * * *")
    assert utc.tz == "UTC"
    start = ms(2026, 1, 1, 0, 7, tz=ZoneInfo("UTC"))
    assert utc.next_after(start) == ms(2026, 1, 1, 0, 15, tz=ZoneInfo("UTC"))
    assert utc.latest(start, start + 3_600_000, 2) == [
        ms(2026, 1, 1, 0, 45, tz=ZoneInfo("UTC")),
        ms(2026, 1, 1, 1, 0, tz=ZoneInfo("UTC")),
    ]
    assert utc.latest(start, start, 5) == [] and utc.latest(start, start + 1, 0) == []


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "* * * *"}, "5 fields"),
        ({"cron": "* * * * * *"}, "5 fields"),
        ({"cron": "0 0 31 2 *"}, "invalid cron expression"),  # February 31st never comes
        ({"cron": ""}, "invalid cron expression"),
        ({"cron": "0 * * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"cron": "0 * * * *", "tz": "../etc/passwd"}, "unknown time zone"),
        ({"cron": "0 * * * *", "every": 60}, "exactly one of cron= and every="),
        ({}, "exactly one of cron= and every="),
        ({"every": 0}, "every must be > 0"),
        ({"every": -5}, "every must be > 0"),
        ({"every": timedelta(0)}, "every must be > 0"),
        ({"every": 0.5}, "between 1 second and 366 days"),
        ({"every": timedelta(days=400)}, "between 1 second and 366 days"),
        ({"every": "60"}, "every must be a timedelta or seconds"),
        ({"every": True}, "every must be a timedelta or seconds"),
        ({"every": 60, "tz": "Europe/Paris"}, "tz= applies to cron schedules only"),
    ],
)
def test_bad_timings_are_refused_with_a_clear_message(
    given: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Timing.of(**given)  # type: ignore[arg-type]
