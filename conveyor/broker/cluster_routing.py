"""What the Redis Cluster transport decides without I/O: which calls a cluster pipeline
can route and which go one by one, a forgotten script sent again as EVAL, an XREAD split
per slot, what a reply that means "unavailable" looks like; and its two clients."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import quote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.crc import key_slot
from redis.exceptions import ClusterError, NoScriptError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from conveyor.broker.connection import (
    CALL_RETRIES,
    _backoff,
    _options,
    _packing_with_hiredis,
    _tls,
)
from conveyor.broker.scripts import Call
from conveyor.broker.steps import Steps
from conveyor.broker.transport import MEMORY, UNAVAILABLE, first_error
from conveyor.errors import BrokerFullError, BrokerUnavailableError
from conveyor.redis_url import ClusterAddress, cluster_nodes, is_cluster_url
from conveyor.settings import Settings

#: Errors that mean the Cluster (or the node of a slot) cannot answer now: TRYAGAIN too,
#: once a migrating slot kept it up longer than MIGRATION_WAIT.
CLUSTER_UNAVAILABLE = (*UNAVAILABLE, ClusterError, RedisClusterException, TryAgainError)
#: Commands without a key: a cluster pipeline cannot route them, so they go one by one.
KEYLESS = frozenset(
    {"TIME", "PING", "INFO", "CONFIG", "CLIENT", "MEMORY", "DBSIZE", "CLUSTER", "ACL", "SCAN"}
)
#: How often a blocking XREAD over streams of several slots looks again (seconds).
POLL_EVERY = 0.1
#: Longest a call is sent again while its slot migrates (seconds), and the first pause.
MIGRATION_WAIT = 10.0
MIGRATION_PAUSE = 0.02


# -- routing (pure) -----------------------------------------------------------------------


def is_keyless(call: Call) -> bool:
    """Whether `call` has no key a cluster pipeline could route it by."""
    if call.route is not None or call.node is not None:
        return True
    return str(call.args[0]).split()[0].upper() in KEYLESS


def target(client: Any, call: Call) -> Any:
    """The node of either cluster client that answers the keyless `call`: the master it
    names, that of its route's key, or the client's default node. None for a master the
    client does not know (a stale address: the call then fails as a refused command)."""
    if call.node is not None:
        host, _, port = call.node.rpartition(":")
        return client.get_node(host=host.strip("[]"), port=int(port))
    if call.route is not None:
        return client.get_node_from_key(call.route)
    return client.get_default_node()


def as_one_node(reply: Any) -> Any:
    """A keyless call's reply as a standalone Redis gives it: the cluster clients merge a
    SCAN's replies per node into ({node: cursor}, keys), even when one node answered."""
    if isinstance(reply, tuple) and isinstance(reply[0], dict):
        cursors: dict[Any, Any] = reply[0]
        return [next(iter(cursors.values()), 0), reply[1]]
    return reply


def unsettled(replies: Sequence[Any]) -> list[int]:
    """Where a reply says the call did not run because its slot is migrating: TRYAGAIN
    (the call's keys are split between the two nodes for now), or redis-py giving up after
    its 16 redirections and TRYAGAINs ("TTL exhausted"). Either is safe to send again:
    nothing ran; it succeeds once the keys it names are together on one node."""
    return [
        i for i, reply in enumerate(replies)
        if isinstance(reply, TryAgainError)
        or (isinstance(reply, ClusterError) and "TTL exhausted" in str(reply))
    ]  # fmt: skip


def resent(calls: Sequence[Call], replies: Sequence[Any]) -> list[int]:
    """What to send again: the calls whose slot is migrating (see `unsettled`) and, with
    them, the batch's WAITs, which confirmed nothing of a call that had not run yet."""
    waiting = unsettled(replies)
    if not waiting:
        return []
    return sorted({*waiting, *(i for i, call in enumerate(calls) if is_wait(call))})


def is_wait(call: Call) -> bool:
    """Whether `call` is a WAIT for replicas (durable writes, min_replicas)."""
    return str(call.args[0]).upper() == "WAIT"


def pipelined(calls: Sequence[Call], node_of: Callable[[str], Any]) -> list[tuple[int, Call, Any]]:
    """What goes into the cluster pipeline: each keyed call (node None: redis-py routes it
    by its keys), and each WAIT once per node that ran a script call before it, named.

    WAIT counts the replicas that have its own connection's writes, so it must follow
    them on that connection: the pipeline sends each node's calls in order on one
    connection, the WAIT it is given for that node last. `node_of` is the master of a
    key now (the client's slot map).
    """
    entries: list[tuple[int, Call, Any]] = []
    for i, call in enumerate(calls):
        if is_wait(call):
            entries += [(i, call, node) for node in _written_nodes(calls[:i], call, node_of)]
        elif not is_keyless(call) and not xread_streams(call):
            entries.append((i, call, None))
    return entries


