"""Proof 2: a rate limit paces starts across worker processes, and idle workers stay idle.

N tasks under a limit of R per second with burst B, on W workers. GCRA lets the first B
start at once and one every 1/R seconds after, so the last starts (N - B) / R after the
first (the issue's "1,000 tasks at 50/s in 20 s": 999 intervals of 20 ms = 19.98 s). The
starts measured are the claims' times (the record's `started_at`, Redis' clock: what the
limit governs) and the handlers' (their ledger start, the machine's monotonic clock).
"""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from conveyor import Conveyor
from conveyor.flow import RATE_SLIP_MS
from conveyor.settings import Settings
from conveyor.worker.scheduler import MAX_SLEEP
from tests.flow import ledger, tasks
from tests.flow.concurrency import wait_succeeded
from tests.flow.workers import Workers

#: Allowed error of the first-to-last start time against (N - B) / R (the issue's ±5 %).
DURATION_TOLERANCE = 0.05
#: Seconds the first deferred starts may come late in a short run: a claim that defers
#: tasks to their reserved starts does not wake the schedulers, which may each be asleep
#: for up to MAX_SLEEP; the starts that come later than RATE_SLIP_MS take new ones at the
#: back, so the whole run ends up to this much later. A long run absorbs it in its ±5 %.
FIRST_PROMOTE_LATENCY = MAX_SLEEP
#: Seconds a loaded machine may add to that (a scheduler's wake-up that comes late).
LOAD_MARGIN = 0.25
#: Seconds the workers are watched idle, before the tasks come, for the idle call rate.
IDLE_WATCH = 2.0


