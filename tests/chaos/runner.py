"""Runs one chaos scenario end to end and judges it.

A private redis-server under test (appendonly yes, appendfsync always or everysec), a
ledger redis-server that is never faulted, the proxy between them and everything else,
K `conveyor worker` subprocesses (restarted whenever one exits; with `netns`, each in its
own network namespace, reaching Redis across its own link: netns.py), producers through the
library and optionally `conveyor api`; the scenario's faults while the work runs; then a
bounded wait until every acknowledged task is terminal, the retention, and the checks.
Everything started here is stopped in `finally` blocks (an ExitStack).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Generator
from pathlib import Path

import redis

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer, find_redis_server
from conveyor.worker.reaper import RESTART_GRACE
from tests.chaos import ledger, partitions
from tests.chaos.aof import AofTail
from tests.chaos.cluster import ApiProcess, Deployment, Fleet
from tests.chaos.evidence import Evidence
from tests.chaos.faults import Chaos, no_faults
from tests.chaos.invariants import judge
from tests.chaos.keyspace import KeyState, unexplained
from tests.chaos.netns import Network
from tests.chaos.observer import Observer
from tests.chaos.producers import ACK, ApiProducer, LibraryProducer, Producer
from tests.chaos.proxy import ChaosProxy
from tests.chaos.report import Report
from tests.chaos.scenarios import Scenario, Size

#: Most seconds to wait, once production is over, for every acknowledged task to end.
SETTLE_BOUND = 60.0
#: Seconds with no task pending, active or scheduled after which the wait ends early.
IDLE_BOUND = 5.0
#: Seconds before the end of production by which every fault has healed (work left to
#: show that each worker resumed).
QUIET_TAIL = 1.5
#: Records of finished tasks expire after this many seconds in a chaos run.
RETENTION = 4.0  # longer than any Redis outage, or the observer could miss a record
#: How often the runner supervises workers and steps the fault script.
TICK = 0.05
#: Seconds after a restart of Redis when its new memory baseline is taken: every client
#: has reconnected by then (each connection holds memory of its own).
REBASELINE_AFTER = 1.5


def redis_binary() -> str:
    """Debian's redis-server 7.x if present, else whatever Conveyor would use."""
    system = Path("/usr/bin/redis-server")
    return str(system) if system.exists() else find_redis_server()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check()` until true; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(TICK)


class ScenarioRun:
    """One run of `scenario` at `size`, its files under `workdir`."""

    def __init__(
        self, scenario: Scenario, size: Size, workdir: Path, *, seed: int = 0, binary: str = ""
    ) -> None:
        self.scenario = scenario
        self.size = size
        self.workdir = workdir
        self.binary = binary or redis_binary()
        self.rng = random.Random(seed)
        self.prefix = f"chaos{uuid.uuid4().hex[:8]}"
        self.anomalies: list[str] = []
        self.producers: list[Producer] = []
        self.fleet_stopped = False
        self.network: Network | None = None
        #: When to take the memory baseline of a restarted Redis; None: not now.
        self.rebaseline_at: float | None = None
        self.began = time.monotonic()

    def run(self) -> Report:
        """Run the scenario; always stops everything it started."""
        began = time.monotonic()
        with contextlib.ExitStack() as stack:
            self._start(stack)
            self._drive()
            evidence = self._gather()
        report = judge(evidence)
        report.seconds = time.monotonic() - began
        return report

    # -- setup ---------------------------------------------------------------------------

    def _start(self, stack: contextlib.ExitStack) -> None:
        """Servers, proxy, workers, API and observer; each stopped by `stack`."""
        s = self.scenario
        aof = self._start_servers(stack)
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.deployment = Deployment(self.proxy.url, self.prefix, self.ledger_url,
                                     f"{self.prefix}:ledger", s.lease, RETENTION, logs)  # fmt: skip
        self.fleet = Fleet(self.deployment, s.workers, s.concurrency, s.shutdown_grace,
                           launcher=self.network)  # fmt: skip
        stack.callback(self._stop_fleet)
        self.chaos = Chaos(self.fleet, self.proxy, self.redis, s.lease, float("inf"), self.rng,
                           aof, network=self.network)  # fmt: skip
        self.fleet.start()
        self.api = ApiProcess(self.deployment) if s.api else None
        if self.api is not None:
            stack.callback(self.api.stop)
        self.observer = Observer(self.redis.url, self.prefix)
        stack.callback(self.observer.close)
        stack.callback(self.observer.stop)
        self.observer.load_scripts()  # first: its buffers are idle again at the baseline
        self._wait_for_workers()
        if s.reaper:  # the reaper trusts no survey of a Redis younger than its grace
            wait_for(self._past_restart_grace, RESTART_GRACE + 30, "the reaper's restart grace")
        if self.api is not None:
            self.api.wait_ready()
        self.memory_before = self.observer.settled_memory()
        self.chaos.restarted = self._restarted

    def _restarted(self) -> None:
        self.rebaseline_at = time.monotonic() + REBASELINE_AFTER

    def _rebaseline(self) -> None:
        """A restarted Redis is a new server: once its clients are back, memory is judged
        against what it holds then (scripts loaded), less the keys (they must go)."""
        if self.rebaseline_at is None or time.monotonic() < self.rebaseline_at:
            return
        with contextlib.suppress(redis.RedisError):
            self.observer.load_scripts()
            self.memory_before = self.observer.settled_memory(without_keys=True)
            self.rebaseline_at = None

    def _start_servers(self, stack: contextlib.ExitStack) -> AofTail | None:
        """The Redis under test, the ledger Redis and the proxy; the AOF watcher if the
        scenario models an OS crash of an everysec Redis."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        fsync: tuple[str, ...] = ("--appendfsync", self.scenario.appendfsync)
        ledger_socket = self._start_network(stack) if self.scenario.netns else None
        if self.network is not None:  # the workers reach Redis across their own links,
            addresses = " ".join(["127.0.0.1", *self.network.bind_addresses()])  # private
            fsync += ("--bind", addresses, "--protected-mode", "no")
        self.redis = RedisServer(self.binary, data_dir=self.workdir / "redis", appendonly=True,
                                 extra_args=fsync)  # fmt: skip
        stack.callback(self.redis.cleanup)
        if self.network is not None:
            self.network.redis_port = self.redis.port
        self.redis.start()
        self._check_redis_config()
        aof = AofTail(self.redis.data_dir) if self.scenario.appendfsync == "everysec" else None
        if aof is not None:
            aof.start()
            stack.callback(aof.stop)
        unix = (
            ("--unixsocket", str(ledger_socket), "--unixsocketperm", "700") if ledger_socket else ()
        )
        self.ledger_server = RedisServer(self.binary, data_dir=self.workdir / "ledger",
                                         extra_args=unix)  # fmt: skip
        stack.callback(self.ledger_server.cleanup)
        self.ledger_server.start()
        self.ledger_url = f"unix://{ledger_socket}" if ledger_socket else self.ledger_server.url
        self.proxy = ChaosProxy(self.redis.port)
        stack.callback(self.proxy.close)
        return aof

    def _start_network(self, stack: contextlib.ExitStack) -> Path:
        """One network namespace per worker slot (removed by `stack` after the fleet
        stopped); returns where the ledger listens: a Unix socket, which no cut reaches."""
        self.network = Network(self.scenario.workers, random.Random(self.rng.random()))
        stack.callback(self.network.close)
        self.network.create()
        short = Path(tempfile.mkdtemp(prefix="cvns-ledger-"))  # a socket path has 107 bytes
        stack.callback(shutil.rmtree, short, ignore_errors=True)
        return short / "ledger.sock"

    def _check_redis_config(self) -> None:
        client = redis.Redis.from_url(self.redis.url)
        try:
            fsync = client.config_get("appendfsync")["appendfsync"]
        finally:
            client.close()
        assert fsync == self.scenario.appendfsync, f"redis-server runs appendfsync {fsync}"

    def _registered(self, worker_id: str) -> bool:
        """True once the worker has registered (it runs: its signal handlers are set)."""
        try:
            return bool(self.observer.client.exists(GlobalKeys(self.prefix).worker(worker_id)))
        except redis.RedisError:
            return False

    def _past_restart_grace(self) -> bool:
        self._supervise()
        return self.observer.uptime() > RESTART_GRACE

    def _wait_for_workers(self) -> None:
        self.chaos.ready = self._registered

        def registered() -> bool:
            self._supervise()
            return all(self._registered(slot.worker_id) for slot in self.fleet.slots)

        wait_for(registered, 30, "the workers to register")

    # -- the run -------------------------------------------------------------------------

    def _drive(self) -> None:
        """Produce while the faults hit; then wait until every acknowledged task ends."""
        self.observer.start()
        self.began = time.monotonic()
        self.chaos.quiet_until = self.began + self.size.window - QUIET_TAIL
        self.producers = self._producers()
        for producer in self.producers:
            producer.start()
        script = (self.scenario.faults or no_faults)(self.chaos)
        try:
            self._inject(script)
        finally:
            script.close()  # heals what the script left broken
            for producer in self.producers:
                producer.stop(10)
            with contextlib.suppress(ProcessLookupError):
                self.fleet.resume_all()
        self._settle()

    def _producers(self) -> list[Producer]:
        specs = self.scenario.plan(self.size, self.rng)
        settings = Settings.from_env(redis_url=self.proxy.url, prefix=self.prefix,
                                     lease_timeout=self.scenario.lease)  # fmt: skip

        def make_app() -> Conveyor:
            return Conveyor(settings=settings)

        if self.api is None:
            return [LibraryProducer(specs, self.size.window, make_app)]
        return [
            LibraryProducer(specs[0::2], self.size.window, make_app),
            ApiProducer(specs[1::2], self.size.window, self.api.url),
        ]

    def _inject(self, script: Generator[float, None, None]) -> None:
        """Step the fault script and supervise the workers until production is over."""
        next_step = time.monotonic()
        deadline = next_step + self.size.window + SETTLE_BOUND  # producers are late: give up
        running = True
        while (running or any(p.is_alive() for p in self.producers)) and (
            time.monotonic() < deadline
        ):
            self._supervise()
            if running and time.monotonic() >= next_step:
                try:
                    next_step = time.monotonic() + next(script)
                except StopIteration:
                    running = False
            time.sleep(TICK)

    def _supervise(self) -> None:
        """Restart workers that exited; an exit nobody caused is a crash (a poison pill)."""
        self._rebaseline()
        for slot, code in self.fleet.exited():
            if not slot.expected_exit:
                self.chaos.instant("crash", slot.worker_id)
            elif code not in (0, -9):
                self.anomalies.append(f"worker {slot.worker_id} drained with exit code {code}")

    def _settle(self) -> None:
        acked = {e.task_id for p in self.producers for e in p.log if e.outcome == ACK and e.task_id}
        deadline = time.monotonic() + SETTLE_BOUND
        idle_since: float | None = None
        while self.observer.unfinished(acked) and time.monotonic() < deadline:
            self._supervise()
            time.sleep(TICK * 4)
            # nothing left to run for a while: what is unfinished now is lost, not late
            with contextlib.suppress(redis.RedisError):
                idle = self.observer.backlog() == 0
                idle_since = (idle_since or time.monotonic()) if idle else None
            if idle_since is not None and time.monotonic() - idle_since > IDLE_BOUND:
                break

    # -- evidence ------------------------------------------------------------------------

    def _gather(self) -> Evidence:
        self.observer.stop()
        self.observer.poll()
        leftover = self._wait_for_retention()
        self.observer.drop_events()
        memory_after = self.observer.settled_memory()
        scripts = self.observer.cached_scripts()
        self._stop_fleet()
        client = redis.Redis.from_url(self.ledger_server.url)
        try:
            entries = ledger.read(client, self.deployment.ledger_key)
        finally:
            client.close()
        for producer in self.producers:
            self.anomalies += producer.anomalies
        return Evidence(
            self.scenario, Settings().max_crashes,
            [e for p in self.producers for e in p.log], entries,
            self.observer.seen, self.observer.dead_ids, self.chaos.faults, leftover,
            self.memory_before, memory_after, self.began, self.anomalies, self._notes(),
            self.size, self.prefix, list(self.fleet.lives), dict(self.observer.workers),
            scripts,
        )  # fmt: skip

    def _notes(self) -> list[str]:
        notes = []
        if self.chaos.aof is not None:
            notes.append(f"OS crash model: {self.chaos.aof.bytes_cut} bytes of unsynced AOF lost")
        if self.network is not None:
            notes.append(partitions.takeovers(self.deployment.log_dir))
        return notes

    def _wait_for_retention(self) -> list[KeyState]:
        """Wait (workers running: they trim the dead letters) until every key left is
        one Conveyor keeps on purpose; returns the whole keyspace of the run."""
        deadline = time.monotonic() + RETENTION + 3 * self.scenario.lease + 10
        workers = {life.worker_id for life in self.fleet.lives}
        keys = self.observer.keyspace()
        while unexplained(keys, self.prefix, workers) and time.monotonic() < deadline:
            self._supervise()
            time.sleep(0.25)
            keys = self.observer.keyspace()
        return keys

    def _stop_fleet(self) -> None:
        if self.fleet_stopped:
            return
        self.fleet_stopped = True
        try:  # a draining worker needs Redis: heal whatever a failure left broken
            self.proxy.normal()
            if self.network is not None:
                self.network.heal_all()
            if self.redis.process is None:
                self.redis.start()
        finally:
            self.fleet.stop()


def run_scenario(
    scenario: Scenario, size: Size, workdir: Path, *, seed: int = 0, keep: bool = False
) -> Report:
    """Run one scenario in `workdir` (removed afterwards unless `keep`)."""
    try:
        return ScenarioRun(scenario, size, workdir, seed=seed).run()
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
