"""The misfire policies, as the pure function every worker runs on Redis' clock: a fake
"now" here is the real thing's argument, not a stand-in."""

from __future__ import annotations

from typing import Any

from conveyor.schedule import Schedule
from conveyor.worker.firing import MAX_CATCH_UP, MISFIRE_GRACE_MS, horizon, plan

DAY = 86_400_000
WINDOW = DAY  # the default idempotency window


def every(seconds: int, **given: Any) -> Schedule:
    return Schedule.build("s", "job", every=seconds, **given)


def test_a_tick_on_time_fires_under_every_policy() -> None:
    for misfire in ("skip", "once", "all"):
        result = plan(every(60, misfire=misfire), 60_000, 120_050, WINDOW)
        assert (result.ticks, result.cursor, result.next_due) == ([120_000], 120_000, 180_000)


def test_nothing_due_re_arms_the_next_tick() -> None:
    result = plan(every(60), 60_000, 100_000, WINDOW)
    assert (result.ticks, result.cursor, result.next_due) == ([], 60_000, 120_000)


def test_skip_fires_no_missed_tick() -> None:
    # down from 01:00 to 01:10 on a minutely schedule: ten ticks missed, the last 50 s ago
    now = 3_600_000 + 600_000 + 50_000
    result = plan(every(60), 3_600_000, now, WINDOW)
    assert result.ticks == []
    assert result.cursor == 3_600_000 + 600_000 and result.next_due == result.cursor + 60_000
    # the latest tick within the grace still fires: it is late, not missed
    late = plan(every(60), 3_600_000, 3_600_000 + 600_000 + MISFIRE_GRACE_MS, WINDOW)
    assert late.ticks == [3_600_000 + 600_000]


def test_once_fires_the_latest_missed_tick_only() -> None:
    now = 3_600_000 + 600_000 + 50_000
    result = plan(every(60, misfire="once"), 3_600_000, now, WINDOW)
    assert result.ticks == [3_600_000 + 600_000]
    assert result.cursor == 3_600_000 + 600_000


def test_all_fires_each_missed_tick_up_to_the_bound() -> None:
    now = 3_600_000 + 600_000 + 50_000
    result = plan(every(60, misfire="all"), 3_600_000, now, WINDOW)
    assert result.ticks == [3_600_000 + 60_000 * i for i in range(1, 11)]
    # down a day on a minutely schedule: the latest MAX_CATCH_UP ticks only
    long = plan(every(60, misfire="all"), 0, DAY - 1, WINDOW + DAY)
    assert len(long.ticks) == MAX_CATCH_UP
    assert long.ticks[-1] == DAY - 60_000 and long.cursor == DAY - 60_000


def test_no_tick_older_than_the_idempotency_window_fires() -> None:
    # a weekly schedule missed by two days: its key would be gone, so it is not re-fired
    week = 7 * DAY
    once = every(week // 1000, misfire="once")
    assert plan(once, 0, week + 2 * DAY, WINDOW).ticks == []
    assert plan(once, 0, week + DAY // 2, WINDOW).ticks == [week]  # within the window
    result = plan(every(3600, misfire="all"), 0, 3 * DAY, WINDOW)
    assert min(result.ticks) > 3 * DAY - horizon(WINDOW)
    assert result.cursor == 3 * DAY  # the cursor still moves past all of them


def test_the_horizon_keeps_a_margin_below_the_window() -> None:
    assert horizon(DAY) == DAY - 60_000
    assert horizon(60_000) == 30_000  # a short window keeps half of itself


def test_a_tick_never_fires_twice_once_the_cursor_passed_it() -> None:
    schedule = every(1, misfire="all")
    first = plan(schedule, 0, 5_500, WINDOW)
    again = plan(schedule, first.cursor, 5_900, WINDOW)
    assert first.ticks == [1000, 2000, 3000, 4000, 5000] and again.ticks == []
