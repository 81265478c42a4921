"""A real Sentinel deployment for the tests: one master, one replica and three sentinels,
each a redis-server process on a free loopback port, their files in one temporary dir.

Short `down-after-milliseconds` and `failover-timeout` make a failover take a second or
two. `stop()` kills every process, whatever state the group is in.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from conveyor.tools.embedded import RedisServer, free_port

#: The master's name in the sentinels' configuration and in the URL.
SERVICE = "conveyor"
#: How long a master may not answer before a sentinel thinks it down.
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 3000


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` every 50 ms; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def ask(port: int, *args: str) -> Any:
    """One command to the server (or sentinel) on `port`, its reply decoded."""
    with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
        return client.execute_command(*args)


class SentinelGroup:
    """Master, replica, three sentinels; `url` is Conveyor's redis+sentinel:// URL."""

    def __init__(self, binary: str, service: str = SERVICE) -> None:
        self.binary = binary
        self.service = service
        self._tmp = tempfile.TemporaryDirectory(prefix="conveyor-sentinel-")
        self.dir = Path(self._tmp.name)
        self.master = RedisServer(binary, data_dir=self.dir / "master")
        self.replica = RedisServer(
            binary,
            data_dir=self.dir / "replica",
            extra_args=("--replicaof", "127.0.0.1", str(self.master.port)),
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """`redis+sentinel://` URL naming the three sentinels and the service."""
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{nodes}/{self.service}"

    def start(self) -> SentinelGroup:
        """Start everything and wait until the sentinels agree on the master and its
        replica and know each other; stops what started if that fails."""
        try:
            self.master.start()
            self.replica.start()
            wait_for(self._replica_synced, 15, "the replica to sync")
            for port in self.sentinel_ports:
                self._sentinels.append(self._start_sentinel(port))
            wait_for(self._agreed, 20, "the sentinels to agree")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        conf = self.dir / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"logfile {self.dir / f'sentinel-{port}.log'}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {self.service} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {self.service} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        return subprocess.Popen(
            [self.binary, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _replica_synced(self) -> bool:
        with redis.Redis(port=self.replica.port, socket_timeout=1) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _agreed(self) -> bool:
        for port in self.sentinel_ports:
            address = ask(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            if address != ["127.0.0.1", str(self.master.port)]:
                return False
            peers = ask(port, "SENTINEL", "SENTINELS", self.service)
            replicas = ask(port, "SENTINEL", "REPLICAS", self.service)
            if len(peers) != 2 or len(replicas) != 1:
                return False
        return True

    def master_address(self) -> tuple[str, int] | None:
        """The master the first answering sentinel names, or None."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError):
                host, master = ask(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                return host, int(master)
        return None

    def kill_master(self) -> None:
        """SIGKILL the master, as a crash of its machine would."""
        self.master.kill()

    def wait_for_failover(self, timeout: float = 20.0) -> None:
        """Wait until every sentinel names the replica and it answers as a master."""

        def promoted() -> bool:
            for port in self.sentinel_ports:
                name = ask(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                if int(name[1]) != self.replica.port:
                    return False
            role: list[Any] = ask(self.replica.port, "ROLE")
            return bool(role[0] == "master")

        wait_for(promoted, timeout, "the sentinels to promote the replica")

    def stop(self) -> None:
        """Kill every process of the group and remove its files."""
        for process in self._sentinels:
            if process.poll() is None:
                process.kill()
                process.wait()
        self._sentinels.clear()
        self.replica.cleanup()
        self.master.cleanup()
        with contextlib.suppress(OSError):
            self._tmp.cleanup()

    def log_tail(self) -> str:
        """The last lines of each sentinel's log, for a failure's message."""
        logs = sorted(self.dir.glob("sentinel-*.log"))
        return "\n".join(f"{p.name}: {p.read_text()[-600:]}" for p in logs if p.exists())
