"""`conveyor up`: the whole system on one machine, as one process tree.

Redis (the embedded, append-only redis-server unless a URL is given), the API, the
dashboard and a worker pool run as child processes, each in a session of its own so that
a Ctrl-C reaches only this supervisor, which then stops them in order: intake first (the
demo stream, the API), then the workers (they drain: running tasks finish or go back to
pending), then the dashboard, and Redis last, after every write is in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer

#: Seconds the API and the dashboard get to answer once started.
READY_TIMEOUT = 60.0
#: Seconds beyond their shutdown grace the workers get to drain before they are killed.
DRAIN_MARGIN = 15.0


@dataclass(frozen=True, slots=True)
class UpOptions:
    """What `conveyor up` runs, and where."""

    app_spec: str
    queues: str
    workers: int = 1
    concurrency: int | None = None
    host: str = "127.0.0.1"
    api_port: int = 8085
    dashboard_port: int = 8082
    metrics_port: int = 2112
    data_dir: Path = Path(".conveyor") / "redis"
    redis_url: str | None = None
    prefix: str | None = None
    demo: bool = False
    shutdown_grace: float = 25.0


@dataclass(slots=True)
class Child:
    """One component: its process, and the thread that prefixes its log lines."""

    name: str
    process: subprocess.Popen[bytes]
    pump: threading.Thread = field(init=False)


class Stack:
    """Starts, watches and stops the components; `echo` prints one line."""

    def __init__(self, options: UpOptions, echo: Callable[[str], object] = print) -> None:
        self.options = options
        self.echo = echo
        self.children: list[Child] = []
        #: the stop signal received, if any; a plain attribute, as a handler that takes a
        #: lock the interrupted main thread holds (an Event's, the log's) deadlocks
        self.signalled: int | None = None
        self._print = threading.Lock()

    def run(self) -> int:
        """Run until SIGINT or SIGTERM (0) or until a component dies (1)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with self._redis() as url:
                return self._run_on(url)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signalled = signum

    def _run_on(self, url: str) -> int:
        o = self.options
        feeder: threading.Thread | None = None
        stop_feeding = threading.Event()
        try:
            self._start("api", "api", "--host", o.host, "--port", str(o.api_port), url=url)
            self._start("dashboard", "dashboard", "--host", o.host,
                        "--port", str(o.dashboard_port), url=url)  # fmt: skip
            worker = ["worker", o.app_spec, "--queues", o.queues, "--workers", str(o.workers),
                      "--metrics-port", str(o.metrics_port),
                      "--shutdown-grace", str(o.shutdown_grace)]  # fmt: skip
            if o.concurrency:
                worker += ["--concurrency", str(o.concurrency)]
            self._start("worker", *worker, url=url)
            if not self._wait_ready():
                return 0 if self.signalled else 1
            if o.demo:
                feeder = self._feed(url, stop_feeding)
            self._greet(url)
            return self._watch()
        finally:
            stop_feeding.set()
            if feeder is not None:
                feeder.join(5)
            self._stop_all()

    @contextlib.contextmanager
    def _redis(self) -> Iterator[str]:
        if self.options.redis_url:
            yield self.options.redis_url
            return
        server = RedisServer(data_dir=self.options.data_dir, appendonly=True)
        server.start()
        self.say("redis", f"embedded Redis {server.version()} on {server.url} "
                          f"(data in {self.options.data_dir}, append-only)")  # fmt: skip
        try:
            yield server.url
        finally:
            server.stop()  # SIGTERM: Redis writes its append-only file out, then exits
            self.say("redis", "stopped")

    def _start(self, name: str, *command: str, url: str) -> None:
        argv = [sys.executable, "-m", "conveyor", "--redis-url", url]
        if self.options.prefix:
            argv += ["--prefix", self.options.prefix]
        env = {**os.environ, "CONVEYOR_REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [*argv, *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C reaches only the supervisor
        )  # fmt: skip
        child = Child(name, process)
        assert process.stdout is not None
        child.pump = threading.Thread(target=self._pump, args=(name, process.stdout), daemon=True)
        child.pump.start()
        self.children.append(child)

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode(errors="replace").rstrip())

    def say(self, name: str, line: str) -> None:
        """One log line, prefixed by the component it comes from."""
        with self._print:
            self.echo(f"{name:>9} | {line}")

    def _wait_ready(self) -> bool:
        """True once the API and the dashboard answer; False if a component died, did not
        answer in time, or a stop was asked for meanwhile."""
        o = self.options
        checks = {
            "api": f"http://127.0.0.1:{o.api_port}/healthz",
            "dashboard": f"http://127.0.0.1:{o.dashboard_port}/stats",
        }
        deadline = time.monotonic() + READY_TIMEOUT
        for name, url in checks.items():
            while not _answers(url):
                if self.signalled or self._any_dead():
                    return False
                if time.monotonic() > deadline:
                    self.say("up", f"the {name} did not answer {url} in {READY_TIMEOUT:.0f}s")
                    return False
                time.sleep(0.1)
        return True

    def _greet(self, url: str) -> None:
        o = self.options
        host = "127.0.0.1" if o.host in ("0.0.0.0", "::") else o.host
        lines = [
            f"dashboard  http://{host}:{o.dashboard_port}/",
            f"API        http://{host}:{o.api_port}/docs",
            f"metrics    http://{host}:{o.metrics_port}/metrics",
            f"Redis      {url}",
            f"try:       curl -X POST http://{host}:{o.api_port}/task "
            "-H 'Content-Type: application/json' "
            '-d \'{"type": "email-notification", "payload": "you@example.com"}\'',
            f"load:      conveyor load --url http://{host}:{o.api_port} --redis-url {url} "
            "-n 1000 --wait",
            "stop:      Ctrl-C (drains the workers, then stops Redis last; nothing is lost)",
        ]
        for line in lines:
            self.say("up", line)

    def _feed(self, url: str, stop: threading.Event) -> threading.Thread:
        from conveyor.tools.showcase import app as producer
        from conveyor.tools.showcase import feed

        # the demo's own app: its registry sends each task to its queue with its options
        producer.settings = Settings.from_env(redis_url=url, prefix=self.options.prefix)

        def run() -> None:
            try:
                feed(producer, stop)
            except Exception as exc:  # the demo stream must not take the system down
                self.say("demo", f"the demo stream stopped: {exc}")
            finally:
                producer.close()

        thread = threading.Thread(target=run, name="conveyor-demo-feed", daemon=True)
        thread.start()
        self.say("demo", "a gentle stream of demo tasks is flowing (about 4 a second)")
        return thread

    def _watch(self) -> int:
        while self.signalled is None:
            if self._any_dead():
                return 1
            time.sleep(0.2)
        self.say("up", f"{signal.Signals(self.signalled).name}: stopping in order")
        return 0

    def _any_dead(self) -> bool:
        """Whether a component exited by itself (said once per component)."""
        dead = [c for c in self.children if c.process.poll() is not None]
        for child in dead:
            self.say("up", f"the {child.name} exited ({child.process.returncode}): "
                           "stopping everything")  # fmt: skip
        return bool(dead)

    def _stop_all(self) -> None:
        """Intake first, then the workers (draining), then the dashboard."""
        grace = self.options.shutdown_grace + DRAIN_MARGIN
        for name, wait in (("api", 10.0), ("worker", grace), ("dashboard", 10.0)):
            for child in [c for c in self.children if c.name == name]:
                _stop(child, wait, self.say)
        for child in self.children:
            child.pump.join(2)


def _stop(child: Child, wait: float, say: Callable[[str, str], None]) -> None:
    if child.process.poll() is None:
        child.process.send_signal(signal.SIGTERM)
        try:
            child.process.wait(wait)
        except subprocess.TimeoutExpired:
            say("up", f"the {child.name} did not stop within {wait:.0f}s: killing it")
            child.process.kill()
            child.process.wait()
    say("up", f"{child.name} stopped ({child.process.returncode})")


def _answers(url: str) -> bool:
    """True once `url` answers 200 (a loopback URL: no proxy is consulted)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False
