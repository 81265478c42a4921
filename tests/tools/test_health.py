"""tools/health.py: the Redis settings that could lose tasks, as a worker checks them at
start-up (what the worker logs of them is tested in tests/worker/test_runtime.py)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.inspect import AsyncInspector
from conveyor.settings import Settings
from conveyor.tools.health import durability_findings, evaluate_config


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"maxmemory-policy": "noeviction", "appendonly": "yes", "save": ""}, []),
        ({"maxmemory-policy": "noeviction", "appendonly": "yes", "save": "3600 1"}, []),
        ({"appendonly": "yes"}, []),  # a missing policy is the default: noeviction
        (
            {"maxmemory-policy": "noeviction", "appendonly": "no", "save": ""},
            [(logging.WARNING, "persists nothing")],
        ),
        (
            {"maxmemory-policy": "noeviction", "appendonly": "no", "save": "  "},
            [(logging.WARNING, "persists nothing")],
        ),
        (
            {"maxmemory-policy": "noeviction", "appendonly": "no", "save": "3600 1 300 100"},
            [(logging.WARNING, "RDB snapshots only")],
        ),
        (
            {"maxmemory-policy": "volatile-lru", "appendonly": "yes", "save": ""},
            [(logging.ERROR, "noeviction")],
        ),
        (
            {"maxmemory-policy": "allkeys-lru", "appendonly": "no", "save": ""},
            [(logging.ERROR, "noeviction"), (logging.WARNING, "persists nothing")],
        ),
    ],
)
def test_evaluate_config(config: dict[str, str], expected: list[tuple[int, str]]) -> None:
    findings = evaluate_config(config)
    assert [level for level, _ in findings] == [level for level, _ in expected]
    for (_, message), (_, fragment) in zip(findings, expected, strict=True):
        assert fragment in message
        assert "Fix:" in message  # every finding says how to fix it


async def test_durability_findings_read_the_servers_configuration(aapp: Conveyor) -> None:
    findings = await durability_findings(aapp.async_inspector())
    # the test server evicts nothing and persists nothing (no AOF, no RDB)
    assert [level for level, _ in findings] == [logging.WARNING]
    assert "persists nothing" in findings[0][1]


@pytest.fixture
async def no_config(settings: Settings, r: redis.Redis) -> AsyncIterator[Conveyor]:
    """An app logged in as a Redis user that may run every command but CONFIG, as on
    managed Redis services."""
    user, password = f"noconfig-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    r.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                  commands=["+@all", "-config"])  # fmt: skip
    url = settings.redis_url.replace("redis://", f"redis://{user}:{password}@", 1)
    app = Conveyor(settings=settings.replace(redis_url=url))
    yield app
    await app.aclose()
    app.close()
    r.acl_deluser(user)


async def test_a_forbidden_config_is_a_warning_to_check_by_hand(no_config: Conveyor) -> None:
    inspector: AsyncInspector = no_config.async_inspector()
    await inspector.ping()  # the user is let in ...
    [(level, message)] = await durability_findings(inspector)  # ... but may not read CONFIG
    assert level == logging.WARNING
    assert "cannot read the Redis configuration" in message
    assert "maxmemory-policy=noeviction" in message and "by hand" in message
