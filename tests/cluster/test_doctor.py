"""`conveyor doctor` on a real Cluster reads INFO and CONFIG of every master: one master
with an evicting policy is named, the others are not."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from conveyor import Conveyor
from conveyor.broker.transport import ReplyError
from conveyor.settings import Settings
from tests.cli.conftest import _invoker
from tests.support.cluster import LocalCluster

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def evicting(cluster: LocalCluster, port: int) -> Iterator[None]:
    """One node set to allkeys-lru for the block (the session's Cluster is shared)."""
    node = next(n for n in cluster.nodes if n.port == port)
    with contextlib.closing(cluster.client(node)) as client:
        before = str(client.config_get("maxmemory-policy")["maxmemory-policy"])
        client.config_set("maxmemory-policy", "allkeys-lru")
        try:
            yield
        finally:
            client.config_set("maxmemory-policy", before)


def masters(cluster: LocalCluster) -> list[str]:
    with contextlib.closing(cluster.client(cluster.running()[0])) as client:
        found = {f"127.0.0.1:{int(master[1])}" for _, _, master, *_ in cluster.slots(client)}
    return sorted(found)


def _by_check(output: str) -> dict[str, str]:
    """doctor's lines by the check they report (`OK    eviction ...`); fails showing the
    whole output if a line has no check's name."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert all(len(line.split()) > 1 for line in lines), output
    return {line.split()[1]: line for line in lines}


def test_doctor_names_the_one_master_whose_policy_evicts(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    invoke = _invoker(cluster.url, cluster_settings.prefix)
    addresses = masters(cluster)
    assert len(addresses) == 3
    healthy = invoke("doctor")
    lines = _by_check(healthy.output)
    assert healthy.exit_code == 0, healthy.output
    assert lines["eviction"].startswith("OK") and "(all 3 masters)" in lines["eviction"]
    unsafe = addresses[1]
    with evicting(cluster, int(unsafe.rpartition(":")[2])):
        doctor = invoke("doctor")
    assert doctor.exit_code != 0, doctor.output
    lines = _by_check(doctor.output)
    assert lines["eviction"].startswith("FAIL"), doctor.output
    assert f"{unsafe}: maxmemory-policy allkeys-lru" in lines["eviction"]
    assert all(a not in lines["eviction"] for a in addresses if a != unsafe)
    assert "CONFIG SET maxmemory-policy noeviction" in doctor.output
    assert lines["version"].startswith("OK") and "(all 3 masters)" in lines["version"]


def test_a_master_the_cluster_does_not_have_is_refused_not_asked_elsewhere(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    app = Conveyor(settings=cluster_settings)
    try:
        known = masters(cluster)[0]
        assert int(app.inspector.server_info(known)["tcp_port"]) == int(known.rpartition(":")[2])
        with pytest.raises(ReplyError, match=r"no master 127\.0\.0\.1:1 in the Cluster"):
            app.inspector.server_config("127.0.0.1:1")
    finally:
        app.close()
