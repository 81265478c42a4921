"""The protocol every benchmark driver follows, shared by Conveyor's and the peers' drivers.

A driver is one file, `<system>_driver.py`, run by its system's own interpreter (each peer
lives in its own virtualenv), so this module needs nothing but the standard library and
redis-py. The driver file is also the task module its workers import: it defines two
handlers, `noop` (INCRs `COUNTER_KEY`: the completion signal every system shares) and
`latency` (RPUSHes the enqueue-to-start delay in ms to `LATENCY_KEY`).

Usage: `python <system>_driver.py '<json spec>'`, which prints one JSON line of results.
The spec's keys: scenario (describe | enqueue | enqueue_async | bulk | e2e | latency),
redis_url (exported as BENCH_REDIS_URL for the workers), counter_url (where handlers
count, exported as BENCH_COUNTER_URL; defaults to redis_url), n, processes,
concurrency (async enqueue), interval (latency), idle_seconds (latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

COUNTER_KEY = "bench:done"
LATENCY_KEY = "bench:latency"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def payload(i: int) -> dict[str, Any]:
    """The small task payload every system sends."""
    return {"i": i, "email": "user@example.com"}


def redis_url() -> str:
    """The Redis under test: worker processes get it from the environment."""
    return os.environ["BENCH_REDIS_URL"]


def counter_url() -> str:
    """Where handlers count: the worker processes get it from the environment."""
    return os.environ["BENCH_COUNTER_URL"]


_counter: redis.Redis | None = None
_async_counter: Any = None
_counter_lock = threading.Lock()


def counter_client() -> redis.Redis:
    """The sync handlers' client to `counter_url()`: one per process, made once (threads)."""
    global _counter
    if _counter is None:
        with _counter_lock:
            if _counter is None:
                _counter = redis.Redis.from_url(counter_url())
    return _counter


def async_counter_client(max_connections: int | None = None) -> Any:
    """The async handlers' `redis.asyncio` client: one per worker process (one event loop).

    `max_connections` bounds its pool (redis-py's default, 100 since 8.0, else unbounded).
    """
    global _async_counter
    if _async_counter is None:
        import redis.asyncio

        pool = redis.asyncio.ConnectionPool.from_url(
            counter_url(), **({"max_connections": max_connections} if max_connections else {})
        )
        _async_counter = redis.asyncio.Redis(connection_pool=pool)
    return _async_counter


def record_latency(client: redis.Redis, task_payload: dict[str, Any]) -> None:
    """Called first thing by a `latency` handler (sync flavour)."""
    client.rpush(LATENCY_KEY, (time.time() - task_payload["sent"]) * 1000)


async def record_latency_async(client: Any, task_payload: dict[str, Any]) -> None:
    """Called first thing by a `latency` handler (redis.asyncio client)."""
    await client.rpush(LATENCY_KEY, (time.time() - task_payload["sent"]) * 1000)


