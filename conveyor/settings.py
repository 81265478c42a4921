"""Settings, read from arguments first and `CONVEYOR_*` environment variables second.

The seeds' variable names are accepted too, below the `CONVEYOR_*` ones: REDIS_ADDR
(host:port) for the Redis URL and WORKER_CONCURRENCY for the concurrency. (QUEUE_NAME
and METRICS_PORT are options of `conveyor worker`, which reads them itself.)
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.redis_url import (
    CLUSTER_SCHEMES,
    SCHEMES,
    cluster_nodes,
    is_cluster_url,
    parse_redis_url,
)
from conveyor.shards import check_shards, parse_shards

#: Redis used when neither an argument nor CONVEYOR_REDIS_URL names one.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
ENV_PREFIX = "CONVEYOR_"
HOUR = 3600.0
DAY = 24 * HOUR
#: Most tasks one claim may lease (claim.lua passes one argument per task to a command).
MAX_CLAIM_BATCH = 1000
#: The seeds' variables, by the field they set when its CONVEYOR_* variable is not set.
ALIASES = {"redis_url": "REDIS_ADDR", "concurrency": "WORKER_CONCURRENCY"}
#: URL schemes Conveyor connects with (one server, a Sentinel group's master, a Cluster).
REDIS_SCHEMES = SCHEMES


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable of a Conveyor deployment; times are in seconds."""

    redis_url: str = DEFAULT_REDIS_URL
    #: TLS (a rediss:// URL): the CA file that signed the server's certificate (default:
    #: the system's), and this client's certificate and key when Redis asks for one.
    redis_tls_ca: str | None = None
    redis_tls_cert: str | None = None
    redis_tls_key: str | None = None
    #: First segment of every key, so several deployments can share one Redis.
    prefix: str = "conveyor"
    #: A claimed task returns to pending if its worker stops renewing the lease this long.
    lease_timeout: float = 30.0
    #: A task whose worker died this many times goes to the dead-letter queue.
    max_crashes: int = 3
    max_retries: int = 3
    #: Handler time limit; None means no limit.
    timeout: float | None = None
    retry_backoff_base: float = 1.0
    retry_backoff_cap: float = 300.0
    succeeded_retention: float = DAY
    failed_retention: float = 7 * DAY
    dead_retention: float = 7 * DAY
    cancelled_retention: float = DAY
    #: Oldest dead letters are dropped beyond this many per queue.
    dead_letter_max_size: int = 100_000
    idempotency_window: float = DAY
    #: Upper bound of any single Redis call; kept well below the lease.
    socket_timeout: float = 5.0
    connect_timeout: float = 5.0
    concurrency: int = 50
    #: Threads for sync handlers; None: one per unit of concurrency. Quick handlers run
    #: fastest on few (8-16: more only contend for the GIL), with a larger concurrency
    #: keeping claimed tasks queued for them; slow blocking ones need one each.
    threads: int | None = None
    #: How long a stopping worker lets in-flight tasks finish.
    shutdown_grace: float = 25.0
    #: Most tasks one claim round trip may lease.
    claim_batch: int = 100
    #: Replicas that must confirm every enqueue and every outcome (Redis WAIT) before it
    #: counts as done, so a failover cannot lose it; 0: none, as plain Redis does. A task
    #: enqueued with `durable=True` waits for at least one.
    min_replicas: int = 0
    #: How long such an enqueue or outcome waits for its replicas (see `replica_wait`).
    replica_timeout: float = 1.0
    #: Whether `redis_url` names one node of a Redis Cluster (a `redis+cluster://` URL
    #: says so itself).
    redis_cluster: bool = False
    #: Queues split into shards, by name, e.g. {"emails": 8} (CONVEYOR_SHARDS=emails:8):
    #: producers spread a queue's tasks over its shards and workers serve them all, so one
    #: queue can use several Cluster masters (see conveyor/shards.py). Producers and
    #: workers of a queue must agree.
    shards: dict[str, int] = field(default_factory=dict)
    log_json: bool = False
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        self._check_connection()
        check_cluster(self)
        object.__setattr__(self, "shards", check_shards(self.shards))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigurationError(f"{f.name} must be a finite number, got {value}")
        if self.lease_timeout <= 0:
            raise ConfigurationError("lease_timeout must be positive")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigurationError("timeout must be positive (or None for no limit)")
        if self.max_crashes < 1 or self.max_retries < 0 or self.concurrency < 1:
            raise ConfigurationError("max_crashes and concurrency must be >= 1, max_retries >= 0")
        if self.threads is not None and self.threads < 1:
            raise ConfigurationError("threads must be >= 1 (or None: as many as concurrency)")
        if self.min_replicas < 0 or self.replica_timeout <= 0:
            raise ConfigurationError("min_replicas must be >= 0 and replica_timeout positive")
        if not 1 <= self.claim_batch <= MAX_CLAIM_BATCH:
            raise ConfigurationError(f"claim_batch must be 1..{MAX_CLAIM_BATCH}")

    def _check_connection(self) -> None:
        """The URL, and TLS files only with a TLS URL, a certificate only with its key."""
        tls = url_is_tls(self.redis_url)
        tls_files = (self.redis_tls_ca, self.redis_tls_cert, self.redis_tls_key)
        if any(tls_files) and not tls:
            raise ConfigurationError(
                "redis_tls_ca/cert/key need a TLS URL: rediss:// (or rediss+sentinel://, "
                "rediss+cluster://)"
            )
        if bool(self.redis_tls_cert) != bool(self.redis_tls_key):
            raise ConfigurationError("redis_tls_cert and redis_tls_key go together")

    @property
    def cluster(self) -> bool:
        """Whether Redis is a Cluster: the transport routes each call to its slot's node."""
        return self.redis_cluster or is_cluster_url(self.redis_url)

    @property
    def heartbeat_interval(self) -> float:
        """Leases are renewed three times per lease period, so one lost beat is harmless."""
        return self.lease_timeout / 3

    @property
    def call_timeout(self) -> float:
        """Socket timeout that keeps a stalled call (with its retry) shorter than a lease."""
        return max(0.2, min(self.socket_timeout, self.lease_timeout / 4))

    @property
    def replica_wait(self) -> float:
        """`replica_timeout`, but at most half the call timeout: a wait for replicas must
        not look like a stalled Redis to the socket."""
        return min(self.replica_timeout, self.call_timeout / 2)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `CONVEYOR_<FIELD>` variables, then explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f.name, str(f.type), raw)
            elif f.name in ALIASES and env.get(ALIASES[f.name]) is not None:
                values[f.name] = _alias(f.name, str(f.type), env[ALIASES[f.name]])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def check_redis_url(url: str) -> None:
    """Refuse a URL no client could connect with, in one line instead of a traceback."""
    url_is_tls(url)


