"""The worker's start-up check of the Redis settings that could lose tasks."""

from __future__ import annotations

import logging

import pytest
import redis

from conveyor import Conveyor
from conveyor.tools.health import evaluate_config
from tests.support.worker import running_worker, wait_until


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "conveyor.worker" and r.levelno == level
    ]


async def test_an_evicting_redis_is_reported_as_an_error(
    aapp: Conveyor, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    r.config_set("maxmemory-policy", "allkeys-lru")
    try:
        async with running_worker(aapp):

            async def started() -> bool:
                return any("started" in m for m in _messages(caplog, logging.INFO))

            await wait_until(started, 10, "the worker to start")
    finally:
        r.config_set("maxmemory-policy", "noeviction")
    errors = _messages(caplog, logging.ERROR)
    assert len(errors) == 1, errors
    assert "allkeys-lru" in errors[0] and "noeviction" in errors[0]


async def test_a_safe_redis_raises_no_error_but_warns_about_persistence(
    aapp: Conveyor, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    async with running_worker(aapp):

        async def started() -> bool:
            return any("started" in m for m in _messages(caplog, logging.INFO))

        await wait_until(started, 10, "the worker to start")
    assert _messages(caplog, logging.ERROR) == []
    # the test server runs without AOF or RDB
    assert any("persists nothing" in m for m in _messages(caplog, logging.WARNING))


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
