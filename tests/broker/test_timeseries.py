"""timeseries.py: latency bins and percentiles, a worker's in-memory tally, the commands
that add it to both resolutions of buckets, the buckets of each window (pure); and, on a
real Redis, a StatsWriter's flush read back by the Inspector's history as rates and
percentiles, settled buckets kept in the caller's cache and the current one re-read."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.browse import SETTLED_AFTER, PointCache
from conveyor.broker.keys import GlobalKeys
from conveyor.broker.timeseries import (
    ALL,
    BINS,
    COARSE,
    FINE,
    Point,
    Resolution,
    Tally,
    bin_of,
    buckets,
    fields_of,
    flush_calls,
    percentile,
    point,
)
from conveyor.worker.stats import StatsWriter
from tests.broker.seed import redis_ms

LAST_BIN = len(BINS)  # the bin above the highest bound


@pytest.mark.parametrize(
    ("seconds", "which"),
    [
        (0.0, 0),
        (0.001, 0),  # a bound belongs to the bin it closes
        (0.0011, 1),
        (0.0025, 1),
        (0.003, 2),
        (1, 9),
        (1.5, 10),
        (600, LAST_BIN - 1),
        (600.5, LAST_BIN),
        (1e9, LAST_BIN),
    ],
)
def test_a_latency_falls_in_the_bin_its_bounds_hold(seconds: float, which: int) -> None:
    assert bin_of(seconds) == which


def histogram(**counts: int) -> list[int]:
    """A histogram over BINS with counts by bin, written `b<index>=count`."""
    bins = [0] * (LAST_BIN + 1)
    for name, count in counts.items():
        bins[int(name.removeprefix("b"))] = count
    return bins


@pytest.mark.parametrize(
    ("bins", "q", "expected"),
    [
        (histogram(b1=4), 0.5, 0.001 + 0.0015 * 0.5),  # halfway through its only bin
        (histogram(b1=4), 1.0, 0.0025),  # the top of it
        (histogram(b0=2, b2=2), 0.5, 0.001),  # the lowest bin starts at 0
        (histogram(b0=2, b2=2), 0.95, 0.0025 + 0.0025 * 1.8 / 2),
        (histogram(b0=1, b17=3), 0.5, 300 + 300 * 1 / 3),
        (histogram(b5=1, b18=9), 0.95, BINS[-1]),  # the open top bin reads as its floor
        (histogram(b18=3), 0.5, BINS[-1]),
    ],
)
def test_a_percentile_is_interpolated_inside_its_bin(
    bins: list[int], q: float, expected: float
) -> None:
    assert percentile(bins, q) == pytest.approx(expected)


def test_an_empty_histogram_has_no_percentile() -> None:
    assert percentile(histogram(), 0.5) is None
    assert percentile([], 0.95) is None


def test_a_tally_counts_by_bucket_and_starts_afresh_when_taken() -> None:
    tally = Tally()
    tally.outcome(1005.0, "mail", "send", "succeeded")
    tally.outcome(1009.9, "mail", "send", "succeeded")
    tally.outcome(1010.0, "mail", "send", "retried")  # the next 10 s bucket
    tally.latency(1001.0, "mail", "run", 0.003)
    assert tally.take() == {
        1000: Counter({
            "mail:send:succeeded": 2, f"mail:{ALL}:succeeded": 2, f"{ALL}:{ALL}:succeeded": 2,
            "mail:run:2": 1, f"{ALL}:run:2": 1,
        }),
        1010: Counter({
            "mail:send:retried": 1, f"mail:{ALL}:retried": 1, f"{ALL}:{ALL}:retried": 1,
        }),
    }  # fmt: skip
    assert tally.take() == {}


def test_a_tally_given_back_merges_with_what_was_counted_since() -> None:
    tally = Tally()
    tally.outcome(1000.0, "q", "t", "failed")
    taken = tally.take()
    tally.outcome(1002.0, "q", "t", "failed")
    tally.outcome(1030.0, "q", "t", "dead")
    tally.give_back(taken)
    merged = tally.take()
    assert merged[1000]["q:t:failed"] == 2
    assert merged[1030]["q:t:dead"] == 1
    assert sorted(merged) == [1000, 1030]


def test_a_flush_adds_to_both_resolutions_each_with_its_expiry() -> None:
    keys = GlobalKeys("p")
    # two 10 s buckets of the same minute, and one of the next
    taken = {
        6000: Counter({"q:t:succeeded": 2}),
        6010: Counter({"q:t:succeeded": 1, "q:run:3": 1}),
        6060: Counter({"q:t:dead": 1}),
    }
    calls = [call.args for call in flush_calls(keys, taken)]

    def fine(bucket: int) -> str:
        return keys.stats(10, bucket)

    def coarse(bucket: int) -> str:
        return keys.stats(60, bucket)

    assert sorted(calls, key=repr) == sorted(
        [
            ("HINCRBY", fine(6000), "q:t:succeeded", 2),
            ("EXPIREAT", fine(6000), 6000 + 10 + FINE.keep),
            ("HINCRBY", fine(6010), "q:t:succeeded", 1),
            ("HINCRBY", fine(6010), "q:run:3", 1),
            ("EXPIREAT", fine(6010), 6010 + 10 + FINE.keep),
            ("HINCRBY", fine(6060), "q:t:dead", 1),
            ("EXPIREAT", fine(6060), 6060 + 10 + FINE.keep),
            ("HINCRBY", coarse(6000), "q:t:succeeded", 3),  # the minute sums its buckets
            ("HINCRBY", coarse(6000), "q:run:3", 1),
            ("EXPIREAT", coarse(6000), 6000 + 60 + COARSE.keep),
            ("HINCRBY", coarse(6060), "q:t:dead", 1),
            ("EXPIREAT", coarse(6060), 6060 + 60 + COARSE.keep),
        ],
        key=repr,
    )
    assert flush_calls(keys, {}) == []


@pytest.mark.parametrize(
    ("window", "resolution", "count"),
    [("15m", FINE, 90), ("1h", FINE, 360), ("24h", COARSE, 1440)],
)
def test_a_window_ends_with_the_bucket_holding_now(
    window: str, resolution: Resolution, count: int
) -> None:
    now = 1_700_000_123.4
    got, starts = buckets(window, now)
    assert got == resolution
    step = got.step
    assert len(starts) == count
    assert starts[-1] <= now < starts[-1] + step
    assert starts[-1] % step == 0
    assert starts == [starts[0] + step * i for i in range(count)]


def test_an_unknown_window_is_refused() -> None:
    with pytest.raises(KeyError):
        buckets("7d", 0.0)


def test_a_point_turns_counts_into_rates_over_the_time_elapsed() -> None:
    values: list[bytes | None] = [b"20", None, b"5", b"1"]  # succeeded, failed, retried, dead
    run = [b"4" if i == 1 else None for i in range(LAST_BIN + 1)]
    wait: list[bytes | None] = [None] * (LAST_BIN + 1)
    assert len(values + run + wait) == len(fields_of(None))
    assert point(1000, 10.0, values + run + wait) == Point(
        1_000_000, 2.0, 0.0, 0.5, 0.1, 0.00175, 0.001 + 0.0015 * 0.95, None, None
    )


async def test_a_flush_is_read_back_by_the_history_as_rates_and_percentiles(
    aapp: Conveyor,
) -> None:
    writer = StatsWriter(aapp.async_broker())
    past = time.time() - 60  # a bucket over, so its rate is over its full 10 s
    for outcome, count in (("succeeded", 6), ("failed", 2), ("retried", 1), ("dead", 1)):
        for _ in range(count):
            writer.tally.outcome(past, "mail", "send", outcome)
    for _ in range(3):
        writer.tally.latency(past, "mail", "run", 0.003)
    writer.tally.latency(past, "mail", "wait", 0.2)
    writer.tally.outcome(past, "other", "task", "succeeded")
    assert await writer.flush() == 1.0
    assert writer.tally.take() == {}  # all written
    inspector = aapp.async_inspector()
    step, points = await inspector.history("15m", "mail")
    assert step == 10
    written = FINE.bucket(past) * 1000
    [mail] = [p for p in points if p.t == written]
    assert mail == Point(
        written, 0.6, 0.2, 0.1, 0.1,
        0.0025 + 0.0025 * 0.5, 0.0025 + 0.0025 * 0.95, 0.1 + 0.15 * 0.5, 0.1 + 0.15 * 0.95,
    )  # fmt: skip
    assert all(p.succeeded == 0 for p in points if p.t != written)
    _, every_queue = await inspector.history("15m")
    assert [p.succeeded for p in every_queue if p.t == written] == [pytest.approx(0.7)]
    _, by_minute = await inspector.history("24h")
    [minute] = [p for p in by_minute if p.t == COARSE.bucket(past) * 1000]
    assert minute.succeeded == pytest.approx(7 / 60)


async def test_the_writer_counts_now_and_the_current_bucket_is_read_as_it_grows(
    aapp: Conveyor,
) -> None:
    writer = StatsWriter(aapp.async_broker())
    writer.outcome("mail", "send", "succeeded")
    writer.latency("mail", "run", 0.5)
    await writer.flush()
    _, points = await aapp.async_inspector().history("15m", "mail")
    # the last bucket, or the one before if the flush straddled a bucket's end
    assert sum(p.succeeded > 0 for p in points[-2:]) == 1
    assert [p.run_p50 for p in points[-2:] if p.run_p50 is not None] == [0.25 + 0.25 * 0.5]


def test_the_cache_keeps_settled_buckets_and_the_current_one_is_read_again(
    app: Conveyor, r: redis.Redis
) -> None:
    keys = GlobalKeys(app.settings.prefix)
    now = redis_ms(r) / 1000
    settled, current = FINE.bucket(now - 60), FINE.bucket(now)
    counts = f"{ALL}:{ALL}:succeeded"
    for bucket in (settled, current):
        r.hincrby(keys.stats(10, bucket), counts, 10)
    cache: PointCache = {}
    _, first = app.inspector.history("15m", cache=cache)
    assert (10, settled, "") in cache
    assert (10, current, "") not in cache
    assert all(start + 10 + SETTLED_AFTER < now for _, start, _ in cache)
    # counts arriving later: the settled bucket is not read again, the current one is
    for bucket in (settled, current):
        r.hincrby(keys.stats(10, bucket), counts, 10)
    _, second = app.inspector.history("15m", cache=cache)
    by_start = {p.t // 1000: p for p in second}
    assert by_start[settled].succeeded == 1.0  # 10 over 10 s, as cached
    assert by_start[current].succeeded > {p.t // 1000: p for p in first}[current].succeeded
    # without the cache, the settled bucket reads what Redis holds
    _, fresh = app.inspector.history("15m")
    assert {p.t // 1000: p for p in fresh}[settled].succeeded == 2.0
