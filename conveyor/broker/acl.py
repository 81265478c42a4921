"""The least-privilege Redis ACL Conveyor needs, written once: the docs, `conveyor doctor`
and the tests all take it from here.

Every command Conveyor sends, directly or from its Lua scripts (Redis checks a script's
calls against the user too), with a probe of each: arguments of the right arity on a key
and a channel under the prefix. `conveyor doctor` queues the probes inside MULTI and
DISCARDs them, so nothing runs: Redis checks a command's ACL when it queues it, and
answers NOPERM there for a command, key or channel the user may not use.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A SHA1 no script has: EVALSHA's probe must only be queued.
_NO_SHA = "0" * 40
_K = "{key}"
_C = "{channel}"

#: Each command (or command|subcommand) Conveyor uses, with a probe of its arguments.
#: Not granted on purpose: CONFIG (doctor and the worker's start-up check say they cannot
#: read the configuration), CLIENT LIST/KILL (a stopping worker's best-effort cleanup of a
#: cancelled wait), SCRIPT FLUSH, FLUSHDB, KEYS.
COMMANDS: dict[str, tuple[str, ...]] = {
    # connections: names (CLIENT LIST shows them), the database, liveness
    "client|setname": ("CLIENT", "SETNAME", "conveyor"),
    "select": ("SELECT", "0"),
    "ping": ("PING",),
    "time": ("TIME",),
    # scripts, loaded once and called by SHA; INFO for doctor and maxmemory refusals
    "evalsha": ("EVALSHA", _NO_SHA, "1", _K),
    "script|load": ("SCRIPT", "LOAD", "return 1"),
    # a Cluster node that lacks a script gets its source (no more than EVALSHA and SCRIPT
    # LOAD grant together)
    "eval": ("EVAL", "return 1", "1", _K),
    "info": ("INFO", "server"),
    # durable enqueues and min_replicas: wait for replicas to have the writes
    "wait": ("WAIT", "0", "0"),
    # a Redis Cluster: the client learns which node serves each slot, and where each
    # command's keys are (COMMAND; its subcommands only read the command table)
    "cluster|slots": ("CLUSTER", "SLOTS"),
    "command": ("COMMAND", "COUNT"),
    # ...and a worker waiting on queues of several slots ends the waits it no longer needs
    # (CLIENT UNBLOCK of its own connections, found by CLIENT ID)
    "client|id": ("CLIENT", "ID"),
    "client|unblock": ("CLIENT", "UNBLOCK", "0"),
    # keys
    "del": ("DEL", _K),
    "exists": ("EXISTS", _K),
    "type": ("TYPE", _K),
    "pexpire": ("PEXPIRE", _K, "1000"),
    "expireat": ("EXPIREAT", _K, "1"),
    "persist": ("PERSIST", _K),
    "pttl": ("PTTL", _K),
    "scan": ("SCAN", "0", "MATCH", _K, "COUNT", "10"),
    # strings
    "get": ("GET", _K),
    "set": ("SET", _K, "1"),
    # hashes
    "hget": ("HGET", _K, "f"),
    "hgetall": ("HGETALL", _K),
    "hmget": ("HMGET", _K, "f"),
    "hvals": ("HVALS", _K),
    "hset": ("HSET", _K, "f", "1"),
    "hsetnx": ("HSETNX", _K, "f", "1"),
    "hdel": ("HDEL", _K, "f"),
    "hincrby": ("HINCRBY", _K, "f", "1"),
    # lists, and the blocking wait for new tasks
    "llen": ("LLEN", _K),
    "lindex": ("LINDEX", _K, "0"),
    "lrange": ("LRANGE", _K, "0", "0"),
    "lpos": ("LPOS", _K, "x"),
    "lpush": ("LPUSH", _K, "x"),
    "rpush": ("RPUSH", _K, "x"),
    "lpop": ("LPOP", _K),
    "lrem": ("LREM", _K, "0", "x"),
    "ltrim": ("LTRIM", _K, "0", "0"),
    "blpop": ("BLPOP", _K, "1"),
    # sets
    "sadd": ("SADD", _K, "x"),
    "srem": ("SREM", _K, "x"),
    "scard": ("SCARD", _K),
    "smembers": ("SMEMBERS", _K),
    "srandmember": ("SRANDMEMBER", _K, "1"),
    "sismember": ("SISMEMBER", _K, "x"),
    "sunion": ("SUNION", _K, _K),
    # sorted sets
    "zadd": ("ZADD", _K, "1", "x"),
    "zrem": ("ZREM", _K, "x"),
    "zscore": ("ZSCORE", _K, "x"),
    "zcard": ("ZCARD", _K),
    "zcount": ("ZCOUNT", _K, "0", "1"),
    "zrange": ("ZRANGE", _K, "0", "0"),
    "zrevrange": ("ZREVRANGE", _K, "0", "0"),
    "zrangebyscore": ("ZRANGEBYSCORE", _K, "0", "1"),
    "zrevrangebyscore": ("ZREVRANGEBYSCORE", _K, "1", "0"),
    "zremrangebyscore": ("ZREMRANGEBYSCORE", _K, "0", "1"),
    "zscan": ("ZSCAN", _K, "0", "COUNT", "10"),
    # the event streams
    "xadd": ("XADD", _K, "*", "f", "1"),
    "xtrim": ("XTRIM", _K, "MAXLEN", "0"),
    "xread": ("XREAD", "COUNT", "1", "STREAMS", _K, "0"),
    "xrevrange": ("XREVRANGE", _K, "+", "-", "COUNT", "1"),
    # cancels of running tasks
    "publish": ("PUBLISH", _C, "x"),
    "subscribe": ("SUBSCRIBE", _C),
    "unsubscribe": ("UNSUBSCRIBE", _C),
    # doctor: who the user is, and the probe itself
    "acl|whoami": ("ACL", "WHOAMI"),
    "multi": ("MULTI",),
    "discard": ("DISCARD",),
}

#: Commands the probe cannot queue inside MULTI (they frame it).
_FRAMING = ("multi", "discard")


def acl_rules(prefix: str) -> list[str]:
    """The ACL rules of a Conveyor user on keys and channels under `prefix`."""
    return [
        "resetkeys",
        f"~{prefix}:*",
        "resetchannels",
        f"&{prefix}:*",
        "-@all",
        *(f"+{command}" for command in COMMANDS),
    ]


def acl_setuser(prefix: str = "conveyor", user: str = "conveyor", password: str = "") -> str:
    """The `ACL SETUSER` line that creates that user (`<password>` when none is given)."""
    secret = password or "<password>"
    return " ".join(["ACL SETUSER", user, "on", f">{secret}", *acl_rules(prefix)])


@dataclass(frozen=True, slots=True)
class Probe:
    """One command's probe: its ACL name and its arguments."""

    command: str
    args: tuple[str, ...]


def probes(prefix: str) -> list[Probe]:
    """The probe of every command but MULTI/DISCARD, on a key and a channel under `prefix`."""
    name = f"{prefix}:doctor:probe"  # a key and a channel
    found = []
    for command, args in COMMANDS.items():
        if command not in _FRAMING:
            filled = tuple(name if a in (_K, _C) else a for a in args)
            found.append(Probe(command, filled))
    return found


@dataclass(frozen=True, slots=True)
class Permissions:
    """What the probe found: the commands refused, and those it could not tell about."""

    missing: tuple[str, ...]
    unknown: tuple[str, ...] = ()
    #: why nothing could be probed (MULTI refused, say); empty when the probe ran
    unchecked: str = ""


def judge(checked: list[Probe], replies: list[str]) -> Permissions:
    """Permissions from the replies to the queued probes: QUEUED is allowed, NOPERM is
    refused, anything else (an error Redis checks before the ACL) is unknown."""
    missing, unknown = [], []
    for probe, reply in zip(checked, replies, strict=True):
        if reply.startswith("NOPERM") or "no permissions" in reply:
            missing.append(probe.command)
        elif reply != "QUEUED":
            unknown.append(probe.command)
    return Permissions(tuple(missing), tuple(unknown))
