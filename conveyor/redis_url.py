"""Redis URLs: one server (`redis://`, `rediss://`, `unix://`) or the master of a Sentinel
group (`redis+sentinel://`, `rediss+sentinel://`), parsed once into a `RedisTarget`; the
nodes of a Redis Cluster (`redis+cluster://`, `rediss+cluster://`) into a `ClusterAddress`.

Pure, below the broker, so Settings can refuse a bad URL in one line before any client is
built (redis-py's own parser has no Sentinel form and answers a typo with a traceback).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from conveyor.errors import ConfigurationError

#: URL schemes of one server, as redis-py reads them.
SERVER_SCHEMES = ("redis", "rediss", "unix")
#: URL schemes of a Sentinel group's master; `rediss+` is TLS to the sentinels and master.
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
#: The scheme of a Redis Cluster's URL: `redis+cluster://[user:password@]host:port[,...]`.
CLUSTER_SCHEME = "redis+cluster"
#: A Cluster's URL schemes; `rediss+` is TLS to every node.
CLUSTER_SCHEMES = (CLUSTER_SCHEME, "rediss+cluster")
SCHEMES = SERVER_SCHEMES + SENTINEL_SCHEMES + CLUSTER_SCHEMES
#: Port of a sentinel named without one.
SENTINEL_PORT = 26379
#: Query options of a Sentinel URL: the sentinels' own credentials, when they need some.
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where Redis is: one server (`url`), or the master `service` that `sentinels` name."""

    url: str
    tls: bool
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    #: the master's credentials (a Sentinel URL's user:password)
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    @property
    def is_sentinel(self) -> bool:
        """Whether the master is found through Sentinel."""
        return bool(self.sentinels)

    def describe(self) -> str:
        """Where, in words, for errors and logs (never with a password)."""
        if self.is_sentinel:
            nodes = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"master {self.service!r} of the sentinels {nodes}"
        parts = urlsplit(self.url)
        return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"


def parse_redis_url(url: str) -> RedisTarget:
    """The target of `url`; ConfigurationError, in one line, for a URL no client could use."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in SENTINEL_SCHEMES:
        return _sentinel(url, scheme)
    _check_server_url(url)
    return RedisTarget(url=url, tls=scheme == "rediss")


def _bad(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"bad Redis URL {_masked(url)!r}: {why}")


def _masked(url: str) -> str:
    """`url` with the password of its user part hidden."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.partition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':')[0]}:***@{hosts}"


def _check_server_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number in 0..65535
    except ValueError as exc:
        raise _bad(url, str(exc)) from None
    if parts.scheme not in SERVER_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in SCHEMES)
        raise _bad(url, f"it must start with {schemes} (e.g. redis://127.0.0.1:6379/0)")
    if parts.scheme == "unix":
        if not parts.path:
            raise _bad(url, "unix:// needs a socket path")
        return
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise _bad(url, "the database must be a number")
    if port == 0:
        raise _bad(url, "port 0")


def _sentinel(url: str, scheme: str) -> RedisTarget:
    """`redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?options]`."""
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise _bad(url, "name the master's service after the sentinels, e.g. .../mymaster")
    if db and not db.isdigit():
        raise _bad(url, "the database must be a number")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(SENTINEL_OPTIONS))
    if unknown:
        raise _bad(url, f"unknown option {unknown[0]!r} (known: {', '.join(SENTINEL_OPTIONS)})")
    return RedisTarget(
        url=url,
        tls=scheme.startswith("rediss"),
        sentinels=tuple(_node(url, node) for node in hosts.split(",")),
        service=unquote(service),
        db=int(db or 0),
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    if not colon:  # redis://secret@host means a password, as redis-py reads it
        return None, unquote(user) or None
    return unquote(user) or None, unquote(password) or None


def _node(url: str, node: str) -> tuple[str, int]:
    """One sentinel's `host[:port]` (an IPv6 address in brackets)."""
    if not node:
        raise _bad(url, "name at least one sentinel as host:port")
    if node.startswith("["):
        host, _, tail = node[1:].partition("]")
        port = tail.removeprefix(":")
    else:
        host, colon, port = node.rpartition(":")
        if not colon:
            host, port = node, ""
    if not host or (port and not port.isdigit()) or (port and not 0 < int(port) < 65536):
        raise _bad(url, f"sentinel {node!r} is not host:port")
    return host, int(port or SENTINEL_PORT)


# -- Redis Cluster ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterAddress:
    """What a `redis+cluster://` URL says: the nodes to start from, the credentials, and
    whether every node is reached over TLS (`rediss+cluster://`)."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False


def is_cluster_url(url: str) -> bool:
    """Whether `url` names the nodes of a Redis Cluster."""
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES and "://" in url


def cluster_nodes(url: str) -> ClusterAddress:
    """The startup nodes of a `redis+cluster://` URL; any one reachable node is enough,
    the client learns the rest from it. A Cluster has one database: no path but `/0`."""
    scheme, _, rest = url.partition("://")
    credentials, at, hosts = rest.rpartition("@")
    hosts, _, database = hosts.partition("/")
    if database not in ("", "0"):
        raise _bad(url, "a Redis Cluster has database 0 only")
    nodes = [_cluster_node(url, address) for address in filter(None, hosts.split(","))]
    if not nodes:
        raise _bad(url, "name at least one node as host:port")
    user, colon, password = credentials.partition(":") if at else ("", "", "")
    return ClusterAddress(
        tuple(nodes),
        unquote(user) or None,
        unquote(password) if colon else None,
        tls=scheme.lower().startswith("rediss"),
    )


def _cluster_node(url: str, address: str) -> tuple[str, int]:
    """One node's `host:port` (an IPv6 address in brackets); the port is required."""
    try:
        parts = urlsplit(f"//{address}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise _bad(url, str(exc)) from None
    if not host or not port:
        raise _bad(url, f"expected host:port, not {address!r}")
    return host, port
