"""The command line on a Redis at maxmemory: `enqueue` says Redis is full and that nothing
was stored (exit 3, as for an unreachable Redis); `doctor` says so too, and why."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer
from tests.cli.conftest import Invoke, _invoker
from tests.cli.test_admin import verdicts
from tests.support.full import Private, private_setup
from tests.support.keyspace import dump


@pytest.fixture
def private(redis_server: RedisServer, settings: Settings) -> Iterator[Private]:
    """A server of this test alone, which the test makes full."""
    with private_setup(redis_server, settings) as made:
        yield made


@pytest.fixture
def on_private(private: Private) -> Invoke:
    """The command line on the private server, under this test's prefix."""
    return _invoker(private.server.url, private.settings.prefix)


def test_enqueue_on_a_full_redis_says_so_and_stores_nothing(
    private: Private, on_private: Invoke
) -> None:
    assert on_private("enqueue", "job", "--payload", "1").exit_code == 0
    before = dump(private.r, private.settings.prefix)
    private.memory.fill()
    for options in ([], ["--delay", "60"], ["--idempotency-key", "k"], ["--queue", "new"]):
        result = on_private("enqueue", "job", *options)
        assert result.exit_code == 3, result.output
        assert result.stdout == ""
        assert re.match(
            r"Error: Redis is full \(\d+\.\d MiB used of maxmemory 0\.0 MiB, noeviction\)",
            result.stderr,
        ), result.stderr
        assert "nothing was stored" in result.stderr
        assert "Traceback" not in result.output
    assert dump(private.r, private.settings.prefix) == before
    private.memory.free()
    assert on_private("enqueue", "job").exit_code == 0


def test_doctor_on_a_full_redis_says_it_refuses_new_tasks(
    private: Private, on_private: Invoke
) -> None:
    private.memory.fill()
    result = on_private("doctor")
    assert result.exit_code == 1, result.output
    verdict, detail = verdicts(result)["memory"]
    assert verdict == "FAIL"
    assert (
        ", noeviction: Redis is full and refuses new tasks; workers still finish theirs" in detail
    )
    assert verdicts(result)["eviction"] == ("OK", "maxmemory-policy noeviction")


def test_doctor_says_what_an_evicting_policy_loses(private: Private, on_private: Invoke) -> None:
    private.r.config_set("maxmemory-policy", "allkeys-lru")
    private.memory.fill()
    result = on_private("doctor")
    assert result.exit_code == 1, result.output
    assert verdicts(result)["eviction"] == (
        "FAIL",
        "maxmemory-policy allkeys-lru: at maxmemory Redis deletes any key, so queued tasks "
        "vanish without an error  (fix: CONFIG SET maxmemory-policy noeviction)",
    )
    verdict, detail = verdicts(result)["memory"]
    assert verdict == "FAIL" and "allkeys-lru: at the limit Redis evicts keys" in detail
