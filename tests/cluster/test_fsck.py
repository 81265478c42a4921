"""fsck on a real Cluster: SCAN reads one node, so a planted inconsistency on a queue of
each master is found, and repaired, only if every master is scanned."""

from __future__ import annotations

import contextlib

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.fsck import Finding
from conveyor.broker.keys import GlobalKeys
from conveyor.schedule import Schedule
from conveyor.settings import Settings
from tests.support.cluster import LocalCluster, spread_queues
from tests.support.keyspace import entry

pytestmark = pytest.mark.slow


def test_an_unregistered_queue_and_an_unindexed_task_on_every_master_are_found(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    prefix = cluster_settings.prefix
    queues = spread_queues(cluster, prefix)
    keys = GlobalKeys(prefix)
    app = Conveyor(settings=cluster_settings)
    node = cluster.nodes[0]
    seeding = redis.RedisCluster(host="127.0.0.1", port=node.port)
    try:
        ids = {q: app.enqueue("job", queue=q).id for q in queues}
        app.inspector.schedules.upsert(Schedule.build("hourly", "job", every=3600))
        seeding.zrem(keys.schedules, "hourly")  # its own slot, on some master
        for queue, task_id in ids.items():  # off the registry, and out of its ready list
            seeding.srem(keys.queues, queue)
            seeding.lrem(keys.queue(queue).ready, 0, entry(task_id))
        expected = sorted(
            [Finding(q, keys.queues, "queue missing from the registry", "") for q in queues]
            + [Finding(q, f"record {i}", "unindexed", "") for q, i in ids.items()]
            + [
                Finding(
                    "{schedules}",
                    "schedule hourly",
                    "schedule missing from the index: it never fires",
                    "",
                )
            ],
            key=str,
        )
        assert sorted(app.inspector.fsck(), key=str) == expected
        repaired = app.inspector.fsck(repair=True)
        assert {f.action for f in repaired} == {"registered", "re-indexed", "indexed"}
        assert len(repaired) == 7
        assert app.inspector.fsck() == []
        assert sorted(app.inspector.queue_names()) == sorted(queues)
        assert {s.name: s.pending for s in app.inspector.queue_stats()} == dict.fromkeys(queues, 1)
    finally:
        with contextlib.suppress(redis.RedisError):
            seeding.close()
        app.close()
