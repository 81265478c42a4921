"""A busy queue whose slot migrates between masters while producers and a worker run:
what the resharding test and its soak (`resharding_soak.py`) both run."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.crc import key_slot

from conveyor import Conveyor, TaskContext
from conveyor.producer import TaskHandle
from conveyor.settings import Settings
from tests.support.cluster import LocalCluster
from tests.support.worker import running_worker, wait_until

#: Keys per MIGRATE and the pause between two: a slot of ~400 keys is split ~1 s.
BATCH, PAUSE = 10, 0.02
QUEUE = "busy"


@dataclass
class Outcome:
    """What a run saw: each task id with how many times it ran, enqueues that failed,
    keys moved per migration, worker ids registered at the end, and log lines of trouble."""

    enqueued: list[str] = field(default_factory=list)
    ran: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)
    moved: list[int] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    troubles: list[str] = field(default_factory=list)


class SyncProducer(threading.Thread):
    """Enqueues with the sync producer until told to stop; keeps what it got."""

    def __init__(self, app: Conveyor) -> None:
        super().__init__(name="sync-producer", daemon=True)
        self.app = app
        self.handles: list[TaskHandle] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.handles.append(self.app.enqueue("job", f"s{len(self.handles)}", queue=QUEUE))
            except Exception as exc:  # reported in the outcome
                self.errors.append(repr(exc))
            time.sleep(0.005)


class Troubles(logging.Handler):
    """Log lines saying a component failed, an outage began, or a lease was lost."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.ERROR or "lost Redis" in text or "was lost" in text:
            self.lines.append(text)


async def reshard_under_load(
    cluster: LocalCluster, settings: Settings, migrations: int = 1, load: float = 1.0
) -> Outcome:
    """Load `load` s, then `migrations` times: move the queue's slot to the next master and
    load `load` s more; then wait until every task ran."""
    outcome = Outcome()
    slot = key_slot(f"{settings.prefix}:{{{QUEUE}}}:pending".encode())
    app = Conveyor(settings=settings)

    @app.task(name="job")
    async def job(key: str, ctx: TaskContext) -> None:
        outcome.ran[ctx.task_id] += 1
        await asyncio.sleep(0.002)

    handles: list[TaskHandle] = []
    stop = asyncio.Event()

    async def produce() -> None:
        while not stop.is_set():
            try:
                handles.append(await app.enqueue_async("job", f"a{len(handles)}", queue=QUEUE))
            except Exception as exc:
                outcome.errors.append(repr(exc))
            await asyncio.sleep(0.003)

    troubles = Troubles()
    logging.getLogger("conveyor").addHandler(troubles)
    sync_producer = SyncProducer(Conveyor(settings=settings))
    try:
        async with running_worker(app, QUEUE, concurrency=8):
            producing = asyncio.ensure_future(produce())
            sync_producer.start()
            await asyncio.sleep(load)
            for _ in range(migrations):
                source = cluster.master_of(f"{settings.prefix}:{{{QUEUE}}}:pending")
                masters = sorted(cluster.primaries(), key=lambda n: n.port)
                target = masters[(masters.index(source) + 1) % len(masters)]
                moved = await asyncio.to_thread(cluster.move_slot, slot, target, BATCH, PAUSE)
                outcome.moved.append(moved)
                await asyncio.sleep(load)
            stop.set()
            sync_producer.stop.set()
            await producing
            await asyncio.to_thread(sync_producer.join, 10)
            outcome.enqueued = [h.id for h in [*handles, *sync_producer.handles]]
            await wait_until(_all_ran(app, outcome), 30, "every task to run")
            outcome.workers = [w["id"] for w in await app.async_inspector().workers()]
        outcome.errors += sync_producer.errors
        outcome.troubles = troubles.lines
        return outcome
    finally:
        logging.getLogger("conveyor").removeHandler(troubles)
        stop.set()
        sync_producer.stop.set()
        await app.aclose()
        app.close()
        sync_producer.app.close()


def _all_ran(app: Conveyor, outcome: Outcome) -> Callable[[], Awaitable[bool]]:
    """Every task enqueued ran, and the queue holds none (records may have expired)."""

    async def check() -> bool:
        if not set(outcome.enqueued) <= set(outcome.ran):
            return False
        stats = await app.async_inspector().queue_stats([QUEUE])
        return all((s.pending, s.active, s.scheduled) == (0, 0, 0) for s in stats)

    return check
