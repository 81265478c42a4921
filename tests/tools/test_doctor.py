"""tools/doctor.py: each check's verdict, detail and fix, on hand-made INFO and CONFIG
replies (how `conveyor doctor` reports them is tested in tests/cli/test_admin.py)."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.tools.doctor import (
    Check,
    Verdict,
    _eviction,
    _memory,
    _mode,
    _persistence,
    _version,
)

MiB = 2**20


@pytest.mark.parametrize(
    ("version", "verdict"),
    [
        ("5.0.14", Verdict.FAIL),
        ("6.0.20", Verdict.FAIL),
        ("6.2.0", Verdict.OK),
        ("6.2.14", Verdict.OK),
        ("7.0.15", Verdict.OK),
        ("10.0.0", Verdict.OK),
        ("garbage", Verdict.FAIL),
    ],
)
def test_version(version: str, verdict: Verdict) -> None:
    check = _version({"redis_version": version})
    assert (check.name, check.verdict, check.detail) == ("version", verdict, f"Redis {version}")
    assert check.fix == ("Conveyor needs Redis 6.2+" if verdict is Verdict.FAIL else "")


def test_version_unknown_fails() -> None:
    assert _version({}) == Check("version", Verdict.FAIL, "Redis ?", "Conveyor needs Redis 6.2+")


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (
            {"redis_mode": "standalone", "role": "master"},
            Check("mode", Verdict.OK, "standalone, master"),
        ),
        ({}, Check("mode", Verdict.OK, "standalone, master")),
        (
            {"redis_mode": "sentinel", "role": "master"},
            Check("mode", Verdict.FAIL, "this is a Sentinel", "point Conveyor at the master"),
        ),
        (
            {"redis_mode": "standalone", "role": "slave"},
            Check("mode", Verdict.FAIL, "role slave (read-only)", "point at the master"),
        ),
        (
            {"redis_mode": "cluster", "role": "slave"},
            Check("mode", Verdict.FAIL, "role slave (read-only)", "point at the master"),
        ),
    ],
    ids=["standalone", "defaults", "sentinel", "replica", "cluster-replica"],
)
def test_mode(info: dict[str, Any], expected: Check) -> None:
    assert _mode(info) == expected


def test_mode_cluster_is_supported() -> None:
    check = _mode({"redis_mode": "cluster", "role": "master"})
    assert (check.verdict, check.detail) == (Verdict.OK, "cluster, master")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"appendonly": "yes", "appendfsync": "always", "save": ""},
            Check("persistence", Verdict.OK, "AOF, appendfsync always: no loss on restart"),
        ),
        (
            {"appendonly": "yes", "appendfsync": "everysec", "save": "3600 1"},
            Check(
                "persistence",
                Verdict.WARN,
                "AOF, appendfsync everysec: a crash may lose the last second of writes",
                "appendfsync always",
            ),
        ),
        (
            {"appendonly": "no", "save": "3600 1 300 100", "maxmemory-policy": "allkeys-lru"},
            Check(
                "persistence",
                Verdict.WARN,
                "Redis persists by RDB snapshots only: a crash loses tasks since the last "
                "snapshot.",
                "appendonly yes",
            ),
        ),
        (
            {"appendonly": "no", "save": ""},
            Check(
                "persistence",
                Verdict.WARN,
                "Redis persists nothing: a Redis restart loses every task.",
                "appendonly yes",
            ),
        ),
        (
            None,
            Check(
                "persistence",
                Verdict.WARN,
                "CONFIG is not allowed here",
                "check appendonly=yes with your provider",
            ),
        ),
    ],
    ids=["aof-always", "aof-everysec", "rdb-only", "none", "config-forbidden"],
)
def test_persistence(config: dict[str, str] | None, expected: Check) -> None:
    assert _persistence(config) == expected


@pytest.mark.parametrize(
    ("used", "limit", "verdict", "detail"),
    [
        (10 * MiB, 0, Verdict.WARN, "10.0 MiB used, no maxmemory"),
        (50 * MiB, 100 * MiB, Verdict.OK, "50.0 MiB used of 100.0 MiB (50%), noeviction"),
        (70 * MiB, 100 * MiB, Verdict.OK, "70.0 MiB used of 100.0 MiB (70%), noeviction"),
        (71 * MiB, 100 * MiB, Verdict.WARN, "71.0 MiB used of 100.0 MiB (71%), noeviction"),
        (90 * MiB, 100 * MiB, Verdict.WARN, "90.0 MiB used of 100.0 MiB (90%), noeviction"),
        (
            91 * MiB,
            100 * MiB,
            Verdict.FAIL,
            "91.0 MiB used of 100.0 MiB (91%), noeviction: once full, Redis refuses new tasks",
        ),
        (
            100 * MiB,
            100 * MiB,
            Verdict.FAIL,
            "100.0 MiB used of 100.0 MiB (100%), noeviction: Redis is full and refuses new "
            "tasks; workers still finish theirs",
        ),
        (
            120 * MiB,
            100 * MiB,
            Verdict.FAIL,
            "120.0 MiB used of 100.0 MiB (120%), noeviction: Redis is full and refuses new "
            "tasks; workers still finish theirs",
        ),
    ],
)
def test_memory_thresholds(used: int, limit: int, verdict: Verdict, detail: str) -> None:
    check = _memory({"used_memory": used, "maxmemory": limit, "maxmemory_policy": "noeviction"})
    assert (check.name, check.verdict, check.detail) == ("memory", verdict, detail)
    fixes = {
        Verdict.OK: "",
        Verdict.WARN: "plan more memory" if limit else "set maxmemory",
        Verdict.FAIL: "raise maxmemory or drain queues",
    }
    assert check.fix.startswith(fixes[verdict])
    assert bool(check.fix) == (verdict is not Verdict.OK)


@pytest.mark.parametrize("share", [50, 95])
def test_memory_under_an_evicting_policy_says_tasks_are_evicted(share: int) -> None:
    info = {"used_memory": share * MiB, "maxmemory": 100 * MiB, "maxmemory_policy": "allkeys-lru"}
    check = _memory(info)
    assert check.detail == (
        f"{share}.0 MiB used of 100.0 MiB ({share}%), allkeys-lru: at the limit Redis evicts "
        "keys, tasks among them (see eviction)"
    )
    assert check.verdict is (Verdict.FAIL if share > 90 else Verdict.OK)


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        ("allkeys-lru", "deletes any key, so queued tasks vanish without an error"),
        ("allkeys-random", "deletes any key, so queued tasks vanish without an error"),
        ("volatile-ttl", "deletes keys with a TTL: idempotency keys (duplicates get in)"),
        ("some-future-policy", "Redis may evict queued tasks"),
    ],
)
def test_eviction_says_what_an_evicting_policy_loses(policy: str, why: str) -> None:
    check = _eviction({"maxmemory-policy": policy})
    assert check.verdict is Verdict.FAIL
    assert check.detail.startswith(f"maxmemory-policy {policy}: ")
    assert why in check.detail
    assert check.fix == "CONFIG SET maxmemory-policy noeviction"
    assert _eviction({"maxmemory-policy": "noeviction"}).verdict is Verdict.OK
