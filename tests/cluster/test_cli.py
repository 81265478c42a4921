"""`conveyor queues` and `doctor` on a real Cluster: which master holds which queue."""

from __future__ import annotations

import json

import pytest

from conveyor import Conveyor
from conveyor.settings import Settings
from tests.cli.conftest import _invoker
from tests.support.cluster import LocalCluster, spread_queues

pytestmark = pytest.mark.slow


def test_queues_and_doctor_name_the_master_of_each_queue(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    queues = spread_queues(cluster, cluster_settings.prefix)
    app = Conveyor(settings=cluster_settings)
    try:
        for queue in queues:
            app.enqueue("anything", queue=queue)
    finally:
        app.close()
    invoke = _invoker(cluster.url, cluster_settings.prefix)
    expected = {
        q: f"127.0.0.1:{cluster.master_of(f'{cluster_settings.prefix}:{{{q}}}:x').port}"
        for q in queues
    }
    listed = invoke("queues", "--json")
    assert listed.exit_code == 0, listed.output
    assert {q["name"]: q["node"] for q in json.loads(listed.output)} == expected
    table = invoke("queues")
    assert table.output.splitlines()[0].endswith("paused  node")
    for line in table.output.splitlines()[1:]:
        assert line.split()[-1] == expected[line.split()[0]]
    doctor = invoke("doctor")
    assert doctor.exit_code == 0, doctor.output
    lines = {x.split()[1]: x for x in doctor.output.splitlines() if x.strip()}
    assert lines["connection"].startswith("OK") and "Redis Cluster" in lines["connection"]
    assert lines["permissions"].startswith("OK")  # probed on the node of its probe key
    assert "3 masters" in lines["cluster"]
    assert all(address in lines["cluster"] for address in expected.values())
