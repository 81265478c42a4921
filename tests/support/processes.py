"""Worker subprocesses, as users run them: `python -m conveyor worker tests.support.tasks:app`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from conveyor.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that points a worker subprocess at the test's Redis and prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(
        CONVEYOR_REDIS_URL=settings.redis_url,
        CONVEYOR_PREFIX=settings.prefix,
        CONVEYOR_LEASE_TIMEOUT=str(settings.lease_timeout),
        CONVEYOR_METRICS_PORT="0",
        CONVEYOR_RETRY_BACKOFF_BASE=str(settings.retry_backoff_base),
        CONVEYOR_RETRY_BACKOFF_CAP=str(settings.retry_backoff_cap),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def is_gone(process: psutil.Process) -> bool:
    """Whether `process` has ended, as a zombie or reaped. A process can be reaped between
    two looks at it: that counts as gone, not as an error."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def live_children(pid: int) -> list[psutil.Process]:
    """The children of `pid` that have not ended."""
    return [child for child in psutil.Process(pid).children() if not is_gone(child)]


#: The app the worker subprocesses run unless a test names another.
TEST_APP = "tests.support.tasks:app"


class WorkerProcess:
    """One `conveyor worker` subprocess; its output goes to a log file for post-mortems."""

    def __init__(
        self, settings: Settings, log_dir: Path, *args: str, app: str = TEST_APP, **env: str
    ) -> None:
        self.log_path = log_dir / f"worker-{len(list(log_dir.glob('worker-*.log')))}.log"
        command = [sys.executable, "-m", "conveyor", "worker", app, *args]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                env=worker_env(settings, **env),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        """Send `signum` to the worker."""
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the exit code."""
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Make sure the process is gone (SIGKILL if needed)."""
        if self.alive():
            self.process.kill()
        self.process.wait(10)

    def log(self) -> str:
        """What the worker printed."""
        return self.log_path.read_text(errors="replace")
