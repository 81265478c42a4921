"""A real Sentinel deployment for the tests: one master, one replica and three sentinels,
each a redis-server process on a free loopback port, their files in one temporary dir.

Short `down-after-milliseconds` and `failover-timeout` make a failover take a second or
two. `stop()` kills every process, whatever state the group is in.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from conveyor.tools.embedded import RedisServer, free_port
from tests.support.tls import TlsFiles

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


def ask(port: int, *args: str, password: str | None = None) -> Any:
    """One command to the server (or sentinel) on `port`, its reply decoded."""
    with redis.Redis(
        port=port, password=password, socket_timeout=1, decode_responses=True
    ) as client:
        return client.execute_command(*args)


def _tls_args(files: TlsFiles, port: int) -> tuple[str, ...]:
    """A server's TLS options: its TLS port, replication over TLS, client certificates."""
    return (
        "--tls-port", str(port),
        "--tls-cert-file", str(files.server_cert),
        "--tls-key-file", str(files.server_key),
        "--tls-ca-cert-file", str(files.ca),
        "--tls-replication", "yes",
        "--tls-auth-clients", "yes",
    )  # fmt: skip


class SentinelGroup:
    """Master, replica, three sentinels; `url` is Conveyor's redis+sentinel:// URL."""

    def __init__(
        self,
        binary: str,
        service: str = SERVICE,
        *,
        tls: TlsFiles | None = None,
        user: tuple[str, str] | None = None,
        sentinel_password: str | None = None,
        failover_timeout_ms: int = FAILOVER_TIMEOUT_MS,
    ) -> None:
        """`tls`: every link over TLS (clients', replication, sentinels'); `user`: an ACL
        user (name, password) on the master and replica; `sentinel_password`: the
        sentinels' requirepass; `failover_timeout_ms`: also how long the sentinels leave
        a replica that replicates from another address than the master's (a relay)
        before they point it at the master (+fix-slave-config)."""
        self.binary = binary
        self.failover_timeout_ms = failover_timeout_ms
        self.service = service
        self.tls = tls
        self.user = user
        self.sentinel_password = sentinel_password
        self._tmp = tempfile.TemporaryDirectory(prefix="conveyor-sentinel-")
        self.dir = Path(self._tmp.name)
        self.master = RedisServer(binary, data_dir=self.dir / "master")
        self.replica = RedisServer(binary, data_dir=self.dir / "replica")
        #: where clients and the sentinels reach each server: its TLS port when TLS is on
        self.data_ports = {
            id(s): free_port() if tls else s.port for s in (self.master, self.replica)
        }
        self.master.extra_args = self._server_args(self.master)
        self.replica.extra_args = (
            *self._server_args(self.replica),
            "--replicaof", "127.0.0.1", str(self.data_port(self.master)),
        )  # fmt: skip
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinel_tls_ports = [free_port() for _ in range(3)] if tls else self.sentinel_ports
        self._sentinels: list[subprocess.Popen[bytes]] = []

    def replicate_through(self, port: int) -> None:
        """Make the replica replicate from `port` (a relay to the master); before start()."""
        self.replica.extra_args = (
            *self._server_args(self.replica), "--replicaof", "127.0.0.1", str(port),
        )  # fmt: skip

    def data_port(self, server: RedisServer) -> int:
        """The port clients and sentinels use for `server` (its TLS port under TLS)."""
        return self.data_ports[id(server)]

    def _server_args(self, server: RedisServer) -> tuple[str, ...]:
        # a replica syncs at once, not after the default 5 s wait for more replicas
        args: tuple[str, ...] = ("--repl-diskless-sync-delay", "0")
        args += _tls_args(self.tls, self.data_port(server)) if self.tls else ()
        if self.user:
            args += ("--user", self.user[0], "on", f">{self.user[1]}", "~*", "&*", "+@all")
        return args

    @property
    def url(self) -> str:
        """Conveyor's URL: the three sentinels, the service, the credentials and TLS."""
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_tls_ports)
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        auth = f"{self.user[0]}:{self.user[1]}@" if self.user else ""
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return f"{scheme}://{auth}{nodes}/{self.service}{query}"

    def _ask_sentinel(self, port: int, *args: str) -> Any:
        return ask(port, *args, password=self.sentinel_password)

    def start(self) -> SentinelGroup:
        """Start everything and wait until the sentinels agree on the master and its
        replica and know each other; stops what started if that fails."""
        try:
            self.master.start()
            self.replica.start()
            wait_for(self._replica_synced, 15, "the replica to sync")
            for port, tls_port in zip(self.sentinel_ports, self.sentinel_tls_ports, strict=True):
                self._sentinels.append(self._start_sentinel(port, tls_port))
            wait_for(self._agreed, 20, "the sentinels to agree")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, port: int, tls_port: int) -> subprocess.Popen[bytes]:
        conf = self.dir / f"sentinel-{port}.conf"
        lines = [f"port {port}", "bind 127.0.0.1", f"dir {self.dir}"]
        if self.tls:
            options = _tls_args(self.tls, tls_port)
            lines += [f"{k[2:]} {v}" for k, v in zip(options[::2], options[1::2], strict=True)]
        if self.sentinel_password:
            lines.append(f"requirepass {self.sentinel_password}")
        conf.write_text(
            "\n".join(lines) + "\n"
            f"logfile {self.dir / f'sentinel-{port}.log'}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.data_port(self.master)} 2\n"
            f"sentinel down-after-milliseconds {self.service} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}\n"
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
            address = self._ask_sentinel(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            if address != ["127.0.0.1", str(self.data_port(self.master))]:
                return False
            peers = self._ask_sentinel(port, "SENTINEL", "SENTINELS", self.service)
            replicas = self._ask_sentinel(port, "SENTINEL", "REPLICAS", self.service)
            if len(peers) != 2 or len(replicas) != 1:
                return False
        return True

    def master_address(self) -> tuple[str, int] | None:
        """The master the first answering sentinel names, or None."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError):
                host, master = self._ask_sentinel(
                    port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                )
                return host, int(master)
        return None

    def kill_master(self) -> None:
        """SIGKILL the master, as a crash of its machine would."""
        self.master.kill()

    def pause_master(self) -> None:
        """SIGSTOP the master: it holds its connections but answers nothing, as a stalled
        machine does; `resume_master` lets it run on, still believing it is the master
        until the sentinels demote it."""
        assert self.master.process is not None
        self.master.process.send_signal(signal.SIGSTOP)

    def resume_master(self) -> None:
        """SIGCONT the paused master."""
        assert self.master.process is not None
        self.master.process.send_signal(signal.SIGCONT)

    def demoted(self) -> bool:
        """Whether the old master now replicates the new one."""
        return bool(ask(self.master.port, "ROLE")[0] == "slave")

    def wait_for_failover(self, timeout: float = 20.0) -> None:
        """Wait until every sentinel names the replica and it answers as a master."""

        def promoted() -> bool:
            for port in self.sentinel_ports:
                name = self._ask_sentinel(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                if int(name[1]) != self.data_port(self.replica):
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