def url_is_tls(url: str) -> bool:
    """Whether `url` asks for TLS (`rediss://`, `rediss+sentinel://`, `rediss+cluster://`)."""
    if is_cluster_url(url):
        return cluster_nodes(url).tls
    return parse_redis_url(url).tls


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _alias(name: str, type_name: str, raw: str) -> Any:
    """Parse a seed variable: REDIS_ADDR is host:port (or a URL), the rest as the field."""
    variable = ALIASES[name]
    if name != "redis_url":
        return _parse(name, type_name, raw, variable)
    return redis_url_of_address(raw, variable)


def redis_url_of_address(address: str, variable: str = "REDIS_ADDR") -> str:
    """`host:port` (or `host`, or a redis:// URL) as a Redis URL, database 0."""
    text = address.strip()
    if "://" in text:
        return text
    host, colon, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not colon:
        host, port = text, "6379"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"{variable}={address!r}: expected host:port, e.g. redis:6379")
    if ":" in host and not host.startswith("["):  # a bare IPv6 address
        host = f"[{host}]"
    return f"redis://{host}:{port}/0"


def _parse(name: str, type_name: str, raw: str, variable: str | None = None) -> Any:
    """Parse one variable by its field's type; a value that does not fit is an error."""
    text = raw.strip().lower()
    try:
        if type_name.startswith("bool"):
            if text not in _TRUE | _FALSE:
                raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
            return text in _TRUE
        if type_name.endswith("| None") and text in {"", "none"}:
            return None
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
        if type_name.startswith("dict"):
            return parse_shards(raw)
    except ValueError as exc:
        variable = variable or f"{ENV_PREFIX}{name.upper()}"
        raise ConfigurationError(f"{variable}={raw!r}: {exc}") from None
    return raw


def check_cluster(settings: Settings) -> None:
    """Refuse what a Redis Cluster cannot be: a Sentinel group, or a unix socket."""
    if settings.redis_cluster and not settings.redis_url.startswith(
        ("redis://", "rediss://", *(f"{s}://" for s in CLUSTER_SCHEMES))
    ):
        raise ConfigurationError(
            "CONVEYOR_REDIS_CLUSTER needs a redis:// (or rediss://) URL of a node"
        )
