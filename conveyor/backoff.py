"""Retry policy: which errors are retried, and how long to wait (pure functions)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from conveyor.errors import Retry

ExceptionTypes = tuple[type[BaseException], ...]


def full_jitter(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**failures)].

    Full jitter spreads retries of tasks that failed together (say, during an outage)
    so they do not return as one thundering herd.
    """
    ceiling = min(cap, base * 2 ** min(failures, 62))
    return random.uniform(0, ceiling)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Per-task retry rules; `retry_on` empty means every exception is retried."""

    max_retries: int
    backoff_base: float
    backoff_cap: float
    retry_on: ExceptionTypes = ()
    no_retry_on: ExceptionTypes = ()

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether `exc` may be retried at all (ignoring the attempt budget)."""
        if isinstance(exc, Retry):
            return True
        if self.no_retry_on and isinstance(exc, self.no_retry_on):
            return False
        return not self.retry_on or isinstance(exc, self.retry_on)

    def next_delay(self, exc: BaseException, failures_so_far: int) -> float | None:
        """Seconds to wait before the next attempt, or None if the task should die now.

        `failures_so_far` counts earlier failed attempts, not this one.
        """
        if failures_so_far >= self.max_retries or not self.is_retryable(exc):
            return None
        if isinstance(exc, Retry) and exc.delay is not None:
            return max(0.0, exc.delay)
        return full_jitter(failures_so_far, self.backoff_base, self.backoff_cap)
