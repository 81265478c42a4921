"""`python -m benchmarks.recovery`: how long a killed worker's task waits to run again.

Three `conveyor worker` processes (concurrency 1) share one Redis. Each round enqueues a
task that blocks until released, SIGKILLs the worker that started it, and times the
gap from the kill to the task's start in another worker: what the reaper gives instead
of the lease (30 s by default), which it must not shorten. A control round SIGSTOPs the
holder for several of the reaper's absence windows instead; the task must not start
anywhere else (a stalled worker keeps its lease). Wall-clock times from one machine.

python -m benchmarks.recovery                 # 15 kills, 3 stops
python -m benchmarks.recovery --kills 40 --json recovery.json
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click
import redis

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from conveyor.tools.embedded import RedisServer
from conveyor.worker.reaper import ABSENCE, RESTART_GRACE

#: The app the worker processes run (this module's `app`), and its Redis key prefix.
APP = "benchmarks.recovery:app"
PREFIX = "recovery"
LEASE = 30.0
#: How long a stopped worker stays stopped: many absence windows.
STOP_FOR = 8 * ABSENCE

app = Conveyor(prefix=PREFIX)


def _starts_key(round_: int) -> str:
    return f"{PREFIX}:bench:starts:{round_}"


def _release_key(round_: int) -> str:
    return f"{PREFIX}:bench:release:{round_}"


@app.task(name="hold", max_retries=0)
def hold(round_: int) -> None:
    """Note this start (pid, wall time), then block until the round is released."""
    client = redis.Redis.from_url(os.environ["CONVEYOR_REDIS_URL"])
    client.rpush(_starts_key(round_), json.dumps([os.getpid(), time.time()]))
    while not client.exists(_release_key(round_)):
        time.sleep(0.005)
    client.close()


class Fleet:
    """The worker processes, replaced as they are killed."""

    def __init__(self, url: str, log_dir: Path, size: int = 3) -> None:
        self.url = url
        self.log_dir = log_dir
        self.processes = {p.pid: p for p in (self._start() for _ in range(size))}

    def _start(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update(CONVEYOR_REDIS_URL=self.url, CONVEYOR_PREFIX=PREFIX)
        root = Path(__file__).resolve().parents[1]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "conveyor", "worker", APP, "--concurrency", "1",
                   "--lease-timeout", str(LEASE), "--metrics-port", "0"]  # fmt: skip
        log = (self.log_dir / f"worker-{time.monotonic_ns()}.log").open("wb")
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, pid: int) -> None:
        """SIGKILL one worker, reap it, and start its replacement."""
        process = self.processes.pop(pid)
        process.kill()
        process.wait()
        replacement = self._start()
        self.processes[replacement.pid] = replacement

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait()


def _wait(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        time.sleep(0.002)


def _starts(client: redis.Redis, round_: int) -> list[tuple[int, float]]:
    return [tuple(json.loads(raw)) for raw in client.lrange(_starts_key(round_), 0, -1)]


def _registered(count: int) -> bool:
    return len(app.inspector.workers()) >= count


def _reaper_pid(client: redis.Redis) -> int | None:
    """The pid of the worker holding the reaper's role, if any."""
    role = client.get(GlobalKeys(PREFIX).reaper)
    pids = {str(w["id"]): int(w["pid"]) for w in app.inspector.workers()}
    return pids.get(role.decode()) if isinstance(role, bytes) else None


def kill_round(client: redis.Redis, fleet: Fleet, round_: int) -> tuple[float, bool]:
    """Seconds from SIGKILL of the task's worker to the task's start in another, and
    whether the killed worker was the reaper (its role must lapse first)."""
    app.enqueue("hold", round_)
    _wait(lambda: _starts(client, round_), 30, "the first start")
    [(holder, _)] = _starts(client, round_)
    was_reaper = _reaper_pid(client) == holder
    killed_at = time.time()
    fleet.kill(holder)
    _wait(lambda: len(_starts(client, round_)) == 2, LEASE, "the task to run again")
    (_, started_again) = _starts(client, round_)[1]
    client.set(_release_key(round_), 1)
    return started_again - killed_at, was_reaper


def stop_round(client: redis.Redis, fleet: Fleet, round_: int) -> int:
    """Runs the task got elsewhere while its worker was stopped for STOP_FOR seconds."""
    app.enqueue("hold", round_)
    _wait(lambda: _starts(client, round_), 30, "the first start")
    [(holder, _)] = _starts(client, round_)
    os.kill(holder, signal.SIGSTOP)
    time.sleep(STOP_FOR)
    os.kill(holder, signal.SIGCONT)
    client.set(_release_key(round_), 1)
    return len(_starts(client, round_)) - 1


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--kills", default=15, show_default=True, type=click.IntRange(min=1))
@click.option("--stops", default=3, show_default=True, type=click.IntRange(min=0))
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the figures.")
def main(kills: int, stops: int, json_path: Path | None) -> None:
    """Time SIGKILL-to-rerun over many kills, and check stopped workers keep their task."""
    with tempfile.TemporaryDirectory(prefix="conveyor-recovery-") as tmp, RedisServer() as server:
        app.settings = app.settings.replace(redis_url=server.url)
        client = redis.Redis.from_url(server.url)
        fleet = Fleet(server.url, Path(tmp))
        try:
            _wait(lambda: _registered(3), 60, "three workers")
            # the reaper trusts nothing in a Redis younger than its restart grace
            _wait(lambda: client.info("server")["uptime_in_seconds"] > RESTART_GRACE,
                  RESTART_GRACE + 5, "the restart grace")  # fmt: skip
            rounds = []
            for round_ in range(kills):
                _wait(lambda: _registered(3), 60, "the replacement worker")
                gap, was_reaper = kill_round(client, fleet, round_)
                rounds.append((gap, was_reaper))
                whose = " (it was the reaper)" if was_reaper else ""
                print(f"kill {round_ + 1}/{kills}{whose}: ran again after {gap:.2f}s", flush=True)
            takeovers = [stop_round(client, fleet, kills + i) for i in range(stops)]
        finally:
            fleet.stop()
            client.close()
    gaps = [gap for gap, _ in rounds]
    of_reaper = [gap for gap, was_reaper in rounds if was_reaper]
    figures = {
        "kills": kills,
        "median_s": statistics.median(gaps),
        "p95_s": statistics.quantiles(gaps, n=20, method="inclusive")[-1] if kills > 1 else gaps[0],
        "max_s": max(gaps),
        "kills_of_the_reaper": len(of_reaper),
        "median_when_the_reaper_died_s": statistics.median(of_reaper) if of_reaper else None,
        "lease_s": LEASE,
        "stops": stops,
        "stop_seconds": STOP_FOR,
        "takeovers_of_stopped_workers": sum(takeovers),
    }
    print(
        f"SIGKILL to rerun over {kills} kills: median {figures['median_s']:.2f}s, "
        f"p95 {figures['p95_s']:.2f}s, max {figures['max_s']:.2f}s (lease {LEASE:.0f}s; "
        f"{len(of_reaper)} kills of the reaper itself); "
        f"{stops} workers stopped {STOP_FOR:.1f}s each: "
        f"{figures['takeovers_of_stopped_workers']} takeovers"
    )
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
