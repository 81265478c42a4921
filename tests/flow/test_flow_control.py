"""Flow control proved with real worker subprocesses on a real redis-server, at CI sizes.

Each test runs one proof (the modules beside this one) and fails on any violation its
judge finds; `python -m tests.flow` runs the same proofs at the issue's sizes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.settings import Settings
from tests.flow import concurrency, fairness, rate, uniqueness

pytestmark = pytest.mark.slow


@pytest.fixture
def lease(settings: Settings) -> Settings:
    """A 2 s lease: a killed worker's runs come back within seconds (before Redis has been
    up RESTART_GRACE, the reaper does not act and only the lease brings them back)."""
    return settings.replace(lease_timeout=2.0)


def check(figures: object, violations: list[str]) -> None:
    """Fail on any violation; the figures are printed either way (`pytest -rP` shows them)."""
    print(repr(figures))
    assert not violations, "\n".join([repr(figures), *(f"FAIL: {v}" for v in violations)])


def test_concurrency_is_exact_across_workers_and_kills(lease: Settings, tmp_path: Path) -> None:
    size = concurrency.Size()
    figures = concurrency.run(lease, tmp_path, size)
    check(figures, figures.violations(size))


def test_rate_limit_paces_the_starts_and_idle_workers_stay_idle(
    lease: Settings, tmp_path: Path
) -> None:
    size = rate.Size()
    figures = rate.run(lease, tmp_path, size)
    check(figures, figures.violations(size))


def test_rate_limit_with_a_burst(lease: Settings, tmp_path: Path) -> None:
    size = rate.Size(tasks=150, rate=50, burst=10)
    figures = rate.run(lease, tmp_path, size)
    check(figures, figures.violations(size))


def test_a_late_group_starts_before_the_backlog_of_another(lease: Settings, tmp_path: Path) -> None:
    size = fairness.Size()
    figures = fairness.run(lease, tmp_path, size)
    check(figures, figures.violations(size))


@pytest.mark.parametrize("held", [True, False], ids=["held", "churn"])
def test_a_unique_key_has_one_live_task_under_concurrent_producers(
    held: bool, lease: Settings, tmp_path: Path
) -> None:
    figures = uniqueness.run(lease, tmp_path, uniqueness.Size(), held=held)
    check(figures, figures.violations(held))


def test_a_unique_key_survives_its_workers_sigkill_and_is_released_at_the_end(
    lease: Settings, tmp_path: Path
) -> None:
    figures = uniqueness.crash(lease, tmp_path)
    check(figures, figures.violations())