class Producer(Protocol):
    """What a driver's producer offers; `bulk` may fall back to a loop (say so in describe)."""

    def one(self, task: str, task_payload: dict[str, Any]) -> None: ...

    def bulk(self, task: str, payloads: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class AsyncProducer(Protocol):
    """A producer for asyncio code (only systems with an async enqueue API have one)."""

    async def one(self, task: str, task_payload: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class OwnLoopProducer:
    """A `Producer` over an async one, for systems whose only API is asyncio: it owns an
    event loop and runs each call to completion on it. Such systems have no bulk enqueue,
    so `bulk` gathers concurrent `one` calls, `chunk` at a time."""

    def __init__(
        self, url: str, async_producer: Callable[[str], Awaitable[AsyncProducer]], chunk: int
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.chunk = chunk
        self.producer = self.loop.run_until_complete(async_producer(url))

    def one(self, task: str, task_payload: dict[str, Any]) -> None:
        self.loop.run_until_complete(self.producer.one(task, task_payload))

    def bulk(self, task: str, payloads: Sequence[dict[str, Any]]) -> None:
        async def send() -> None:
            for chunk in chunks(payloads, self.chunk):
                await asyncio.gather(*(self.producer.one(task, p) for p in chunk))

        self.loop.run_until_complete(send())

    def close(self) -> None:
        self.loop.run_until_complete(self.producer.close())
        self.loop.close()


@dataclass
class Driver:
    """What a driver file passes to `main`.

    `worker_command(processes)` is the argv (and extra environment) that starts the
    system's workers with `processes` worker processes, run with this file's directory
    as the working directory and on PYTHONPATH.
    """

    describe: Callable[[], dict[str, Any]]
    producer: Callable[[str], Producer]
    worker_command: Callable[[int], tuple[list[str], dict[str, str]]]
    async_producer: Callable[[str], Awaitable[AsyncProducer]] | None = None
    #: seconds between SIGTERM and SIGKILL when stopping workers
    stop_grace: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict)


def main(driver: Driver) -> None:
    """Run the scenario in argv[1] and print its result as one JSON line."""
    spec = json.loads(sys.argv[1])
    spec.setdefault("counter_url", spec.get("redis_url"))
    if spec.get("redis_url"):  # the workers started below read it from their environment
        os.environ["BENCH_REDIS_URL"] = spec["redis_url"]
    scenario = spec["scenario"]
    if scenario == "describe":
        result = driver.describe()
    elif scenario == "enqueue":
        result = _enqueue(driver, spec)
    elif scenario == "enqueue_async":
        result = asyncio.run(_enqueue_async(driver, spec))
    elif scenario == "bulk":
        result = _bulk(driver, spec)
    elif scenario == "e2e":
        result = _e2e(driver, spec)
    elif scenario == "latency":
        result = _latency(driver, spec)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    print(json.dumps(result), flush=True)


def _timed(n: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"n": n, "seconds": seconds, "rate": n / seconds, **extra}


def _enqueue(driver: Driver, spec: dict[str, Any]) -> dict[str, Any]:
    producer = driver.producer(spec["redis_url"])
    n = spec["n"]
    start = time.perf_counter()
    for i in range(n):
        producer.one("noop", payload(i))
    seconds = time.perf_counter() - start
    producer.close()
    return _timed(n, seconds)


async def _enqueue_async(driver: Driver, spec: dict[str, Any]) -> dict[str, Any]:
    """`concurrency` coroutines share one producer, each enqueueing its share in turn."""
    if driver.async_producer is None:
        return {"skipped": "no asyncio enqueue API"}
    producer = await driver.async_producer(spec["redis_url"])
    n, concurrency = spec["n"], spec["concurrency"]

    async def share(first: int) -> None:
        for i in range(first, n, concurrency):
            await producer.one("noop", payload(i))

    start = time.perf_counter()
    await asyncio.gather(*(share(c) for c in range(concurrency)))
    seconds = time.perf_counter() - start
    await producer.close()
    return _timed(n, seconds, concurrency=concurrency)


def _bulk(driver: Driver, spec: dict[str, Any]) -> dict[str, Any]:
    producer = driver.producer(spec["redis_url"])
    n = spec["n"]
    payloads = [payload(i) for i in range(n)]
    start = time.perf_counter()
    producer.bulk("noop", payloads)
    seconds = time.perf_counter() - start
    producer.close()
    return _timed(n, seconds)


class Redis:
    """Snapshots of INFO, to report what a phase cost Redis."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def snapshot(self) -> dict[str, int]:
        stats = self.client.info("stats")
        commands = self.client.info("commandstats")
        memory = self.client.info("memory")
        cpu = self.client.info("cpu")
        snap = {f"cmd:{k.removeprefix('cmdstat_')}": v["calls"] for k, v in commands.items()}
        snap["reads"] = stats["total_reads_processed"]
        snap["commands"] = stats["total_commands_processed"]
        snap["used_memory"] = memory["used_memory"]
        # the server's own CPU time, in µs: what the phase cost Redis's single thread
        snap["cpu_us"] = int((cpu["used_cpu_user"] + cpu["used_cpu_sys"]) * 1e6)
        return snap


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Counter deltas (commands absent before count from 0); memory as a difference."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


class Workers:
    """The system's worker processes, in their own process group."""

    def __init__(self, driver: Driver, processes: int, counter: str) -> None:
        argv, env = driver.worker_command(processes)
        here = os.path.dirname(os.path.abspath(__file__))
        fd, self.log_path = tempfile.mkstemp(prefix="bench-worker-", suffix=".log")
        self.grace = driver.stop_grace
        self.process = subprocess.Popen(
            argv,
            cwd=here,
            env={
                **os.environ,
                "PYTHONPATH": here,
                "BENCH_COUNTER_URL": counter,
                "PYTHONUNBUFFERED": "1",
                **env,
            },
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        os.close(fd)

    def alive(self) -> bool:
        return self.process.poll() is None

    def _group(self) -> list[list[str]]:
        """The /proc/<pid>/stat fields (after the name) of every live process of the group."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # fields: state, ppid, pgrp, ...; a zombie is gone for our purposes
            if int(fields[2]) == self.process.pid and fields[0] != "Z":
                found.append(fields)
        return found

    def cpu_seconds(self) -> float:
        """CPU time used so far by every process of the group (the workers and children)."""
        ticks = sum(int(f[11]) + int(f[12]) for f in self._group())  # utime, stime
        return ticks / CLK_TCK

    def stop(self) -> None:
        """SIGTERM the whole group, wait for every member (not just the leader: a launcher
        may exit first), then SIGKILL what is left, so no worker outlives its run."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            self.process.poll()  # reap the leader once it exits
            if not self._group():
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        while self._group():  # SIGKILLed members vanish within moments
            time.sleep(0.01)

    def failure(self, what: str) -> SystemExit:
        with open(self.log_path, errors="replace") as f:
            tail = f.read()[-3000:]
        return SystemExit(f"{what}; worker log {self.log_path}:\n{tail}")


def _wait_for(
    check: Callable[[], bool], workers: Workers, timeout: float, what: str, poll: float = 0.002
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if not workers.alive():
            raise workers.failure(f"workers exited before {what}")
        if time.monotonic() > deadline:
            raise workers.failure(f"timed out waiting for {what}")
        time.sleep(poll)


def _e2e(driver: Driver, spec: dict[str, Any]) -> dict[str, Any]:
    """Enqueue n no-op tasks, then time workers from start until the counter reads n.

    Also reports what each phase cost Redis (INFO deltas): meaningful when counter_url
    is another Redis, so that the counting itself is not in them.
    """
    n, processes = spec["n"], spec["processes"]
    queue_redis = Redis(spec["redis_url"])
    counter = redis.Redis.from_url(spec["counter_url"])
    counter.delete(COUNTER_KEY)
    before = queue_redis.snapshot()
    producer = driver.producer(spec["redis_url"])
    payloads = [payload(i) for i in range(n)]
    if spec.get("enqueue") == "one":
        for p in payloads:
            producer.one("noop", p)
    else:
        producer.bulk("noop", payloads)
    producer.close()
    enqueued = queue_redis.snapshot()
    start = time.perf_counter()
    workers = Workers(driver, processes, spec["counter_url"])
    try:
        _wait_for(lambda: int(counter.get(COUNTER_KEY) or 0) >= n, workers, 600, f"{n} tasks")
        seconds = time.perf_counter() - start
        done = queue_redis.snapshot()
    finally:
        workers.stop()
    return _timed(
        n,
        seconds,
        processes=processes,
        enqueue_cost=_delta(before, enqueued),
        process_cost=_delta(enqueued, done),
    )


def _latency(driver: Driver, spec: dict[str, Any]) -> dict[str, Any]:
    """Enqueue-to-start delays of tasks sent `interval` apart into an idle worker.

    Then, if idle_seconds > 0, the CPU the idle workers use (percent of one core).
    """
    n, interval = spec["n"], spec["interval"]
    counter = redis.Redis.from_url(spec["counter_url"])
    counter.delete(COUNTER_KEY, LATENCY_KEY)
    producer = driver.producer(spec["redis_url"])
    workers = Workers(driver, spec.get("processes", 1), spec["counter_url"])
    try:
        producer.one("noop", payload(-1))  # the worker is up once this one is done
        _wait_for(lambda: counter.get(COUNTER_KEY) is not None, workers, 120, "the first task")
        time.sleep(0.5)
        for i in range(n):
            producer.one("latency", {**payload(i), "sent": time.time()})
            time.sleep(interval)
        _wait_for(lambda: counter.llen(LATENCY_KEY) >= n, workers, 60, f"{n} latency tasks")
        latencies = [float(x) for x in counter.lrange(LATENCY_KEY, 0, -1)]
        idle_cpu = None
        idle = spec.get("idle_seconds", 0)
        if idle:
            time.sleep(1)
            cpu, wall = workers.cpu_seconds(), time.monotonic()
            time.sleep(idle)
            idle_cpu = 100 * (workers.cpu_seconds() - cpu) / (time.monotonic() - wall)
    finally:
        producer.close()
        workers.stop()
    return {"n": n, "latencies_ms": latencies, "idle_cpu_percent": idle_cpu}


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """`items` in slices of at most `size` (for bulk APIs with a batch limit)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
