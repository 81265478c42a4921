"""The worker: supervises its components and owns the shutdown order."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.cluster import async_transport
from conveyor.broker.inspect import AsyncInspector
from conveyor.broker.keys import worker_connection_name
from conveyor.errors import BrokerUnavailableError
from conveyor.metrics import Exporter
from conveyor.names import validate_worker_id
from conveyor.tools.health import durability_findings
from conveyor.worker import signals
from conveyor.worker.cancels import CancelListener
from conveyor.worker.completer import Completer
from conveyor.worker.executor import Executor
from conveyor.worker.fetcher import Fetcher
from conveyor.worker.heartbeat import Heartbeat
from conveyor.worker.leases import Leases
from conveyor.worker.outage import Outage, redis_location
from conveyor.worker.periodic import Periodic
from conveyor.worker.presence import Presence
from conveyor.worker.reaper import Reaper
from conveyor.worker.recoverer import Recoverer
from conveyor.worker.scheduler import Scheduler
from conveyor.worker.selection import QueueSelection
from conveyor.worker.stats import StatsWriter
from conveyor.worker.workflows import Relauncher

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.worker")


def new_worker_id() -> str:
    """host-pid-random: readable in logs, unique across restarts."""
    host = re.sub(r"[^A-Za-z0-9_.\-]", "_", socket.gethostname())[:100]
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Processes tasks of some queues until stopped.

    Shutdown order: stop claiming (fetcher, scheduler, recoverer, periodic) -> drain running tasks
    for the grace period -> cancel what is left and give it back to pending -> write every
    outcome -> heartbeat last (leases stay renewed until then) -> deregister.

    Args:
        app: the Conveyor app whose tasks this worker runs.
        queues: "a,b" (strict order) or "a:3,b:1" (weighted), or a list.
        concurrency: tasks run at once (default: settings.concurrency).
        threads: threads for sync handlers, at most `concurrency` (default:
            settings.threads, else `concurrency`); claimed tasks wait for a free one.
        processes: child processes for `executor="process"` tasks (default: CPU count).
        handle_signals: install SIGINT/SIGTERM handlers (the CLI does).
        metrics_port: serve Prometheus metrics on this port (None or 0: no exporter).
        metrics_host: the interface the exporter binds.
    """

    def __init__(
        self,
        app: Conveyor,
        queues: str | Sequence[str] = "default",
        *,
        concurrency: int | None = None,
        threads: int | None = None,
        processes: int | None = None,
        worker_id: str | None = None,
        handle_signals: bool = False,
        metrics_port: int | None = None,
        metrics_host: str = "0.0.0.0",
    ) -> None:
        self.app = app
        self.settings = app.settings
        self.queues = QueueSelection.parse(queues, self.settings.shards)
        self.concurrency = concurrency or self.settings.concurrency
        self.threads = min(threads or self.settings.threads or self.concurrency, self.concurrency)
        self.processes = processes or os.cpu_count() or 1
        self.id = validate_worker_id(worker_id) if worker_id else new_worker_id()
        self.handle_signals = handle_signals
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        #: the port its exporter listens on (the next free one if `metrics_port` was taken)
        self.metrics_bound: int | None = None
        # created here, so stop() works even before run() has started (a Worker runs once)
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._started_at = time.time()

    def stop(self, fast: bool = False) -> None:
        """Begin a graceful shutdown; `fast` skips the drain (unfinished tasks are requeued)."""
        self._stopping.set()
        if fast:
            self._hurry.set()

    async def run(self) -> None:
        """Run until `stop()` (or a signal); returns after a clean shutdown."""
        finished = asyncio.Event()
        # every connection carries the worker's id: the reaper looks for them
        transport = async_transport(self.settings, name=worker_connection_name(self.id))
        broker = AsyncBroker(self.settings, transport)
        leases = Leases()
        # one view of Redis for every component: one line when it goes, one when it is back
        outage = Outage(redis_location(self.settings.redis_url))
        completer = Completer(broker, leases, outage=outage)
        stats = StatsWriter(broker)  # it never fails: it keeps what it could not write
        executor = Executor(
            self.app, completer, stats, self.id, self.concurrency, self.processes, self.threads
        )
        uninstall = signals.install(self.stop) if self.handle_signals else None
        exporter = self._start_exporter()
        try:
            await self._preflight(broker, outage)
            names = self.queues.served
            describe = functools.partial(self._describe, executor)
            heartbeat = Heartbeat(
                broker, leases, self.id, describe, outage=outage, on_cancel=executor.cancel
            )
            scheduler = Scheduler(broker, names, outage=outage)
            fetcher = Fetcher(
                broker, executor, leases, self.queues, self.id, outage=outage,
                on_deferred=scheduler.nudge,
            )  # fmt: skip
            guard = functools.partial(self._guard, finished)
            declared = self.app.declared_schedules.values()
            async with asyncio.TaskGroup() as group:
                group.create_task(guard(heartbeat.run(finished)))
                group.create_task(guard(Presence(broker, self.id).run(finished)))
                # cancels are heard until the end: a draining task may be cancelled too
                listener = CancelListener(broker, names, executor.cancel, outage=outage)
                group.create_task(guard(listener.run(finished)))
                writer = group.create_task(guard(completer.run(finished)))
                group.create_task(guard(stats.run(finished)))
                for periodic in (
                    scheduler,
                    Recoverer(
                        broker, names, outage=outage, on_dead=executor.workflows.dead_lettered
                    ),
                    Reaper(
                        broker, self.id, outage=outage, on_dead=executor.workflows.dead_lettered
                    ),
                    Periodic(self.app, broker, [*declared], outage=outage),
                    Relauncher(broker, outage=outage),
                ):
                    group.create_task(guard(periodic.run(self._stopping)))
                fetching = group.create_task(guard(fetcher.run(self._stopping)))
                await self._stopping.wait()
                # claiming has stopped, and Redis forgot the fetcher's wait, before any task
                # goes back to pending: else the claim behind that wait could take it again
                await asyncio.wait({fetching})
                log.info("worker %s stopping: %d tasks running", self.id, len(executor.running))
                grace = 0.0 if self._hurry.is_set() else self.settings.shutdown_grace
                await _drain(executor, grace, self._hurry)
                if not await completer.flush(self.settings.lease_timeout):
                    log.error("could not write every outcome; those tasks will run again")
                    writer.cancel()
                finished.set()
        finally:
            if uninstall:
                uninstall()
            if exporter is not None:
                exporter.stop()
            await broker.close()
        log.info("worker %s stopped", self.id)

    async def _guard(self, finished: asyncio.Event, component: Coroutine[Any, Any, None]) -> None:
        """Run a component; if it fails (a bug), stop every component rather than hang:
        the loops all watch these events, even when a cancellation gets lost."""
        try:
            await component
        except Exception:
            log.critical("a worker component failed; stopping the worker", exc_info=True)
            self.stop(fast=True)
            finished.set()
            raise

    def _start_exporter(self) -> Exporter | None:
        if not self.metrics_port:
            return None
        exporter = Exporter.serve(
            self.settings, self.queues.served, self.metrics_port, self.metrics_host
        )
        self.metrics_bound = exporter.port if exporter is not None else None
        return exporter

    async def _preflight(self, broker: AsyncBroker, outage: Outage) -> None:
        """Check the Redis configuration, and take on the shards of its queues that
        producers made beyond this worker's settings (see QueueSelection.with_leftovers)."""
        started = time.monotonic()
        inspector = AsyncInspector(broker)
        try:
            findings = await durability_findings(inspector)
            registered = await inspector.queue_names()
        except BrokerUnavailableError as exc:  # the components wait for it, with back-off
            outage.failed("worker", exc)
        except Exception as exc:
            log.warning("could not check the Redis configuration: %s", exc)
        else:
            outage.reached(started)
            for level, message in findings:
                log.log(level, "Redis: %s", message)
            declared = self.queues.served
            self.queues = self.queues.with_leftovers(registered)
            if leftovers := sorted(set(self.queues.served) - set(declared)):
                log.warning(
                    "serving shards its settings do not declare: %s (check the `shards` "
                    "setting of producers and workers)", ",".join(leftovers),
                )  # fmt: skip
        log.info(
            "worker %s started: queues=%s concurrency=%d threads=%d lease=%.1fs",
            self.id, ",".join(self.queues.served), self.concurrency, self.threads,
            self.settings.lease_timeout,
        )  # fmt: skip

    def _describe(self, executor: Executor) -> dict[str, object]:
        """What the registry says of this worker, renewed with each heartbeat."""
        return {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(self.queues.served),
            "concurrency": self.concurrency,
            "started_at": self._started_at,
            "heartbeat_at": time.time(),
            "in_flight": len(executor.running),
            "processed": executor.processed,
            # where to scrape this worker (None: no exporter of its own)
            "metrics_port": self.metrics_bound,
        }


async def _drain(executor: Executor, grace: float, hurry: asyncio.Event) -> None:
    """Drain for `grace` seconds, cut short if a second signal asks to hurry."""
    drain = asyncio.ensure_future(executor.drain(grace))
    hurried = asyncio.ensure_future(hurry.wait())
    await asyncio.wait({drain, hurried}, return_when=asyncio.FIRST_COMPLETED)
    if not drain.done():
        drain.cancel()
        await asyncio.wait({drain})
        await executor.drain(0)
    hurried.cancel()
