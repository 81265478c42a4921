"""Settings: CONVEYOR_* variables, explicit overrides, and the values that are refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from conveyor.errors import ConfigurationError
from conveyor.redis_url import ClusterAddress, cluster_nodes
from conveyor.settings import Settings


def test_defaults_without_any_variable() -> None:
    assert Settings.from_env({}) == Settings()
    settings = Settings()
    assert (settings.prefix, settings.lease_timeout, settings.timeout) == ("conveyor", 30.0, None)
    assert settings.heartbeat_interval == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("variable", "raw", "field", "value"),
    [
        ("CONVEYOR_MAX_CRASHES", "5", "max_crashes", 5),
        ("CONVEYOR_CONCURRENCY", " 12 ", "concurrency", 12),
        ("CONVEYOR_THREADS", "8", "threads", 8),
        ("CONVEYOR_THREADS", "none", "threads", None),
        ("CONVEYOR_DEAD_LETTER_MAX_SIZE", "100", "dead_letter_max_size", 100),
        ("CONVEYOR_LEASE_TIMEOUT", "2.5", "lease_timeout", 2.5),
        ("CONVEYOR_LEASE_TIMEOUT", "10", "lease_timeout", 10.0),
        ("CONVEYOR_SUCCEEDED_RETENTION", "1e3", "succeeded_retention", 1000.0),
        ("CONVEYOR_TIMEOUT", "7.5", "timeout", 7.5),
        ("CONVEYOR_TIMEOUT", "none", "timeout", None),
        ("CONVEYOR_TIMEOUT", "None", "timeout", None),
        ("CONVEYOR_TIMEOUT", "", "timeout", None),
        ("CONVEYOR_LOG_JSON", "1", "log_json", True),
        ("CONVEYOR_LOG_JSON", "true", "log_json", True),
        ("CONVEYOR_LOG_JSON", "Yes", "log_json", True),
        ("CONVEYOR_LOG_JSON", " on ", "log_json", True),
        ("CONVEYOR_LOG_JSON", "0", "log_json", False),
        ("CONVEYOR_LOG_JSON", "false", "log_json", False),
        ("CONVEYOR_LOG_JSON", "off", "log_json", False),
        ("CONVEYOR_LOG_JSON", "no", "log_json", False),
        ("CONVEYOR_PREFIX", "staging", "prefix", "staging"),
        ("CONVEYOR_REDIS_URL", "redis://r:6380/2", "redis_url", "redis://r:6380/2"),
        ("CONVEYOR_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
    ],
)
def test_from_env_parses_each_type(variable: str, raw: str, field: str, value: Any) -> None:
    settings = Settings.from_env({variable: raw})
    assert getattr(settings, field) == value
    assert type(getattr(settings, field)) is type(value)
    # nothing else changed
    others = {f.name for f in dataclasses.fields(Settings)} - {field}
    assert all(getattr(settings, name) == getattr(Settings(), name) for name in others)


def test_from_env_reads_many_variables_and_ignores_others() -> None:
    environ = {
        "CONVEYOR_LEASE_TIMEOUT": "4",
        "CONVEYOR_MAX_RETRIES": "0",
        "CONVEYOR_SHUTDOWN_GRACE": "0.5",
        "CONVEYOR_NOT_A_SETTING": "whatever",
        "LEASE_TIMEOUT": "99",
    }
    settings = Settings.from_env(environ)
    assert (settings.lease_timeout, settings.max_retries, settings.shutdown_grace) == (4.0, 0, 0.5)


def test_overrides_beat_variables_and_none_overrides_are_ignored() -> None:
    environ = {"CONVEYOR_LEASE_TIMEOUT": "4", "CONVEYOR_PREFIX": "env"}
    settings = Settings.from_env(environ, lease_timeout=9, prefix=None)
    assert (settings.lease_timeout, settings.prefix) == (9, "env")


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_CLAIM_BATCH", "7")
    assert Settings.from_env().claim_batch == 7


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("CONVEYOR_MAX_CRASHES", "three"),
        ("CONVEYOR_MAX_CRASHES", "2.5"),
        ("CONVEYOR_CONCURRENCY", ""),
        ("CONVEYOR_CLAIM_BATCH", "none"),
        ("CONVEYOR_LEASE_TIMEOUT", "30s"),
        ("CONVEYOR_TIMEOUT", "soon"),
        ("CONVEYOR_SOCKET_TIMEOUT", "1,5"),
        ("CONVEYOR_LEASE_TIMEOUT", "none"),  # only an optional setting may be None
        ("CONVEYOR_SHUTDOWN_GRACE", ""),
        ("CONVEYOR_LOG_JSON", "maybe"),
        ("CONVEYOR_LOG_JSON", "ture"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize(
    "changes",
    [
        {"lease_timeout": 0},
        {"lease_timeout": -1.0},
        {"lease_timeout": float("nan")},
        {"max_crashes": 0},
        {"max_retries": -1},
        {"concurrency": 0},
        {"threads": 0},
        {"claim_batch": 0},
        {"claim_batch": 1001},
    ],
)
def test_invalid_values_are_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Settings(**changes)
    with pytest.raises(ConfigurationError):
        Settings().replace(**changes)
    environ = {f"CONVEYOR_{name.upper()}": str(value) for name, value in changes.items()}
    with pytest.raises(ConfigurationError):
        Settings.from_env(environ)


def test_settings_are_immutable_and_replace_makes_a_copy() -> None:
    settings = Settings()
    changed = settings.replace(lease_timeout=3.0)
    assert (settings.lease_timeout, changed.lease_timeout) == (30.0, 3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lease_timeout = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("lease", "socket_timeout", "call_timeout"),
    [(30.0, 5.0, 5.0), (8.0, 5.0, 2.0), (0.4, 5.0, 0.2), (30.0, 1.0, 1.0)],
)
def test_a_redis_call_stays_well_inside_a_lease(
    lease: float, socket_timeout: float, call_timeout: float
) -> None:
    settings = Settings(lease_timeout=lease, socket_timeout=socket_timeout)
    assert settings.call_timeout == pytest.approx(call_timeout)
    assert settings.heartbeat_interval == pytest.approx(lease / 3)


# -- the seeds' variables ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("redis:6379", "redis://redis:6379/0"),
        ("127.0.0.1:6380", "redis://127.0.0.1:6380/0"),
        ("redis", "redis://redis:6379/0"),
        ("[::1]:6379", "redis://[::1]:6379/0"),
        ("redis://r:6380/2", "redis://r:6380/2"),
    ],
)
def test_redis_addr_is_a_host_and_port(address: str, url: str) -> None:
    assert Settings.from_env({"REDIS_ADDR": address}).redis_url == url


@pytest.mark.parametrize("address", ["r:port", ":6379", "r:0", ""])
def test_a_bad_redis_addr_is_refused_by_its_name(address: str) -> None:
    with pytest.raises(ConfigurationError, match=r"REDIS_ADDR=.*expected host:port"):
        Settings.from_env({"REDIS_ADDR": address})


def test_worker_concurrency_sets_the_concurrency() -> None:
    assert Settings.from_env({"WORKER_CONCURRENCY": "7"}).concurrency == 7
    with pytest.raises(ConfigurationError, match="WORKER_CONCURRENCY='x'"):
        Settings.from_env({"WORKER_CONCURRENCY": "x"})


def test_the_conveyor_names_win_over_the_seeds() -> None:
    settings = Settings.from_env(
        {
            "REDIS_ADDR": "seed:6379",
            "CONVEYOR_REDIS_URL": "redis://mine:6380/1",
            "WORKER_CONCURRENCY": "7",
            "CONVEYOR_CONCURRENCY": "9",
        }
    )
    assert (settings.redis_url, settings.concurrency) == ("redis://mine:6380/1", 9)
    # and an explicit argument wins over both
    assert Settings.from_env({"REDIS_ADDR": "seed:6379"}, redis_url="redis://arg/0").redis_url == (
        "redis://arg/0"
    )


def test_a_cluster_url_names_its_startup_nodes_and_credentials() -> None:
    settings = Settings(redis_url="redis+cluster://app:p%40ss@10.0.0.1:7000,[::1]:7001/0")
    assert settings.cluster
    assert cluster_nodes(settings.redis_url) == ClusterAddress(
        (("10.0.0.1", 7000), ("::1", 7001)), "app", "p@ss"
    )


def test_conveyor_redis_cluster_makes_a_plain_url_a_cluster_node() -> None:
    environ = {"CONVEYOR_REDIS_URL": "redis://10.0.0.1:7000", "CONVEYOR_REDIS_CLUSTER": "true"}
    assert Settings.from_env(environ).cluster
    assert not Settings(redis_url="redis://10.0.0.1:7000").cluster


@pytest.mark.parametrize(
    "url",
    ["redis+cluster://", "redis+cluster://host", "redis+cluster://h:port", "redis+cluster://h:1/2"],
)
def test_a_bad_cluster_url_is_one_line(url: str) -> None:
    with pytest.raises(ConfigurationError, match="bad Redis URL") as raised:
        Settings(redis_url=url)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("url", ["unix:///tmp/redis.sock", "redis+sentinel://h:26379/mymaster"])
def test_conveyor_redis_cluster_needs_a_plain_url_of_a_node(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"needs a redis:// \(or rediss://\) URL"):
        Settings(redis_url=url, redis_cluster=True)


def test_a_bad_cluster_url_hides_its_password() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings(redis_url="redis+cluster://app:secret@h:1/3")
    assert "secret" not in str(raised.value) and "app:***@h:1" in str(raised.value)


def test_a_cluster_takes_tls_files_and_min_replicas() -> None:
    settings = Settings(
        redis_url="rediss+cluster://10.0.0.1:7000", redis_tls_ca="/ca.pem", min_replicas=1
    )
    assert settings.cluster and cluster_nodes(settings.redis_url).tls
    assert Settings(redis_url="rediss://10.0.0.1:7000", redis_cluster=True).cluster
    with pytest.raises(ConfigurationError, match="need a TLS URL"):
        Settings(redis_url="redis+cluster://10.0.0.1:7000", redis_tls_ca="/ca.pem")
