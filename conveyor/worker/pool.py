"""`conveyor worker --workers N`: a supervisor of N worker processes.

It starts them first, and imports the app itself (to check it, and to read the settings
its exporter needs) only once they are under way: a second import at the same moment
would slow theirs down on a small machine. It restarts any that dies (a worker lost
mid-task loses nothing: its leases expire and the tasks run elsewhere), forwards
SIGTERM/SIGINT so each drains as a single worker would, and serves their summed metrics
(prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.metrics import Exporter
    from conveyor.settings import Settings

log = logging.getLogger("conveyor.pool")

#: A child that dies sooner than this after its start is restarted only after a pause.
MIN_UPTIME = 5.0
#: How long the children get to start before the supervisor imports the app itself.
SETTLE = 1.0
POLL = 0.2


class WorkerPool:
    """Runs `count` copies of a `conveyor worker` command line until told to stop."""

    def __init__(
        self,
        child_args: Sequence[str],
        count: int,
        queues: Sequence[str],
        metrics_port: int = 0,
        metrics_host: str = "0.0.0.0",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.child_args = list(child_args)
        self.count = count
        self.env = dict(env or {})
        self.queues = list(queues)
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.children: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
        self._signals: list[int] = []

    def run(self, load_settings: Callable[[], Settings]) -> int:
        """Supervise until SIGTERM/SIGINT and every child has exited; 0 if all exited 0.

        `load_settings` imports the app (its errors propagate, once the children are gone).
        """
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        if self._signals:  # told to stop before it started: no child to start and stop
            return 0
        metrics_dir = tempfile.mkdtemp(prefix="conveyor-metrics-")
        env = {
            **os.environ,
            **self.env,
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            "CONVEYOR_METRICS_PORT": "0",
        }
        exporter = None
        try:
            for slot in range(self.count):
                self._start(slot, env)
            self._settle()
            try:
                settings = load_settings()
            except BaseException:
                self._stop_all()
                raise
            exporter = self._exporter(settings, metrics_dir)
            return self._supervise(env, metrics_dir)
        finally:
            if exporter is not None:
                exporter.stop()
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _exporter(self, settings: Settings, metrics_dir: str) -> Exporter | None:
        if not self.metrics_port:
            return None
        from prometheus_client import multiprocess
        from prometheus_client.registry import CollectorRegistry

        from conveyor.metrics import Exporter

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
        from conveyor.worker.selection import QueueSelection

        queues = QueueSelection.parse(self.queues, settings.shards).served
        return Exporter.serve(settings, queues, self.metrics_port, self.metrics_host, registry)

    def _start(self, slot: int, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "conveyor", "worker", *self.child_args]
        process = subprocess.Popen(command, env={**env, "CONVEYOR_POOL_SLOT": str(slot)})
        self.children[slot] = (process, time.monotonic())
        log.info("worker process %d started (pid %d)", slot, process.pid)

    def _settle(self) -> None:
        """Wait SETTLE seconds, or less if a child exits or a stop signal comes."""
        deadline = time.monotonic() + SETTLE
        while time.monotonic() < deadline and not self._signals:
            if any(process.poll() is not None for process, _ in self.children.values()):
                return
            time.sleep(0.05)

    def _stop_all(self) -> None:
        """SIGTERM every child (each drains as a single worker would) and wait for it."""
        for process, _ in self.children.values():
            process.terminate()
        for process, _ in self.children.values():
            process.wait()

    def _supervise(self, env: dict[str, str], metrics_dir: str) -> int:
        forwarded: list[int] = []
        while True:
            while len(forwarded) < len(self._signals):  # each signal reaches every child once
                signum = _to_forward(self._signals, len(forwarded))
                for process, _ in self.children.values():
                    if process.poll() is None:
                        process.send_signal(signum)
                forwarded.append(signum)
            if self._signals and all(p.poll() is not None for p, _ in self.children.values()):
                codes = [p.returncode for p, _ in self.children.values()]
                log.info("all worker processes stopped (exit codes %s)", codes)
                # a child still starting up dies of the forwarded signal itself: it held
                # no task yet, so that is a clean stop too
                clean = {0, *(-s for s in forwarded)}
                return 0 if all(code in clean for code in codes) else 1
            if not self._signals:
                self._restart_dead(env, metrics_dir)
            time.sleep(POLL)

    def _restart_dead(self, env: dict[str, str], metrics_dir: str) -> None:
        for slot, (process, started) in list(self.children.items()):
            if process.poll() is None:
                continue
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(process.pid, metrics_dir)  # type: ignore[no-untyped-call]
            uptime = time.monotonic() - started
            log.error("worker process %d (pid %d) exited with %s after %.1fs; restarting",
                      slot, process.pid, process.returncode, uptime)  # fmt: skip
            if uptime < MIN_UPTIME:
                time.sleep(min(MIN_UPTIME - uptime, 2.0))  # no hot crash loop
            self._start(slot, env)

    def request_stop(self, signum: int) -> None:
        """Take a stop signal that came before `run` installed its handlers."""
        self._on_signal(signum, None)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)
        what = "stopping now" if len(self._signals) > 1 else "draining"
        log.warning("%s received: %s every worker process", signal.Signals(signum).name, what)


def _to_forward(received: list[int], index: int) -> int:
    """The signal that forwards the `index`-th stop signal received.

    After the first, it is the other stop signal than the first: two signals of one number
    sent together merge into one in the child (the kernel keeps one pending signal per
    number), so a quick second Ctrl-C would only drain where it must stop at once.
    """
    first = received[0]
    if index == 0:
        return first
    return signal.SIGINT if first == signal.SIGTERM else signal.SIGTERM
