"""When a schedule's ticks fall: a cron expression in a time zone, or a fixed interval.

Ticks are instants, in milliseconds since the epoch: every worker computes the same ones
from the same definition, so a tick's time names it (its idempotency key is built from it).
Cron expressions are evaluated by cronsim (the Debian cron rules, zoneinfo time zones):
across daylight-saving changes a daily "30 2 * * *" runs once a day (at 03:00 on the day
02:30 does not exist, at the first 02:30 on the day it happens twice), while a job whose
hour field is a wildcard follows real time ("0 * * * *" fires every real hour).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from conveyor.errors import ConfigurationError

#: Shortest interval of an `every=` schedule: each tick is an enqueue.
MIN_EVERY_MS = 1000
#: Longest interval of an `every=` schedule (a year): a longer one is a mistake.
MAX_EVERY_MS = 366 * 24 * 3600 * 1000
#: Longest cron expression accepted.
MAX_CRON = 200


@dataclass(frozen=True, slots=True)
class Timing:
    """A cron expression and its time zone, or an interval (`every_ms`, ticks at its
    multiples since the epoch: `every=timedelta(hours=1)` fires on the hour, UTC)."""

    cron: str | None = None
    tz: str = "UTC"
    every_ms: int | None = None

    def __post_init__(self) -> None:
        """Refuse a definition that could never tick, before anything is stored."""
        if (self.cron is None) == (self.every_ms is None):
            raise ConfigurationError("a schedule needs exactly one of cron= and every=")
        if self.every_ms is not None:
            if self.tz != "UTC":
                raise ConfigurationError("tz= applies to cron schedules only, not to every=")
            if not isinstance(self.every_ms, int) or isinstance(self.every_ms, bool):
                raise ConfigurationError(f"every must be a duration, got {self.every_ms!r}")
            if not MIN_EVERY_MS <= self.every_ms <= MAX_EVERY_MS:
                raise ConfigurationError(
                    f"every must be between 1 second and 366 days, got {self.every_ms / 1000}s"
                )
            return
        zone(self.tz)
        if not isinstance(self.cron, str) or not 0 < len(self.cron) <= MAX_CRON:
            raise ConfigurationError(f"invalid cron expression {self.cron!r}")
        if len(self.cron.split()) != 5:
            raise ConfigurationError(
                f"invalid cron expression {self.cron!r}: it needs 5 fields "
                "(minute hour day-of-month month day-of-week)"
            )
        try:
            next(CronSim(self.cron, datetime.now(UTC)))
        except (CronSimError, StopIteration) as exc:
            raise ConfigurationError(f"invalid cron expression {self.cron!r}: {exc}") from None

    @classmethod
    def of(
        cls, cron: str | None = None, every: timedelta | float | None = None, tz: str | None = None
    ) -> Timing:
        """From the public arguments: `every` as a timedelta or seconds."""
        every_ms = None
        if every is not None:
            seconds = every.total_seconds() if isinstance(every, timedelta) else every
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise ConfigurationError(f"every must be a timedelta or seconds, got {every!r}")
            if not seconds > 0:
                raise ConfigurationError(f"every must be > 0, got {seconds!r}")
            every_ms = round(seconds * 1000)
        return cls(cron, tz or "UTC", every_ms)

    def next_after(self, ms: int) -> int:
        """The first tick strictly after `ms`."""
        if self.every_ms is not None:
            return (ms // self.every_ms + 1) * self.every_ms
        return next(self._forward(ms))

    def latest(self, after: int, until: int, limit: int) -> list[int]:
        """The last `limit` ticks in (`after`, `until`], oldest first."""
        if limit <= 0 or until <= after:
            return []
        if self.every_ms is not None:
            last = until // self.every_ms * self.every_ms
            first = max(after // self.every_ms + 1, last // self.every_ms - limit + 1)
            return list(range(first * self.every_ms, last + 1, self.every_ms))
        found: list[int] = []
        for tick in self._backward(until):
            if tick <= after or len(found) == limit:
                break
            found.append(tick)
        return found[::-1]

    def describe(self) -> str:
        """The definition as text: `cron 30 2 * * * (Europe/Paris)` or `every 60s`."""
        if self.every_ms is not None:
            return f"every {self.every_ms / 1000:g}s"
        return f"cron {self.cron} ({self.tz})"

    def _forward(self, ms: int) -> Iterator[int]:
        start = datetime.fromtimestamp(ms // 1000, tz=zone(self.tz))
        return (_millis(tick) for tick in CronSim(str(self.cron), start))

    def _backward(self, ms: int) -> Iterator[int]:
        """Ticks at or before `ms`, newest first (cronsim's reverse starts strictly before
        its second, and ticks fall on whole seconds)."""
        start = datetime.fromtimestamp(ms // 1000 + 1, tz=zone(self.tz))
        return (_millis(tick) for tick in CronSim(str(self.cron), start, reverse=True))


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ConfigurationError if unknown."""
    if not isinstance(name, str) or not name or len(name) > 64:
        raise ConfigurationError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"unknown time zone {name!r} (use an IANA name)") from None


def _millis(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)
