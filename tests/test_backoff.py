"""Backoff with full jitter, and the retry decisions of RetryPolicy (pure functions)."""

from __future__ import annotations

import statistics

import pytest

from conveyor import Retry
from conveyor.backoff import RetryPolicy, full_jitter


@pytest.mark.parametrize(("base", "cap"), [(1.0, 300.0), (0.01, 0.05), (2.0, 10.0), (0.5, 1e9)])
def test_full_jitter_stays_within_min_of_cap_and_exponential(base: float, cap: float) -> None:
    for failures in [*range(12), 40, 62, 63, 1000, 10**6]:
        ceiling = min(cap, base * 2 ** min(failures, 62))
        for _ in range(200):
            delay = full_jitter(failures, base, cap)
            assert 0.0 <= delay <= ceiling, (failures, delay, ceiling)


def test_full_jitter_spreads_over_the_whole_range() -> None:
    ceiling = 32.0  # base 1 * 2**5, below the cap
    samples = [full_jitter(5, 1.0, 300.0) for _ in range(2000)]
    assert min(samples) < 0.05 * ceiling and max(samples) > 0.95 * ceiling
    assert len(set(samples)) > 1990  # not a handful of fixed steps
    # uniform on [0, 32]: mean 16, standard deviation 32 / sqrt(12) = 9.2
    assert statistics.mean(samples) == pytest.approx(16.0, abs=1.5)
    assert statistics.pstdev(samples) == pytest.approx(9.24, abs=1.0)
    quarters = [sum(q * 8 <= s < (q + 1) * 8 for s in samples) for q in range(4)]
    assert all(400 < n < 600 for n in quarters), quarters


def test_the_ceiling_grows_then_hits_the_cap() -> None:
    top = [max(full_jitter(n, 1.0, 20.0) for _ in range(300)) for n in range(7)]
    assert top[0] <= 1.0 < top[2] <= 4.0 < top[3] <= 8.0 < top[4] <= 16.0
    assert all(t <= 20.0 for t in top) and top[6] > 16.0


def policy(
    max_retries: int = 3,
    retry_on: tuple[type[BaseException], ...] = (),
    no_retry_on: tuple[type[BaseException], ...] = (),
) -> RetryPolicy:
    return RetryPolicy(max_retries, 1.0, 60.0, retry_on, no_retry_on)


def test_every_exception_is_retried_by_default_with_backoff() -> None:
    rules = policy()
    for failures in range(3):
        delay = rules.next_delay(ValueError("x"), failures)
        assert delay is not None and 0.0 <= delay <= 2.0**failures


def test_retry_on_limits_retries_to_those_types_and_subclasses() -> None:
    rules = policy(retry_on=(ConnectionError, TimeoutError))
    assert rules.next_delay(ConnectionError(), 0) is not None
    assert rules.next_delay(ConnectionRefusedError(), 0) is not None  # a subclass
    assert rules.next_delay(TimeoutError(), 0) is not None
    assert rules.next_delay(KeyError("k"), 0) is None
    assert not rules.is_retryable(ValueError())


def test_no_retry_on_wins_over_retry_on() -> None:
    rules = policy(retry_on=(OSError,), no_retry_on=(PermissionError,))
    assert rules.next_delay(ConnectionError(), 0) is not None
    assert rules.next_delay(PermissionError(), 0) is None
    only_no = policy(no_retry_on=(PermissionError,))
    assert only_no.next_delay(ValueError(), 0) is not None
    assert only_no.next_delay(PermissionError(), 0) is None


def test_retry_asks_for_its_own_delay_even_outside_retry_on() -> None:
    rules = policy(retry_on=(ConnectionError,))
    assert rules.next_delay(Retry(delay=7.5), 0) == 7.5
    assert rules.next_delay(Retry(delay=0), 2) == 0.0
    assert rules.next_delay(Retry(delay=-3), 0) == 0.0  # never a negative wait
    delay = rules.next_delay(Retry(), 2)  # no delay given: the normal backoff
    assert delay is not None and 0.0 <= delay <= 4.0


@pytest.mark.parametrize("exc", [ValueError("x"), Retry(delay=1.0), Retry(), ConnectionError()])
def test_an_exhausted_budget_ends_the_task_whatever_the_error(exc: Exception) -> None:
    rules = policy(max_retries=2, retry_on=(ConnectionError,))
    assert rules.next_delay(exc, 2) is None
    assert rules.next_delay(exc, 5) is None
    assert policy(max_retries=0).next_delay(exc, 0) is None


def test_the_budget_counts_earlier_failures() -> None:
    rules = policy(max_retries=2)
    assert [rules.next_delay(ValueError(), n) is not None for n in range(4)] == [
        True, True, False, False,
    ]  # fmt: skip
