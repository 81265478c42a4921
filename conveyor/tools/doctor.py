"""`conveyor doctor`: verdicts on the Redis a deployment uses, each with its fix."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from conveyor.broker.admin import Shard
from conveyor.broker.inspect import SyncInspector
from conveyor.broker.transport import ReplyError
from conveyor.redis_url import parse_redis_url
from conveyor.settings import url_is_tls
from conveyor.tools.health import evaluate_config

PINGS = 20
#: The checks of a server's own INFO and CONFIG, run on each master of a Cluster.
SERVER_CHECKS = ("version", "mode", "eviction", "persistence", "memory")


class Verdict(StrEnum):
    """OK, a warning to read, or a blocking problem (non-zero exit)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


#: Verdicts from best to worst.
_RANK = {Verdict.OK: 0, Verdict.WARN: 1, Verdict.FAIL: 2}


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report."""

    name: str
    verdict: Verdict
    detail: str
    fix: str = ""


class Doctor:
    """Runs every check against one Redis (and one key prefix, for the workers)."""

    def __init__(self, inspector: SyncInspector) -> None:
        self.inspector = inspector

    def run(self) -> list[Check]:
        """Every check, in a stable order; a check that cannot run is a failure (one that
        Redis refused, an ACL say, fails with Redis' reason)."""
        checks: dict[str, Callable[[], Check]] = {
            "connection": self._connection,
            "permissions": self._permissions,
            **self._server_checks(),
            "latency": self._latency,
            "clock": self._clock,
            "workers": self._workers,
        }
        if self.inspector.broker.settings.cluster:  # its masters and slots, after the mode
            items = list(checks.items())
            at = [name for name, _ in items].index("mode") + 1
            masters = ("cluster", lambda: _cluster(self.inspector.cluster_masters()))
            checks = dict([*items[:at], masters, *items[at:]])
        return [_guarded(name, check) for name, check in checks.items()]

    def _server_checks(self) -> dict[str, Callable[[], Check]]:
        """The checks of the server's INFO and CONFIG: of the one Redis, or of each master
        of a Redis Cluster (each has its own, and one unsafe master loses its queues)."""
        if not self.inspector.broker.settings.cluster:
            return self._node_checks(None)
        nodes = sorted({m.address for m in self.inspector.cluster_masters()})
        each = {node: self._node_checks(node) for node in nodes}
        return {
            name: functools.partial(_every_master, name, {n: each[n][name] for n in nodes})
            for name in SERVER_CHECKS
        }

    def _node_checks(self, node: str | None) -> dict[str, Callable[[], Check]]:
        info = functools.cache(functools.partial(self.inspector.server_info, node))
        config = functools.cache(functools.partial(self._config, node))
        return {
            "version": lambda: _version(info()),
            "mode": lambda: _mode(info()),
            "eviction": lambda: _eviction(config()),
            "persistence": lambda: _persistence(config()),
            "memory": lambda: _memory(info()),
        }

    def _config(self, node: str | None = None) -> dict[str, str] | None:
        try:
            return self.inspector.server_config(node)
        except ReplyError:  # managed Redis often forbids CONFIG
            return None

    def _connection(self) -> Check:
        """Standalone or Sentinel (its service and the master it names now), and TLS."""
        settings = self.inspector.broker.settings
        if settings.cluster:
            masters = self.inspector.server_address()
            tls = "TLS on" if url_is_tls(settings.redis_url) else "TLS off"
            return Check("connection", Verdict.OK, f"Redis Cluster, masters {masters}, {tls}")
        target = parse_redis_url(self.inspector.broker.settings.redis_url)
        tls = "TLS on" if target.tls else "TLS off"
        address = self.inspector.server_address()
        if not target.is_sentinel:
            return Check("connection", Verdict.OK, f"standalone Redis at {address}, {tls}")
        nodes = ",".join(f"{host}:{port}" for host, port in target.sentinels)
        detail = f"Sentinel: master {target.service!r} now at {address} (sentinels {nodes})"
        return Check("connection", Verdict.OK, f"{detail}, {tls}")

    def _permissions(self) -> Check:
        """Commands, keys and channels the ACL user lacks (probed inside MULTI, run never).
        It cannot see rules on keys other than its probe key under the prefix, nor the
        sentinels' own ACL."""
        try:
            user = self.inspector.whoami()
        except ReplyError:
            user = "?"
        found = self.inspector.permissions()
        prefix = self.inspector.broker.settings.prefix
        if found.unchecked:
            fix = "grant +multi +discard: doctor queues its probes and discards them"
            return Check("permissions", Verdict.WARN, f"cannot probe: {found.unchecked}", fix)
        if found.missing:
            detail = f"user {user} may not run {', '.join(found.missing)} on {prefix}:*"
            fix = f"ACL SETUSER {user} " + " ".join(f"+{c}" for c in found.missing)
            return Check("permissions", Verdict.FAIL, detail, fix)
        if found.unknown:
            detail = f"user {user}: could not probe {', '.join(found.unknown)}"
            return Check("permissions", Verdict.WARN, detail, "see docs/redis-deployments.md")
        detail = f"user {user} may run every command Conveyor needs on {prefix}:*"
        return Check("permissions", Verdict.OK, detail)

    def _latency(self) -> Check:
        samples = []
        for _ in range(PINGS):
            started = time.perf_counter()
            self.inspector.ping()
            samples.append((time.perf_counter() - started) * 1000)
        median = statistics.median(samples)
        detail = f"median round trip {median:.2f} ms over {PINGS} PINGs"
        if median > 50:
            return Check("latency", Verdict.FAIL, detail, "put workers next to Redis")
        if median > 5:
            return Check("latency", Verdict.WARN, detail, "every claim and ack pays it")
        return Check("latency", Verdict.OK, detail)

    def _clock(self) -> Check:
        before = time.time()
        server = self.inspector.server_time()
        after = time.time()
        skew = server - (before + after) / 2
        detail = f"Redis clock {skew:+.3f} s from this host"
        fix = "run NTP on both; leases use Redis' clock, but eta= uses the producer's"
        if abs(skew) > 30:
            return Check("clock", Verdict.FAIL, detail, fix)
        if abs(skew) > 1:
            return Check("clock", Verdict.WARN, detail, fix)
        return Check("clock", Verdict.OK, detail)

    def _workers(self) -> Check:
        alive = self.inspector.workers()
        if not alive:
            prefix = self.inspector.broker.settings.prefix
            fix = f"start `conveyor worker MODULE:APP` (prefix {prefix})"
            return Check("workers", Verdict.WARN, "no worker alive by heartbeat", fix)
        queues = sorted({q for w in alive for q in w.get("queues", [])})
        return Check("workers", Verdict.OK, f"{len(alive)} alive, serving {', '.join(queues)}")


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except ReplyError as exc:
        return Check(name, Verdict.FAIL, f"Redis refused: {exc}", "see the permissions check")


def _every_master(name: str, checks: dict[str, Callable[[], Check]]) -> Check:
    """One check run on each master, as one line: the worst verdict, naming the masters
    that have it (the detail once when every master says the same)."""
    found = {node: _guarded(name, check) for node, check in checks.items()}
    worst = max(found.values(), key=lambda c: _RANK[c.verdict])
    if len({c.detail for c in found.values()}) == 1:
        return Check(name, worst.verdict, f"{worst.detail} (all {len(found)} masters)", worst.fix)
    named = [f"{node}: {c.detail}" for node, c in found.items() if c.verdict is worst.verdict]
    return Check(name, worst.verdict, "; ".join(named), worst.fix)


def _version(info: dict[str, Any]) -> Check:
    version = str(info.get("redis_version", "?"))
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")]
    major, minor = [*parts, 0, 0][:2]
    if (major, minor) < (6, 2):
        return Check("version", Verdict.FAIL, f"Redis {version}", "Conveyor needs Redis 6.2+")
    return Check("version", Verdict.OK, f"Redis {version}")


def _mode(info: dict[str, Any]) -> Check:
    mode, role = info.get("redis_mode", "standalone"), info.get("role", "master")
    if mode == "sentinel":
        return Check("mode", Verdict.FAIL, "this is a Sentinel", "point Conveyor at the master")
    if role != "master":
        return Check("mode", Verdict.FAIL, f"role {role} (read-only)", "point at the master")
    return Check("mode", Verdict.OK, f"{mode}, {role}")


def _cluster(masters: list[Shard]) -> Check:
    """Which master serves which slots, so a queue's node can be found (`conveyor queues`)."""
    nodes: dict[str, list[str]] = {}
    for shard in masters:
        nodes.setdefault(shard.address, []).append(f"{shard.first}-{shard.last}")
    served = "; ".join(f"{address} slots {','.join(s)}" for address, s in nodes.items())
    return Check("cluster", Verdict.OK, f"Redis Cluster, {len(nodes)} masters: {served}")


def _eviction(config: dict[str, str] | None) -> Check:
    if config is None:
        return Check("eviction", Verdict.WARN, "CONFIG is not allowed here",
                     "check maxmemory-policy=noeviction with your provider")  # fmt: skip
    policy = config.get("maxmemory-policy", "?")
    if policy != "noeviction":
        why = _EVICTS.get(policy.split("-")[0], "Redis may evict queued tasks")
        fix = "CONFIG SET maxmemory-policy noeviction"
        return Check("eviction", Verdict.FAIL, f"maxmemory-policy {policy}: {why}", fix)
    return Check("eviction", Verdict.OK, "maxmemory-policy noeviction")


#: What an evicting policy deletes at maxmemory, by the policy's first word.
_EVICTS = {
    "allkeys": "at maxmemory Redis deletes any key, so queued tasks vanish without an error",
    "volatile": "at maxmemory Redis deletes keys with a TTL: idempotency keys (duplicates "
    "get in), claim retries, worker registrations, finished results",
}


def _persistence(config: dict[str, str] | None) -> Check:
    if config is None:
        return Check("persistence", Verdict.WARN, "CONFIG is not allowed here",
                     "check appendonly=yes with your provider")  # fmt: skip
    if config.get("appendonly") == "yes":
        fsync = config.get("appendfsync", "?")
        if fsync == "always":
            return Check("persistence", Verdict.OK, "AOF, appendfsync always: no loss on restart")
        return Check("persistence", Verdict.WARN, f"AOF, appendfsync {fsync}: a crash may lose "
                     "the last second of writes", "appendfsync always")  # fmt: skip
    findings = evaluate_config(config)
    message = next((m for _, m in findings if "persist" in m), "no persistence")
    return Check("persistence", Verdict.WARN, message.split(" Fix:")[0], "appendonly yes")


def _memory(info: dict[str, Any]) -> Check:
    used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    policy = str(info.get("maxmemory_policy", "noeviction"))
    detail = f"{used / 2**20:.1f} MiB used"
    if not limit:
        fix = "set maxmemory: Redis then refuses writes instead of being OOM-killed"
        return Check("memory", Verdict.WARN, detail + ", no maxmemory", fix)
    share = used / limit
    detail += f" of {limit / 2**20:.1f} MiB ({share:.0%}), {policy}"
    if policy != "noeviction":
        detail += ": at the limit Redis evicts keys, tasks among them (see eviction)"
    elif share >= 1:
        detail += ": Redis is full and refuses new tasks; workers still finish theirs"
    elif share > 0.9:
        detail += ": once full, Redis refuses new tasks"
    fix = "raise maxmemory or drain queues; a shorter retention of finished tasks frees memory"
    if share > 0.9:
        return Check("memory", Verdict.FAIL, detail, fix)
    if share > 0.7:
        return Check("memory", Verdict.WARN, detail, "plan more memory")
    return Check("memory", Verdict.OK, detail)
