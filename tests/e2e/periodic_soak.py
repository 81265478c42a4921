"""Exactly once, with real workers: N `conveyor worker` subprocesses fire a 1 s schedule
while one of them is SIGKILLed and replaced every few seconds; then every worker is killed
for a while and restarted under a misfire policy.

The pytest suite runs it short (tests/e2e/test_periodic.py); the long run is
`python -m tests.e2e.periodic_soak --workers 5 --seconds 600` (its own redis-server).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

from conveyor.broker.keys import GlobalKeys
from conveyor.ids import id_millis
from conveyor.model import TaskRecord
from conveyor.settings import Settings
from tests.support.periodic_tasks import ledger_key
from tests.support.processes import WorkerProcess

APP = "tests.support.periodic_tasks:app"
SCHEDULE = "tick"
KEY_PREFIX = f"schedule:{SCHEDULE}:"
DEDUPLICATED = re.compile(rf"schedule {SCHEDULE}: (\d+) tick\(s\) deduplicated")


@dataclass
class Figures:
    """What a run measured: tasks per tick must be exactly one, and no tick missed."""

    workers: int
    seconds: float
    kills: int
    #: distinct ticks enqueued, and tasks enqueued (equal when each tick is one task)
    ticks: int
    tasks: int
    #: ticks enqueued as more than one task (must be 0)
    duplicates: int
    #: ticks missing between the first and the last (0 while a worker lives)
    holes: int
    #: handler runs, and ticks run more than once (a kill mid-run re-delivers a task:
    #: execution is at least once, the enqueue is exactly once)
    runs: int
    reruns: int
    #: how late the latest task was enqueued after its tick (ms, the producer's clock)
    max_late_ms: int
    #: ticks a worker fired that were enqueued already (by another worker at the same
    #: time, or by one killed before its check-and-set), from the workers' debug logs
    deduplicated: int = 0


def tick_tasks(r: redis.Redis, prefix: str) -> dict[int, list[str]]:
    """tick -> ids of the tasks enqueued for it, from the records' idempotency keys."""
    base = GlobalKeys(prefix).queue("default").task_prefix
    found: dict[int, list[str]] = {}
    for key in r.scan_iter(match=f"{base}*", count=1000):
        task_id = key.decode()[len(base) :]
        record = TaskRecord.from_hash(task_id, r.hgetall(key))  # type: ignore[arg-type]
        if record.idempotency_key and record.idempotency_key.startswith(KEY_PREFIX):
            found.setdefault(int(record.idempotency_key[len(KEY_PREFIX) :]), []).append(task_id)
    return found


def holes(ticks: list[int]) -> list[int]:
    """The 1 s ticks missing between the first and the last of `ticks`."""
    if not ticks:
        return []
    present = set(ticks)
    return [t for t in range(min(ticks), max(ticks), 1000) if t not in present]


def measure(r: redis.Redis, prefix: str, workers: int, seconds: float, kills: int) -> Figures:
    """The figures of the keyspace as the run left it."""
    by_tick = tick_tasks(r, prefix)
    ledger: dict[bytes, bytes] = r.hgetall(ledger_key(prefix))  # type: ignore[assignment]
    runs = Counter({k.decode(): int(v) for k, v in ledger.items()})

    late = [id_millis(ids[0]) - tick for tick, ids in by_tick.items()]
    return Figures(
        workers=workers,
        seconds=seconds,
        kills=kills,
        ticks=len(by_tick),
        tasks=sum(len(ids) for ids in by_tick.values()),
        duplicates=sum(len(ids) > 1 for ids in by_tick.values()),
        holes=len(holes(list(by_tick))),
        runs=sum(runs.values()),
        reruns=sum(n > 1 for n in runs.values()),
        max_late_ms=max(late, default=0),
    )


