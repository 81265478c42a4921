"""Redis settings that lose tasks, detected before a worker starts."""

from __future__ import annotations

import logging

from conveyor.broker.inspect import AsyncInspector
from conveyor.broker.transport import ReplyError

Finding = tuple[int, str]  # (logging level, message with the fix)


async def durability_findings(inspector: AsyncInspector) -> list[Finding]:
    """Check eviction and persistence; managed Redis may forbid CONFIG, which is reported."""
    try:
        config = await inspector.server_config()
    except ReplyError as exc:
        return [(logging.WARNING, f"cannot read the Redis configuration ({exc}); check "
                 "maxmemory-policy=noeviction and persistence by hand")]  # fmt: skip
    return evaluate_config(config)


def evaluate_config(config: dict[str, str]) -> list[Finding]:
    """Findings for a CONFIG GET * result (pure, so it is easy to test)."""
    findings: list[Finding] = []
    policy = config.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        findings.append(
            (
                logging.ERROR,
                f"maxmemory-policy is {policy}: under memory pressure Redis would evict queued "
                "tasks. Fix: CONFIG SET maxmemory-policy noeviction (and in redis.conf)",
            )
        )
    aof = config.get("appendonly") == "yes"
    rdb = bool(config.get("save", "").strip())
    if not aof and not rdb:
        findings.append(
            (
                logging.WARNING,
                "Redis persists nothing: a Redis restart loses every task. Fix: appendonly yes "
                "with appendfsync always (no loss) or everysec (up to 1 s lost)",
            )
        )
    elif not aof:
        findings.append(
            (
                logging.WARNING,
                "Redis persists by RDB snapshots only: a crash loses tasks since the last "
                "snapshot. Fix: appendonly yes",
            )
        )
    return findings
