"""The worker subprocesses of one proof: started, killed (the kill written to the ledger
first) and replaced, and all stopped at the end."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import TracebackType

import redis

from conveyor import Conveyor
from conveyor.settings import Settings
from tests.flow import ledger
from tests.support.processes import WorkerProcess

APP = "tests.flow.tasks:app"
#: Seconds a worker subprocess may take to start and register on a loaded machine.
START_TIMEOUT = 30.0


class Workers:
    """`conveyor worker tests.flow.tasks:app` processes with the same arguments."""

    def __init__(self, settings: Settings, logs: Path, *args: str) -> None:
        self.settings = settings
        self.logs = logs
        self.args = args
        self.app = Conveyor(settings=settings)
        self.client = redis.Redis.from_url(settings.redis_url)
        self.alive: list[WorkerProcess] = []
        self.killed: list[WorkerProcess] = []

    def start(self, count: int = 1, *, wait: bool = True) -> list[WorkerProcess]:
        """Start `count` workers; with `wait`, return once every live one is registered."""
        started = [
            WorkerProcess(self.settings, self.logs, *self.args, app=APP) for _ in range(count)
        ]
        self.alive += started
        if wait:
            self.wait_registered()
        return started

    def wait_registered(self) -> None:
        """Until the registry lists as many workers as are alive (the dead deregistered)."""
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.app.inspector.workers()) < len(self.alive):
            for worker in self.alive:
                assert worker.alive(), f"a worker exited:\n{worker.log()}"
            if time.monotonic() > deadline:
                raise AssertionError(f"workers not registered in {START_TIMEOUT}s")
            time.sleep(0.05)

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL `worker`, its runs ending in the ledger just before."""
        ledger.write_kill(self.client, self.settings.prefix, worker.pid)
        worker.signal(signal.SIGKILL)
        worker.wait(10)
        self.alive.remove(worker)
        self.killed.append(worker)

    def by_pid(self, pid: int) -> WorkerProcess | None:
        """The live worker of process `pid`, if any."""
        return next((w for w in self.alive if w.pid == pid), None)

    def close(self) -> None:
        """Kill every worker still running and close the connections."""
        for worker in self.alive:
            worker.stop()
        self.app.close()
        self.client.close()

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
