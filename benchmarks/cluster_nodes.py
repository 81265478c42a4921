"""The two deployments `benchmarks.cluster` compares, and what each node's INFO says.

A single Redis here is a master with one replica, and the Cluster the tests' local one (3
masters, a replica each): both as deployed, since a master spends CPU feeding its replica
(the replication stream is a copy of every write), and a figure without it would flatter
both. Each node is read with a plain client, so its own counters stay its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.crc import key_slot

from benchmarks import costs
from conveyor.broker.keys import QueueKeys
from conveyor.shards import shard_names
from conveyor.tools.embedded import RedisServer
from tests.support.cluster import LocalCluster

#: The prefix the benchmark's Conveyor uses: a queue's keys hash by `{queue}` under it.
PREFIX = "conveyor"


@dataclass(frozen=True)
class Node:
    """One redis-server of a deployment: `label` names it in the results (`m1`, `m1
    replica`, `single`), `master` is the label of the master it serves (its own if one)."""

    label: str
    master: str
    port: int
    client: redis.Redis

    @property
    def is_master(self) -> bool:
        return self.label == self.master


@dataclass
class Deployment:
    """A running deployment: its URL for Conveyor, its nodes, and which master serves a
    slot (`slots`: (first, last, master label); one range for the single Redis)."""

    name: str
    url: str
    nodes: list[Node]
    slots: list[tuple[int, int, str]] = field(default_factory=lambda: [(0, 16383, "single")])

    @property
    def masters(self) -> list[Node]:
        return [n for n in self.nodes if n.is_master]

    def master_of(self, queue: str) -> str:
        """The label of the master holding `queue`'s keys."""
        slot = key_slot(QueueKeys(PREFIX, queue).ready.encode())
        return next(label for first, last, label in self.slots if first <= slot <= last)

    def ready(self, queue: str) -> int:
        """How many tasks wait in `queue` (of the default priority, as the benchmark's)."""
        [node] = [n for n in self.masters if n.label == self.master_of(queue)]
        return int(node.client.llen(QueueKeys(PREFIX, queue).ready))

    def flush(self) -> None:
        """Empty every master, and wait until its replica has the emptying too."""
        for node in self.masters:
            node.client.flushall()
            node.client.wait(1, 5000)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Every node's counters, by label."""
        return {node.label: snapshot(node.client) for node in self.nodes}

    def version(self) -> str:
        return str(self.nodes[0].client.info("server")["redis_version"])


def snapshot(client: redis.Redis) -> dict[str, int]:
    """`costs.snapshot` and the traffic: reads (requests, i.e. round trips, as Redis
    counts them), bytes in and out to clients, bytes out to replicas, and the memory of
    the replication buffers."""
    stats, memory = client.info("stats"), client.info("memory")
    repl_out = int(stats.get("total_net_repl_output_bytes", 0))
    return {
        **costs.snapshot(client),
        "reads": int(stats["total_reads_processed"]),
        "net_in": int(stats["total_net_input_bytes"]),
        # INFO's output bytes include those sent to replicas (measured on 7.0.15): less them
        "net_out": int(stats["total_net_output_bytes"]) - repl_out,
        "repl_out": repl_out,
        "repl_buffers": int(memory.get("mem_total_replication_buffers", 0)),
    }


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What a node did between two snapshots."""
    return {key: value - before.get(key, 0) for key, value in after.items()}


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)


@contextlib.contextmanager
def single(binary: str) -> Iterator[Deployment]:
    """A master and its replica."""
    with RedisServer(binary) as master:
        args = ("--replicaof", "127.0.0.1", str(master.port))
        with RedisServer(binary, extra_args=args) as replica:
            nodes = [
                Node("single", "single", master.port, _client(master.port)),
                Node("single replica", "single", replica.port, _client(replica.port)),
            ]
            while nodes[0].client.wait(1, 100) < 1:  # until the replica is in sync
                pass
            try:
                yield Deployment("single", master.url, nodes)
            finally:
                for node in nodes:
                    node.client.close()


@contextlib.contextmanager
def cluster(binary: str) -> Iterator[Deployment]:
    """The local Cluster of the tests: 3 masters, a replica each; every node stopped after."""
    with LocalCluster(binary) as running:
        shards = sorted(LocalCluster.slots(running.client(running.nodes[0])))
        nodes, slots = [], []
        for i, (first, last, master, *replicas) in enumerate(shards, start=1):
            label = f"m{i}"
            slots.append((int(first), int(last), label))
            nodes.append(Node(label, label, int(master[1]), _client(int(master[1]))))
            nodes += [Node(f"{label} replica", label, int(r[1]), _client(int(r[1])))
                      for r in replicas]  # fmt: skip
        try:
            yield Deployment("cluster", running.url, nodes, slots)
        finally:
            for node in nodes:
                node.client.close()


def spread_queues(deployment: Deployment, count: int, on: list[str] | None = None) -> list[str]:
    """`count` queue names, as many on each master of `on` (default: every master of
    `deployment`), so that the split measured is the Cluster's, not the luck of the names."""
    masters = on or [n.label for n in deployment.masters]
    if count % len(masters):
        raise ValueError(f"{count} queues do not spread evenly over {len(masters)} masters")
    per_master = count // len(masters)
    found: dict[str, list[str]] = {label: [] for label in masters}
    i = 0
    while any(len(names) < per_master for names in found.values()):
        name, i = f"q{i:03d}", i + 1
        names = found.get(deployment.master_of(name))
        if names is not None and len(names) < per_master:
            names.append(name)
    return sorted(name for names in found.values() for name in names)


def split_queue(deployment: Deployment, shards: int) -> str:
    """A queue name whose `shards` shards fall evenly on the masters of `deployment` (as
    `spread_queues`' names do), so that the split measured is the sharding's."""
    masters = [n.label for n in deployment.masters]
    if shards % len(masters):
        raise ValueError(f"{shards} shards do not spread evenly over {len(masters)} masters")
    for i in range(10_000):
        name = f"hot{i}"
        placed = [deployment.master_of(shard) for shard in shard_names(name, shards)]
        if all(placed.count(m) == shards // len(masters) for m in masters):
            return name
    raise ValueError(f"no queue name hot0 to hot9999 spreads {shards} shards evenly")


def describe(deployment: Deployment) -> list[dict[str, Any]]:
    """The nodes, for the results document."""
    ranges = {label: f"{first}-{last}" for first, last, label in deployment.slots}
    return [{"label": n.label, "master": n.master, "port": n.port,
             "slots": ranges.get(n.label, "") if n.is_master else ""}
            for n in deployment.nodes]  # fmt: skip