class Fleet:
    """The worker subprocesses of one run."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    def start(self, count: int, misfire: str = "skip") -> None:
        """Start `count` more workers under `misfire`."""
        for _ in range(count):
            self.workers.append(
                WorkerProcess(self.settings, self.log_dir, "--concurrency", "4", app=APP,
                              PERIODIC_MISFIRE=misfire, CONVEYOR_LOG_LEVEL="DEBUG")
            )  # fmt: skip

    def kill_one(self, rng: random.Random, misfire: str = "skip") -> None:
        """SIGKILL a random worker and start its replacement."""
        victim = self.workers.pop(rng.randrange(len(self.workers)))
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        self.start(1, misfire)

    def kill_all(self) -> None:
        """SIGKILL every worker."""
        for worker in self.workers:
            worker.signal(signal.SIGKILL)
        for worker in self.workers:
            worker.wait(10)
        self.workers.clear()

    def deduplicated(self) -> int:
        """Ticks deduplicated, as every worker of the run logged them."""
        count = 0
        for path in self.log_dir.glob("worker-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                match = DEDUPLICATED.search(line)
                count += int(match.group(1)) if match else 0
        return count

    def stop(self) -> None:
        """SIGTERM every worker, then make sure they are gone."""
        for worker in self.workers:
            if worker.alive():
                worker.signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(30)
            finally:
                worker.stop()
        self.workers.clear()


def soak(
    settings: Settings, log_dir: Path, workers: int, seconds: float, kill_every: float
) -> Figures:
    """Run `workers` workers for `seconds`, killing and replacing one every `kill_every`.

    Each kill lands within 120 ms after a tick, when the workers wake to fire it, so some
    land between a worker's enqueue and its check-and-set.
    """
    r = redis.Redis.from_url(settings.redis_url)
    fleet = Fleet(settings, log_dir)
    rng = random.Random(7)
    kills = 0
    try:
        fleet.start(workers)
        end = time.time() + seconds
        while True:
            at = math.ceil(time.time() + kill_every) + rng.uniform(0.0, 0.12)
            if at >= end:
                break
            time.sleep(at - time.time())
            fleet.kill_one(rng)
            kills += 1
        time.sleep(max(0.0, end - time.time()))
    finally:
        fleet.stop()
    figures = measure(r, settings.prefix, workers, seconds, kills)
    figures.deduplicated = fleet.deduplicated()
    return figures


def outage(
    settings: Settings, log_dir: Path, workers: int, pause: float, misfire: str
) -> tuple[list[int], list[int]]:
    """Run workers, kill them all for `pause` seconds, restart them under `misfire`;
    returns (the ticks missing, the ticks enqueued more than once)."""
    r = redis.Redis.from_url(settings.redis_url)
    fleet = Fleet(settings, log_dir)
    try:
        fleet.start(workers)
        _wait(lambda: len(tick_tasks(r, settings.prefix)) >= 3, 30, "three ticks")
        fleet.kill_all()
        time.sleep(pause)
        fleet.start(workers, misfire)
        seen = len(tick_tasks(r, settings.prefix))
        _wait(lambda: len(tick_tasks(r, settings.prefix)) >= seen + 3, 30, "three more ticks")
    finally:
        fleet.stop()
    by_tick = tick_tasks(r, settings.prefix)
    return holes(list(by_tick)), [t for t, ids in by_tick.items() if len(ids) > 1]


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    """The long run; exit code 1 unless each tick was one task and none was missed."""
    from conveyor.tools.embedded import RedisServer
    from tests.chaos.runner import redis_binary

    parser = argparse.ArgumentParser(prog="python -m tests.e2e.periodic_soak")
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        server = RedisServer(redis_binary(), data_dir=Path(folder) / "redis").start()
        try:
            settings = Settings(redis_url=server.url, prefix="soak" + uuid.uuid4().hex[:8])
            figures = soak(settings, Path(folder), args.workers, args.seconds, args.kill_every)
        finally:
            server.stop()
    print(json.dumps(asdict(figures), indent=2))
    if args.json:
        args.json.write_text(json.dumps(asdict(figures)))
    return 0 if figures.duplicates == 0 and figures.holes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
