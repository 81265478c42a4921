"""The asyncio cluster client packs commands with hiredis, on every node, as the standalone
asyncio client does, and what it sends arrives intact."""

from __future__ import annotations

import pytest
import redis

from conveyor.broker.cluster_routing import async_cluster_client
from conveyor.broker.connection import _HiredisPacking
from conveyor.settings import Settings
from tests.support.cluster import LocalCluster

pytestmark = pytest.mark.slow


async def test_every_node_packs_with_hiredis_startup_or_discovered(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    # one startup node: the other five are discovered from its slot map
    first = cluster.nodes[0].port
    settings = cluster_settings.replace(redis_url=f"redis+cluster://127.0.0.1:{first}")
    client = async_cluster_client(settings)
    try:
        await client.initialize()
        nodes = client.get_nodes()
        assert len(nodes) == len(cluster.nodes)
        for node in nodes:
            assert issubclass(node.connection_class, _HiredisPacking), node.name
    finally:
        await client.aclose()


async def test_values_of_every_type_arrive_intact_on_every_master(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    client = async_cluster_client(cluster_settings)
    keys = [f"{cluster_settings.prefix}:{{q{i}}}:packed" for i in range(12)]
    assert len({client.keyslot(k) for k in keys}) > 1
    values: list[str | bytes | int | float] = ["é €", b"\x00\xff", -7, 0.25] * 3
    # as Redis stores them: UTF-8, the bytes themselves, and numbers in decimal
    stored = ["é €".encode(), b"\x00\xff", b"-7", b"0.25"] * 3
    try:
        pipe = client.pipeline()
        for key, value in zip(keys, values, strict=True):
            pipe.set(key, value)
        assert await pipe.execute() == [True] * len(keys)
        assert await client.mget_nonatomic(keys) == stored
        with pytest.raises(redis.DataError):
            await client.set(keys[0], {"not": "packable"})  # type: ignore[arg-type]
        assert await client.get(keys[0]) == "é €".encode()
    finally:
        await client.delete(*keys)
        await client.aclose()
