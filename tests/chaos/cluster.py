"""The processes of a chaos run: worker subprocesses (a fleet the runner keeps at K) and
the `conveyor api` subprocess. Every one is started in its own session, so stopping it
also reaps what it started (process-pool children, the forkserver)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from conveyor.tools.embedded import free_port
from tests.chaos import ledger

ROOT = Path(__file__).resolve().parents[2]
APP_SPEC = "tests.chaos.tasks:app"


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where the processes of one run find Redis, the ledger and their settings."""

    redis_url: str  # through the proxy
    prefix: str
    ledger_url: str
    ledger_key: str
    lease: float
    retention: float
    log_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        """A child's environment: CONVEYOR_* settings of this run and nothing inherited."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "CHAOS_"))}
        env.update(
            CONVEYOR_REDIS_URL=self.redis_url,
            CONVEYOR_PREFIX=self.prefix,
            CONVEYOR_LEASE_TIMEOUT=str(self.lease),
            CONVEYOR_METRICS_PORT="0",
            CONVEYOR_RETRY_BACKOFF_BASE="0.05",
            CONVEYOR_RETRY_BACKOFF_CAP="0.2",
            CONVEYOR_SUCCEEDED_RETENTION=str(self.retention),
            CONVEYOR_FAILED_RETENTION=str(self.retention),
            CONVEYOR_DEAD_RETENTION=str(self.retention),
            PYTHONPATH=str(ROOT),
            **{ledger.LEDGER_URL_ENV: self.ledger_url, ledger.LEDGER_KEY_ENV: self.ledger_key},
            **extra,
        )
        return env


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGCONT (a paused process cannot act on a signal) and SIGTERM, once."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGCONT)
        if process.poll() is None:
            process.terminate()


def _reap(process: subprocess.Popen[bytes], grace: float) -> None:
    """Wait `grace` seconds for an exit, then SIGKILL the whole session; never raises."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # children of the session, too
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


class Launcher(Protocol):
    """Where a worker slot runs (netns.Network: in its own network namespace)."""

    def command(self, index: int, command: list[str]) -> list[str]:
        """`command` as slot `index` must run it."""

    def env(self, index: int) -> dict[str, str]:
        """Variables that differ for slot `index`."""


@dataclass(slots=True)
class WorkerSlot:
    """One of the K workers; `process` is replaced when the runner restarts it."""

    index: int
    process: subprocess.Popen[bytes]
    worker_id: str
    #: Set while the runner expects this worker to exit (a SIGTERM drain, a SIGKILL).
    expected_exit: bool = False


@dataclass(frozen=True, slots=True)
class Life:
    """One worker process: the slot it filled and when it was started (time.monotonic()).
    The workers of a slot after it are its replacements."""

    worker_id: str
    slot: int
    started: float


@dataclass(slots=True)
class Fleet:
    """K `conveyor worker` subprocesses; the runner restarts any that exits."""

    deployment: Deployment
    size: int
    concurrency: int
    shutdown_grace: float
    slots: list[WorkerSlot] = field(default_factory=list)
    #: Every worker id ever started, with its pid.
    pids: dict[str, int] = field(default_factory=dict)
    #: Every worker ever started, in order.
    lives: list[Life] = field(default_factory=list)
    started: int = 0
    launcher: Launcher | None = None

    def start(self) -> None:
        """Start the K workers."""
        self.slots = [self._spawn(i) for i in range(self.size)]

    def _spawn(self, index: int) -> WorkerSlot:
        self.started += 1
        worker_id = f"{self.deployment.prefix}-w{self.started}"
        log = self.deployment.log_dir / f"{worker_id}.log"
        command = [sys.executable, "-m", "conveyor", "worker", APP_SPEC,
                   "--worker-id", worker_id, "--concurrency", str(self.concurrency),
                   "--processes", "1", "--shutdown-grace", str(self.shutdown_grace)]  # fmt: skip
        env = self.deployment.env()
        if self.launcher is not None:
            command = self.launcher.command(index, command)
            env.update(self.launcher.env(index))
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.pids[worker_id] = process.pid
        self.lives.append(Life(worker_id, index, time.monotonic()))
        return WorkerSlot(index, process, worker_id)

    def exited(self) -> list[tuple[WorkerSlot, int]]:
        """Workers that exited since the last call, each restarted; with their exit codes."""
        gone = []
        for slot in list(self.slots):
            code = slot.process.poll()
            if code is not None:
                gone.append((slot, code))
                self.slots[slot.index] = self._spawn(slot.index)
        return gone

    def live(self) -> list[WorkerSlot]:
        """Workers running and not asked to exit (a second SIGTERM would hurry a drain)."""
        return [s for s in self.slots if not s.expected_exit and s.process.poll() is None]

    def resume_all(self) -> None:
        """SIGCONT every worker (none must stay paused past its scenario)."""
        for slot in self.slots:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, signal.SIGCONT)

    def signal(self, slot: WorkerSlot, signum: signal.Signals) -> None:
        """Send `signum` to one worker (not to its children)."""
        if signum in (signal.SIGKILL, signal.SIGTERM):
            slot.expected_exit = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(slot.process.pid, signum)

    def stop(self) -> None:
        """Drain every worker (one SIGTERM: a second would hurry the drain); kill what
        does not stop in time."""
        for slot in self.slots:
            if not slot.expected_exit:
                _terminate(slot.process)
        for slot in self.slots:
            _reap(slot.process, self.shutdown_grace + 5)


class ApiProcess:
    """`python -m conveyor api` on a free loopback port, its Redis through the proxy."""

    def __init__(self, deployment: Deployment) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = deployment.log_dir / "api.log"
        command = [sys.executable, "-m", "conveyor", "api", "--host", "127.0.0.1",
                   "--port", str(self.port)]  # fmt: skip
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, env=deployment.env(), cwd=ROOT, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until /healthz answers (the process is up; Redis may not be)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"conveyor api exited with {self.process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                time.sleep(0.05)
        raise RuntimeError(f"conveyor api did not answer within {timeout}s")

    def stop(self) -> None:
        """Stop the server."""
        _terminate(self.process)
        _reap(self.process, 5)
