"""The history behind the dashboard's charts: outcome counts and latency histograms of all
workers in time buckets kept in Redis, so they sum every worker and outlive any restart.

Each worker tallies in memory and adds its tally to the buckets about once a second (one
pipeline of HINCRBY), so the hot path only increments a dict. Two resolutions: 10-second
buckets kept an hour, 1-minute buckets kept a day. A bucket is a hash with fields
`<queue>:<task>:<outcome>`, `<queue>:run:<bin>` and `<queue>:wait:<bin>`, where the queue
or the task may be `*`, the sum of all (queue and task names cannot hold `*` or `:`).
Buckets are stamped with the worker's clock: a skewed clock shifts its counts, no more.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from conveyor.broker.keys import GlobalKeys
from conveyor.broker.scripts import Call

#: Attempt outcomes the charts show.
OUTCOMES = ("succeeded", "failed", "retried", "dead")
#: Upper bounds (seconds) of the latency bins; a last bin holds everything above.
BINS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
        60, 120, 300, 600)  # fmt: skip
ALL = "*"


@dataclass(frozen=True, slots=True)
class Resolution:
    """Buckets `step` seconds wide, kept `keep` seconds after they end."""

    step: int
    keep: int

    def bucket(self, at: float) -> int:
        """Start (epoch seconds) of the bucket holding the time `at`."""
        return int(at // self.step) * self.step


FINE = Resolution(10, 3600 + 600)
COARSE = Resolution(60, 24 * 3600 + 3600)
RESOLUTIONS = (FINE, COARSE)
#: The windows the dashboard shows: name -> (resolution, number of buckets).
WINDOWS = {"15m": (FINE, 90), "1h": (FINE, 360), "24h": (COARSE, 1440)}


def bin_of(seconds: float) -> int:
    """The latency bin of a duration."""
    return bisect.bisect_left(BINS, seconds)


class Tally:
    """What one worker counted since its last flush, by 10-second bucket."""

    def __init__(self) -> None:
        self.buckets: dict[int, Counter[str]] = {}

    def _fields(self, at: float) -> Counter[str]:
        bucket = FINE.bucket(at)
        fields = self.buckets.get(bucket)
        if fields is None:
            fields = self.buckets[bucket] = Counter()
        return fields

    def outcome(self, at: float, queue: str, task: str, outcome: str) -> None:
        """One attempt ended with `outcome`."""
        fields = self._fields(at)
        fields[f"{queue}:{task}:{outcome}"] += 1
        fields[f"{queue}:{ALL}:{outcome}"] += 1
        fields[f"{ALL}:{ALL}:{outcome}"] += 1

    def latency(self, at: float, queue: str, kind: str, seconds: float) -> None:
        """One `run` or `wait` latency."""
        fields = self._fields(at)
        which = bin_of(seconds)
        fields[f"{queue}:{kind}:{which}"] += 1
        fields[f"{ALL}:{kind}:{which}"] += 1

    def take(self) -> dict[int, Counter[str]]:
        """Everything counted, and start afresh."""
        taken, self.buckets = self.buckets, {}
        return taken

    def give_back(self, taken: Mapping[int, Counter[str]]) -> None:
        """Merge a tally that could not be written, to try again with the next."""
        for bucket, fields in taken.items():
            self._fields(bucket).update(fields)


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket of a chart: rates per second and latency percentiles (None: no data)."""

    t: int  # start, epoch ms
    succeeded: float
    failed: float
    retried: float
    dead: float
    run_p50: float | None
    run_p95: float | None
    wait_p50: float | None
    wait_p95: float | None

    def to_json(self) -> dict[str, float | int | None]:
        """A JSON-ready dict."""
        return {name: getattr(self, name) for name in self.__slots__}


def fields_of(queue: str | None) -> list[str]:
    """The fields a chart of `queue` (None: every queue) reads from each bucket."""
    q = queue or ALL
    counts = [f"{q}:{ALL}:{outcome}" for outcome in OUTCOMES]
    histograms = [f"{q}:{kind}:{i}" for kind in ("run", "wait") for i in range(len(BINS) + 1)]
    return counts + histograms


def point(bucket: int, seconds: float, values: Sequence[bytes | None]) -> Point:
    """A chart point from the HMGET of `fields_of(...)` over a bucket `seconds` long so far."""
    numbers = [int(v) if v else 0 for v in values]
    n = len(OUTCOMES)
    succeeded, failed, retried, dead = (count / seconds for count in numbers[:n])
    width = len(BINS) + 1
    run, wait = numbers[n : n + width], numbers[n + width :]
    return Point(
        bucket * 1000, succeeded, failed, retried, dead,
        percentile(run, 0.5), percentile(run, 0.95), percentile(wait, 0.5), percentile(wait, 0.95),
    )  # fmt: skip


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The q-quantile of a histogram over BINS, interpolated linearly inside its bin."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(histogram):
        if count and seen + count >= rank:
            low = BINS[i - 1] if i > 0 else 0.0
            high = BINS[i] if i < len(BINS) else BINS[-1]
            return low + (high - low) * (rank - seen) / count
        seen += count
    return BINS[-1]


#: Seconds by which the workers' writes trail the clock (they write about once a second):
#: a window ends with the bucket holding `now - WRITE_LAG`, so its last point is never a
#: bucket just begun, nor counts the second not written yet.
WRITE_LAG = 3.0


def buckets(window: str, now: float) -> tuple[Resolution, list[int]]:
    """The resolution and bucket starts of a window ending with the bucket holding
    `now - WRITE_LAG`."""
    resolution, count = WINDOWS[window]
    last = resolution.bucket(now - WRITE_LAG)
    return resolution, [last - resolution.step * i for i in range(count - 1, -1, -1)]


def flush_calls(keys: GlobalKeys, taken: Mapping[int, Counter[str]]) -> list[Call]:
    """The commands adding a tally to both resolutions' buckets, each with its expiry."""
    coarse: dict[int, Counter[str]] = {}
    for bucket, fields in taken.items():
        coarse.setdefault(COARSE.bucket(bucket), Counter()).update(fields)
    calls = []
    for resolution, grouped in ((FINE, taken.items()), (COARSE, coarse.items())):
        for bucket, fields in grouped:
            key = keys.stats(resolution.step, bucket)
            calls += [Call.command("HINCRBY", key, f, n) for f, n in fields.items()]
            calls.append(Call.command("EXPIREAT", key, bucket + resolution.step + resolution.keep))
    return calls
