"""Redis URLs: each mode's form parsed, each mistake refused in one clear line."""

from __future__ import annotations

import pytest

from conveyor.errors import ConfigurationError
from conveyor.redis_url import (
    ClusterAddress,
    RedisTarget,
    cluster_nodes,
    is_cluster_url,
    parse_redis_url,
)
from conveyor.settings import Settings


def test_a_server_url_is_one_server() -> None:
    assert parse_redis_url("redis://h:6380/2") == RedisTarget("redis://h:6380/2", tls=False)
    assert parse_redis_url("rediss://h:6380/0").tls
    assert parse_redis_url("unix:///tmp/r.sock").describe() == "/tmp/r.sock"


def test_a_sentinel_url_names_the_sentinels_service_db_and_credentials() -> None:
    url = "redis+sentinel://app:s%40cret@10.0.0.1:26380,[::1],s3/mymaster/3?sentinel_password=x"
    target = parse_redis_url(url)
    assert target.sentinels == (("10.0.0.1", 26380), ("::1", 26379), ("s3", 26379))
    assert (target.service, target.db, target.tls) == ("mymaster", 3, False)
    assert (target.username, target.password) == ("app", "s@cret")
    assert (target.sentinel_username, target.sentinel_password) == (None, "x")
    assert "mymaster" in target.describe() and "s@cret" not in target.describe()
    assert parse_redis_url("rediss+sentinel://h/m").tls


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h1:1,h2:2", "name the master's service"),
        ("redis+sentinel://h1:1,h2:2/", "name the master's service"),
        ("redis+sentinel://h1:1,,h2/m", "name at least one sentinel"),
        ("redis+sentinel://h1:port/m", "sentinel 'h1:port' is not host:port"),
        ("redis+sentinel://h1:70000/m", "is not host:port"),
        ("redis+sentinel://h1/m/db", "the database must be a number"),
        ("redis+sentinel://h1/m?password=x", "unknown option 'password'"),
        ("redis+cluster://h1/m", "a Redis Cluster has database 0 only"),
        ("rediss+cluster://h1:1,h2/0", "expected host:port, not 'h2'"),
        ("redis://h:1,h:2/0", "bad Redis URL"),
    ],
)
def test_a_bad_url_is_one_clear_line(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match="bad Redis URL") as caught:
        Settings(redis_url=url)
    assert why in str(caught.value)


def test_a_cluster_url_names_its_nodes_credentials_and_tls() -> None:
    url = "rediss+cluster://app:p%40ss@10.0.0.1:7000,[::1]:7001"
    assert is_cluster_url(url) and not is_cluster_url("redis://h:1/0")
    assert cluster_nodes(url) == ClusterAddress(
        (("10.0.0.1", 7000), ("::1", 7001)), "app", "p@ss", tls=True
    )
    assert not cluster_nodes("redis+cluster://h:1").tls


def test_a_bad_url_never_shows_its_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(redis_url="redis+sentinel://u:hunter2@h1:x/m")
    assert "hunter2" not in str(caught.value)


def test_tls_files_need_a_tls_url_and_go_in_pairs() -> None:
    with pytest.raises(ConfigurationError, match="need a TLS URL"):
        Settings(redis_url="redis://h/0", redis_tls_ca="ca.pem")
    with pytest.raises(ConfigurationError, match="go together"):
        Settings(redis_url="rediss://h/0", redis_tls_cert="c.pem")
    env = {"CONVEYOR_REDIS_URL": "rediss://h/0", "CONVEYOR_REDIS_TLS_CA": "/ca.pem"}
    assert Settings.from_env(env).redis_tls_ca == "/ca.pem"