def _written_nodes(before: Sequence[Call], wait: Call, node_of: Callable[[str], Any]) -> list[Any]:
    """The masters of the script calls in `before` (the writes of tasks and their outcomes)
    and of the WAIT's own route, once each. Plain commands beside them are not waited for:
    the queue registry's SADD lives on a master of its own, and a replica of that master
    lagging must not fail an enqueue whose tasks are safe (a queue the registry lost in a
    failover is still served by name, and `conveyor fsck --repair` lists it again)."""
    keys = [first_key(c) for c in before if c.script is not None]
    nodes: dict[str, Any] = {}
    for key in {key_slot(k.encode()): k for k in [*keys, wait.route] if k}.values():
        node = node_of(key)
        nodes.setdefault(node.name, node)
    return list(nodes.values())


def folded(entries: list[tuple[int, Call, Any]], results: Sequence[Any]) -> dict[int, Any]:
    """The pipeline's replies by call: a WAIT sent to several masters answers with the
    fewest replicas any of them confirmed (an error: none), the one that matters."""
    replies: dict[int, Any] = {}
    for (i, call, _), result in zip(entries, results, strict=True):
        if is_wait(call):
            result = fewest(replies[i], result) if i in replies else fewest(result)
        replies[i] = result
    return replies


def fewest(*replies: Any) -> Any:
    """Of WAIT replies, the fewest replicas confirmed. An error confirms none: a master
    demoted by a failover refuses WAIT, its writes having gone to the new master by a
    MOVED, and the caller learns that nothing is confirmed (NotReplicatedError), not a
    Redis error. A refusal by the ACL stays an error: a setup to fix, not a moment."""
    for reply in replies:
        if isinstance(reply, Exception) and str(reply).startswith("NOPERM"):
            return reply
    return min(0 if isinstance(reply, Exception) else int(reply) for reply in replies)


def first_key(call: Call) -> str | None:
    """The first key of a script call or plain keyed command (None for a keyless one)."""
    if is_keyless(call):
        return call.route
    if call.script is not None:
        return str(call.args[3]) if int(call.args[2]) > 0 else None
    return str(call.args[1]) if len(call.args) > 1 else None


def with_sources(calls: Sequence[Call]) -> Steps[Sequence[Call], list[Any]]:
    """The round trips that run `calls`: one, and one more for the script calls a node
    answered with NOSCRIPT, sent as EVAL of the source with the same keys (which caches
    the script on that node for the EVALSHAs that follow)."""
    replies: list[Any] = yield calls
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        # the WAITs again too: they confirmed nothing of a script that did not run
        waits = [i for i, call in enumerate(calls) if is_wait(call)]
        again = [evaluated(calls[i]) for i in missing] + [calls[i] for i in waits]
        for i, reply in zip(missing + waits, (yield again), strict=True):
            replies[i] = fewest(replies[i], reply) if i in waits else reply
    return replies


def evaluated(call: Call) -> Call:
    """An EVALSHA call as EVAL of its script's source."""
    assert call.script is not None, "only a script call gets NOSCRIPT"
    return Call(("EVAL", call.script.source, *call.args[2:]), call.script)


def xread_streams(call: Call) -> tuple[list[Any], list[Any], list[Any]] | None:
    """An XREAD's options, streams and ids; None for any other command."""
    if str(call.args[0]).upper() != "XREAD":
        return None
    at = [str(a).upper() for a in call.args].index("STREAMS")
    rest = list(call.args[at + 1 :])
    half = len(rest) // 2
    return list(call.args[1:at]), rest[:half], rest[half:]


def xread_per_slot(call: Call, blocking: bool) -> list[Call]:
    """An XREAD over streams of several slots as one XREAD per slot (`blocking`: keep its
    BLOCK option, else drop it)."""
    parsed = xread_streams(call)
    assert parsed is not None
    options, streams, ids = parsed
    if not blocking and "BLOCK" in [str(o).upper() for o in options]:
        at = [str(o).upper() for o in options].index("BLOCK")
        options = options[:at] + options[at + 2 :]
    slots: dict[int, list[int]] = {}
    for i, stream in enumerate(streams):
        slots.setdefault(key_slot(str(stream).encode()), []).append(i)
    return [
        Call.command("XREAD", *options, "STREAMS", *[streams[i] for i in group],
                     *[ids[i] for i in group])
        for group in slots.values()
    ]  # fmt: skip