@dataclass(frozen=True, slots=True)
class Size:
    """How much work the proof gets."""

    tasks: int = 200
    rate: int = 50  # per second
    burst: int = 1
    workers: int = 4
    concurrency: int = 50
    timeout: float = 60.0

    @property
    def expected(self) -> float:
        """Seconds from the first start to the last: (N - B) intervals of 1/R."""
        return (self.tasks - self.burst) / self.rate

    @property
    def span_range(self) -> tuple[float, float]:
        """Least and most seconds from the first claim to the last: the expected ±5 %, or
        later by the first promotion's latency and LOAD_MARGIN where that is more (a short
        run; its pacing is checked by the median gap)."""
        error = DURATION_TOLERANCE * self.expected
        late = max(error, FIRST_PROMOTE_LATENCY + LOAD_MARGIN)
        return self.expected - error, self.expected + late

    @property
    def window_bound(self) -> int:
        """Most claims a closed 1 s window may hold: the limit plus the burst (the issue's
        bound), plus the reserved starts that slip into it. A reserved start is honoured up
        to `slip` ms late, so a window holds the starts reserved in the 1000 + slip ms
        before its end: floor(slip / interval) more than the issue's bound (1 at 50/s)."""
        interval = 1000 / self.rate
        slip = max(interval, RATE_SLIP_MS)
        return self.rate + self.burst + int(slip // interval)


@dataclass(slots=True)
class Figures:
    """What the run measured."""

    tasks: int = 0
    claim_span: float = 0.0  # first to last claim (s)
    start_span: float = 0.0  # first to last handler start (s)
    claim_window: int = 0  # most claims in a 1 s window
    start_window: int = 0  # most handler starts in a 1 s window
    min_gap_ms: float = 0.0  # closest two consecutive claims
    median_gap_ms: float = 0.0  # the pacing: one interval
    first_interval: int = 0  # claims within one interval of the first: the burst
    first_gap_ms: float = 0.0  # from the burst to the next claim (one interval reserved)
    runs: int = 0
    not_succeeded: dict[str, int] = field(default_factory=dict)
    run_seconds: float = 0.0  # enqueue to the last end
    calls: dict[str, int] = field(default_factory=dict)  # Redis commands during the run
    idle_calls: dict[str, int] = field(default_factory=dict)  # per IDLE_WATCH, before

    def violations(self, size: Size) -> list[str]:
        """Every way this run broke the proof."""
        found = []
        low, high = size.span_range
        if not low <= self.claim_span <= high:
            found.append(f"claims spanned {self.claim_span:.3f}s, not in {low:.3f}-{high:.3f}s")
        if self.claim_window > size.window_bound:
            found.append(f"{self.claim_window} claims in one second, bound {size.window_bound}")
        interval = 1000 / size.rate
        if abs(self.median_gap_ms - interval) > DURATION_TOLERANCE * interval:
            found.append(f"claims {self.median_gap_ms} ms apart (median), not {interval:.1f}")
        if self.first_interval != size.burst:
            found.append(f"{self.first_interval} claims in the first interval, burst {size.burst}")
        if self.runs != size.tasks or self.not_succeeded:
            found.append(f"{self.runs} runs of {size.tasks}; not succeeded {self.not_succeeded}")
        budget = call_budget(size, self.run_seconds)
        if self.calls.get("evalsha", 0) > budget:
            found.append(f"{self.calls['evalsha']} script calls, budget {budget}")
        return found


def call_budget(size: Size, seconds: float) -> int:
    """The most script calls (EVALSHA) a run of `seconds` may make without polling: per
    task a claim, an ack and a promote, and per worker and second the scheduler's
    promotes (one per interval, as the next reserved start falls due) and a dozen for
    heartbeats, recovery and the reaper. A worker that claimed in a loop while its tasks
    wait for their starts would make thousands per second."""
    per_worker = size.rate + 20
    return 4 * size.tasks + round(size.workers * per_worker * seconds)


def command_calls(r: redis.Redis) -> dict[str, int]:
    """Calls of each Redis command so far (INFO commandstats), by command name."""
    stats = r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Calls made between two readings; "total" sums them."""
    made = {name: n - before.get(name, 0) for name, n in after.items()}
    made = {name: n for name, n in made.items() if n}
    return made | {"total": sum(made.values())}


def run(settings: Settings, logs: Path, size: Size) -> Figures:
    """Run the proof: watch the idle workers, enqueue every task at once, measure."""
    figures = Figures(tasks=size.tasks)
    args = ("--concurrency", str(size.concurrency))
    with Workers(settings, logs, *args) as workers:
        app = tasks.register(Conveyor(settings=settings))
        try:
            workers.start(size.workers)
            r = workers.client
            before = command_calls(r)
            time.sleep(IDLE_WATCH)
            figures.idle_calls = difference(command_calls(r), before)
            began, before = time.monotonic(), command_calls(r)
            paced = app.tasks["flow.paced"]
            rate = f"{size.rate}/s"
            handles = app.enqueue_many(
                paced.message(f"p{i}", rate_limit=rate, rate_limit_burst=size.burst)
                for i in range(size.tasks)
            )
            ids = [h.id for h in handles]
            reader = ledger.Reader(r, settings.prefix)
            wait_ended(reader, len(ids), size.expected + size.timeout)
            figures.not_succeeded = wait_succeeded(app, ids, size.timeout)
            figures.run_seconds = time.monotonic() - began
            figures.calls = difference(command_calls(r), before)
            claims = claim_times(app, ids)
        finally:
            app.close()
        measure(figures, reader, claims, size)
    return figures


def wait_ended(reader: ledger.Reader, count: int, timeout: float) -> None:
    """Until `count` tasks have a run that ended (the ledger is cheap to poll: a records
    poll would add its own commands to those the proof counts)."""
    deadline = time.monotonic() + timeout
    while len(reader.ended) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(reader.ended)} of {count} tasks ended in {timeout:.0f}s")
        time.sleep(0.05)
        reader.read()


def claim_times(app: Conveyor, ids: list[str]) -> list[float]:
    """When each task was claimed (Redis' clock, ms), of those with a record."""
    times = []
    for start in range(0, len(ids), 1000):
        for record in app.inspector.records(ids[start : start + 1000]):
            if record is not None and record.started_at is not None:
                times.append(record.started_at.timestamp())
    return times


def measure(figures: Figures, reader: ledger.Reader, claims: list[float], size: Size) -> None:
    """Spans, windows and gaps of the claims and of the handlers' starts."""
    reader.read()
    starts = sorted(e.mono for e in reader.entries if e.event == "start")
    claims = sorted(claims)
    figures.runs = len(starts)
    figures.claim_span = claims[-1] - claims[0] if claims else 0.0
    figures.start_span = starts[-1] - starts[0] if starts else 0.0
    # the claims in whole ms, as Redis gave them: no rounding of floats at an edge
    ms = [round(c * 1000) for c in claims]
    figures.claim_window = ledger.max_in_window(ms, 1000)
    figures.start_window = ledger.max_in_window(starts, 1.0)
    # the burst starts at once, the next task's reserved start is one interval later
    figures.first_interval = sum(m < ms[0] + 1000 / size.rate for m in ms) if ms else 0
    if len(ms) > size.burst:
        figures.first_gap_ms = ms[size.burst] - ms[size.burst - 1]
    gaps = [b - a for a, b in itertools.pairwise(ms)]
    figures.min_gap_ms = min(gaps, default=0)
    figures.median_gap_ms = statistics.median(gaps) if gaps else 0.0
