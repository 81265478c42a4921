"""`conveyor worker --workers N`: supervised processes, summed metrics, restarts, clean stop."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.settings import Settings
from conveyor.tools.embedded import free_port
from tests.support.handlers import read_ledger
from tests.support.processes import WorkerProcess, is_gone, live_children
from tests.support.worker import wait_until_sync

pytestmark = pytest.mark.slow


def scrape(port: int) -> dict[str, float]:
    """Every sample of the exporter, by its full name with labels."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^(conveyor_[^ ]+) ([0-9.e+-]+)$", line)
        if match:
            samples[match[1]] = float(match[2])
    return samples


def test_a_pool_sums_its_processes_and_restarts_the_dead(
    settings: Settings, r: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    app = Conveyor(settings=settings)
    # two runs of `meet` wait for each other: with one task at a time per process, they
    # finish only once both processes hold one, however the OS schedules them
    meets = [app.enqueue("meet", f"meet{i}") for i in range(2)]
    handles = [app.enqueue("record", f"job{i}", seconds=0.05) for i in range(40)]
    pool = WorkerProcess(
        settings, tmp_path, "--workers", "2", "--concurrency", "1",
        "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
        app="tests.support.rendezvous:app",
    )  # fmt: skip
    try:
        wait_until_sync(
            lambda: all(h.status() == TaskState.SUCCEEDED for h in [*meets, *handles]),
            60,
            "all tasks",
        )
        children = psutil.Process(pool.pid).children()
        assert len(children) == 2
        processed = (
            'conveyor_tasks_processed_total{outcome="succeeded",queue="default",task="record"}'
        )
        met = 'conveyor_tasks_processed_total{outcome="succeeded",queue="default",task="meet"}'
        # both processes did work, and the supervisor reports their sum: one meet each
        assert {e["pid"] for e in read_ledger(r, settings.prefix)} == {c.pid for c in children}
        wait_until_sync(lambda: scrape(port).get(met) == 2, 10, "the summed meet counter")
        wait_until_sync(lambda: scrape(port).get(processed) == 40, 10, "the summed counter")
        assert scrape(port)['conveyor_workers{queue="default"}'] == 2

        children[0].kill()  # a worker process dies: the supervisor starts another
        wait_until_sync(
            lambda: len(alive := live_children(pool.pid)) == 2
            and children[0].pid not in {c.pid for c in alive},
            20, "the replacement process",
        )  # fmt: skip
        more = [app.enqueue("record", f"more{i}", seconds=0.01) for i in range(10)]
        wait_until_sync(lambda: all(h.status() == TaskState.SUCCEEDED for h in more), 30, "more")
        wait_until_sync(
            lambda: scrape(port).get(processed) == 50, 10, "the counter after a restart"
        )

        pool.signal(signal.SIGTERM)
        assert pool.wait(20) == 0, pool.log()
    finally:
        pool.stop()
    assert all(is_gone(c) for c in children[1:])