def joined(replies: list[Any]) -> Any:
    """Per-slot XREAD replies as one (a list of [stream, entries]; None when empty)."""
    found: list[Any] = []
    for reply in replies:
        if isinstance(reply, Exception):
            return reply
        found += list(reply.items()) if isinstance(reply, dict) else reply or []
    return found or None


def cluster_unavailable(exc: BaseException, settings: Settings) -> BrokerUnavailableError:
    """The error producers see when the Cluster, or the node of a slot, cannot answer."""
    nodes = ",".join(f"{host}:{port}" for host, port in startup(settings).nodes)
    return BrokerUnavailableError(f"Redis Cluster at {nodes} is unavailable: {exc}")


def startup(settings: Settings) -> ClusterAddress:
    """The nodes (and credentials) to discover the Cluster from."""
    if is_cluster_url(settings.redis_url):
        return cluster_nodes(settings.redis_url)
    url = urlsplit(settings.redis_url)
    return ClusterAddress(((url.hostname or "localhost", url.port or 6379),), url.username,
                          url.password, tls=url.scheme == "rediss")  # fmt: skip


def node_settings(settings: Settings, host: str, port: int) -> Settings:
    """`settings` for a plain connection to one node of the Cluster."""
    address = startup(settings)
    credentials = ""
    if address.username or address.password:
        credentials = f"{quote(address.username or '')}:{quote(address.password or '')}@"
    bracketed = f"[{host}]" if ":" in host else host
    scheme = "rediss" if address.tls else "redis"
    url = f"{scheme}://{credentials}{bracketed}:{port}/0"
    return settings.replace(redis_url=url, redis_cluster=False)


def memory_of(calls: Sequence[Call], replies: list[Any]) -> Call:
    """INFO memory, routed to the node that refused the first write at maxmemory."""
    refused = next(c for c, r in zip(calls, replies, strict=True) if isinstance(r, BrokerFullError))
    return Call(MEMORY.args, route=first_key(refused))


def check_replies(replies: list[Any], settings: Settings, raise_errors: bool) -> list[Any]:
    """A node that answered CLUSTERDOWN, or could not be reached (the cluster pipeline
    leaves that error in the place of each of its calls), makes the Cluster unavailable,
    as a standalone Redis that cannot be reached is: not a failed command."""
    for reply in replies:
        if isinstance(reply, CLUSTER_UNAVAILABLE):
            raise cluster_unavailable(reply, settings) from reply
    if raise_errors:
        first_error(replies)
    return replies


# -- clients ------------------------------------------------------------------------------


def sync_cluster_client(
    settings: Settings, *, blocking_margin: float = 0.0
) -> redis.cluster.RedisCluster:
    """A thread-safe cluster client with the standalone client's timeouts and retries."""
    address = startup(settings)
    options = _options(settings, "conveyor", blocking_margin)
    retry = Retry(_backoff(), CALL_RETRIES, (RedisConnectionError, RedisTimeoutError))
    return redis.cluster.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in address.nodes],  # type: ignore[no-untyped-call]
        username=address.username, password=address.password, retry=retry, **options,
        **tls_options(settings, address),
    )  # fmt: skip


def async_cluster_client(
    settings: Settings, *, name: str = "conveyor"
) -> redis.asyncio.cluster.RedisCluster:
    """An asyncio cluster client with the standalone client's timeouts and retries."""
    address = startup(settings)
    retry = AsyncRetry(_backoff(), CALL_RETRIES, (RedisConnectionError, RedisTimeoutError))
    client = redis.asyncio.cluster.RedisCluster(
        startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in address.nodes],
        username=address.username, password=address.password, retry=retry,
        **_options(settings, name, 0.0), **tls_options(settings, address),
    )  # fmt: skip
    _pack_with_hiredis(client)
    return client


def _pack_with_hiredis(client: redis.asyncio.cluster.RedisCluster) -> None:
    """Make every node's connections pack commands as the standalone asyncio ones do:
    redis-py's serializer encodes each argument in Python before hiredis packs them (a
    fifth of an async producer's CPU on a Cluster, by a profile). The startup nodes are
    built already; nodes found later are built from the shared connection arguments."""
    manager = client.nodes_manager
    shared = manager.connection_kwargs
    shared["connection_class"] = _packing_with_hiredis(shared["connection_class"])
    for node in manager.startup_nodes.values():
        packing = _packing_with_hiredis(node.connection_class)
        node.connection_class = cast(type[redis.asyncio.connection.Connection], packing)


def tls_options(settings: Settings, address: ClusterAddress) -> dict[str, Any]:
    """TLS to every node (`rediss+cluster://`), with the settings' certificate files: the
    nodes' certificates are verified as one server's are."""
    return {"ssl": True, **_tls(settings)} if address.tls else {}
