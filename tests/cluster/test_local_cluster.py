"""The local Cluster fixture itself: three masters share the slots, each with a replica."""

from __future__ import annotations

import contextlib

import pytest

from tests.support.cluster import LocalCluster

pytestmark = pytest.mark.slow


def test_three_masters_serve_every_slot_each_with_a_replica(cluster: LocalCluster) -> None:
    with contextlib.closing(cluster.client(cluster.nodes[0])) as client:
        shards = cluster.slots(client)
    assert sum(end - start + 1 for start, end, *_ in shards) == 16384
    masters = {master[1] for _, _, master, *_ in shards}
    assert len(masters) == 3
    assert all(len(shard) >= 4 for shard in shards)  # start, end, master, a replica
