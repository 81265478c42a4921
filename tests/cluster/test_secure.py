"""A TLS-only Redis Cluster (clients, bus and replication), used by an ACL user made by the
documented least-privilege line on every node: producers, a worker (success, retry, dead
letter, a lease taken back), the Inspector and doctor do their work, and no node's ACL
LOG then holds a refusal but the best-effort reads; a client that does not trust the
nodes' CA is refused in one line."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from conveyor import Conveyor, Retry, TaskState
from conveyor.broker.acl import acl_setuser
from conveyor.errors import BrokerUnavailableError
from conveyor.settings import Settings
from conveyor.tools.doctor import Doctor, Verdict
from tests.e2e.test_acl import BEST_EFFORT
from tests.support.cluster import LocalCluster, spread_queues
from tests.support.tls import TlsFiles
from tests.support.worker import running_worker, wait_all

pytestmark = pytest.mark.slow


@pytest.fixture
def user(tls_cluster: tuple[LocalCluster, TlsFiles], prefix: str) -> Iterator[str]:
    """An ACL user made on every node by the documented line for this test's prefix."""
    cluster, _ = tls_cluster
    name = "u" + uuid.uuid4().hex[:8]
    cluster.on_every_node(*acl_setuser(prefix, name, "secret").split())
    cluster.on_every_node("ACL", "LOG", "RESET")
    yield name
    cluster.on_every_node("ACL", "DELUSER", name)


def secure_settings(
    cluster: LocalCluster, files: TlsFiles, prefix: str, user: str, ca: str | None
) -> Settings:
    return Settings(
        redis_url=cluster.url.replace("://", f"://{user}:secret@"),
        redis_tls_ca=ca,
        redis_tls_cert=str(files.client_cert),
        redis_tls_key=str(files.client_key),
        prefix=prefix,
        lease_timeout=2.0,
        retry_backoff_base=0.01,
        retry_backoff_cap=0.05,
    )


def refused(cluster: LocalCluster, user: str) -> set[str]:
    """What the ACL LOG of any node says `user` was refused."""
    found = set()
    for node in cluster.running():
        with cluster.client(node) as client:
            found |= {str(e["object"]) for e in client.acl_log(128) if e["username"] == user}
    return found


async def test_real_work_on_a_tls_cluster_under_the_least_privilege_acl(
    tls_cluster: tuple[LocalCluster, TlsFiles], prefix: str, user: str
) -> None:
    cluster, files = tls_cluster
    app = Conveyor(settings=secure_settings(cluster, files, prefix, user, str(files.ca)))
    queues = spread_queues(cluster, prefix)
    tries: dict[str, int] = {}

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="flaky", max_retries=2)
    def flaky(queue: str) -> str:
        tries[queue] = tries.get(queue, 0) + 1
        if tries[queue] == 1:
            raise Retry(delay=0.01)
        return queue

    @app.task(name="doomed", max_retries=0)
    def doomed() -> None:
        raise ValueError("always")

    try:
        # a task claimed by a worker that never comes back: its lease runs out (2 s)
        lost = app.enqueue("add", 3, 4, queue=queues[0])
        broker = app.async_broker()
        claim = await broker.run(broker.ops.claim(queues[0], 1, "gone"))
        assert [t.id for t in claim.tasks] == [lost.id]
        done = [app.enqueue("add", 1, i, queue=q) for i, q in enumerate(queues)]
        done += [await app.enqueue_async("flaky", q, queue=q) for q in queues]
        done += app.enqueue_many([app.message("add", 2, i, queue=queues[i % 3]) for i in range(9)])
        dead = [app.enqueue("doomed", queue=q) for q in queues]
        async with running_worker(app, ",".join(queues), concurrency=4):
            await wait_all([*done, lost], TaskState.SUCCEEDED, 15)
            await wait_all(dead, TaskState.DEAD, 15)
        assert lost.result() == 7 and sorted(tries.values()) == [2, 2, 2]
        stats = {s.name: s for s in app.inspector.queue_stats()}
        assert {q: (stats[q].pending, stats[q].dead) for q in queues} == {q: (0, 1) for q in queues}
        checks = {c.name: c for c in Doctor(app.inspector).run()}
        assert checks["permissions"].verdict == Verdict.OK, checks["permissions"]
        assert "Redis Cluster" in checks["connection"].detail
        assert "TLS on" in checks["connection"].detail
    finally:
        await app.aclose()
        app.close()
    assert refused(cluster, user) <= BEST_EFFORT


@pytest.mark.parametrize("trusted", ["none", "other"])
async def test_a_client_that_does_not_trust_the_nodes_ca_is_refused_in_one_line(
    tls_cluster: tuple[LocalCluster, TlsFiles], prefix: str, user: str, trusted: str
) -> None:
    cluster, files = tls_cluster
    ca = None if trusted == "none" else str(files.other_ca)
    app = Conveyor(settings=secure_settings(cluster, files, prefix, user, ca))
    try:
        with pytest.raises(BrokerUnavailableError, match="certificate verify failed") as sync:
            app.enqueue("add", 1, 2)
        with pytest.raises(BrokerUnavailableError, match="certificate verify failed") as asyncs:
            await app.enqueue_async("add", 1, 2)
    finally:
        await app.aclose()
        app.close()
    for raised in (sync, asyncs):
        assert str(raised.value).startswith("Redis Cluster at 127.0.0.1:")
        assert "\n" not in str(raised.value) and "secret" not in str(raised.value)
