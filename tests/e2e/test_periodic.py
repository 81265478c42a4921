"""Each tick of a 1 s schedule is enqueued exactly once by real worker subprocesses, while
they are SIGKILLed and replaced, and after all of them stopped for a while (the short run;
the long one is `python -m tests.e2e.periodic_soak`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.settings import Settings
from tests.e2e.periodic_soak import holes, outage, soak

pytestmark = pytest.mark.slow


def test_three_workers_enqueue_each_tick_once_while_being_killed(
    settings: Settings, tmp_path: Path
) -> None:
    figures = soak(settings, tmp_path, workers=3, seconds=15, kill_every=3)
    assert figures.kills >= 3
    assert figures.duplicates == 0 and figures.tasks == figures.ticks, figures
    assert figures.holes == 0, figures  # a worker was alive throughout: no tick missed
    assert figures.ticks >= 10, figures
    assert figures.runs >= figures.tasks - 3, figures  # the last ones may not have run yet


def test_after_every_worker_stopped_skip_leaves_the_gap(settings: Settings, tmp_path: Path) -> None:
    missing, twice = outage(settings, tmp_path, workers=2, pause=6, misfire="skip")
    assert twice == []
    # the ticks of the pause were not fired (the latest one may be: it is on time)
    assert len(missing) >= 4, missing


def test_after_every_worker_stopped_all_fires_each_missed_tick_once(
    settings: Settings, tmp_path: Path
) -> None:
    missing, twice = outage(settings, tmp_path, workers=2, pause=6, misfire="all")
    assert twice == [] and missing == []


def test_holes_counts_the_missing_ticks() -> None:
    assert holes([]) == [] and holes([1000, 2000, 5000]) == [3000, 4000]
