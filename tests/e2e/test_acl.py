"""Real work under exactly the least-privilege ACL of broker/acl.py: producers, a worker
(success, retry, dead letter), the Inspector, the CLI, the seed API, the events and
doctor; Redis' ACL LOG must then hold no refusal but the two best-effort reads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from conveyor import Conveyor, Retry, TaskState
from conveyor.broker.acl import COMMANDS, acl_rules, acl_setuser
from conveyor.cli import cli
from conveyor.settings import Settings
from conveyor.tools.doctor import Doctor, Verdict
from conveyor.tools.embedded import RedisServer
from tests.api.conftest import api_client
from tests.support.worker import running_worker, wait_all

#: What a least-privilege worker may be refused, each handled as best effort: CONFIG GET
#: (the start-up check of eviction and persistence) and CLIENT LIST (the reaper's survey of
#: connected workers, and the cleanup of a cancelled wait at shutdown).
#: (Redis 6.2 logs the command without its subcommand.)
BEST_EFFORT = {"config|get", "client|list", "config", "client"}


@pytest.fixture
def user(r: redis.Redis, prefix: str) -> Iterator[str]:
    """An ACL user created by the documented line for this test's prefix; deleted after."""
    name = "u" + uuid.uuid4().hex[:8]
    admin(r, *acl_setuser(prefix, name, "secret").split())
    admin(r, "ACL", "LOG", "RESET")
    yield name
    admin(r, "ACL", "DELUSER", name)


def admin(r: redis.Redis, *args: str) -> Any:
    """A command as the default (admin) user."""
    return r.execute_command(*args)  # type: ignore[no-untyped-call]


def user_settings(redis_server: RedisServer, prefix: str, user: str) -> Settings:
    url = f"redis://{user}:secret@127.0.0.1:{redis_server.port}/0"
    return Settings(redis_url=url, prefix=prefix, lease_timeout=2.0, retry_backoff_base=0.01)


def refused(r: redis.Redis, user: str) -> set[str]:
    """What the ACL LOG says `user` was refused (commands, keys or channels)."""
    entries = r.acl_log(128)
    return {str(e["object"]) for e in entries if e["username"] == user}


async def test_everything_runs_under_the_least_privilege_acl(
    redis_server: RedisServer, r: redis.Redis, prefix: str, user: str
) -> None:
    settings = user_settings(redis_server, prefix, user)
    app = Conveyor(settings=settings)
    tries: dict[str, int] = {}

    @app.task(name="ok")
    async def ok(x: int) -> int:
        return x

    @app.task(name="flaky", max_retries=2)
    def flaky() -> str:
        tries["flaky"] = tries.get("flaky", 0) + 1
        if tries["flaky"] == 1:
            raise Retry(delay=0.01)
        return "second time"

    @app.task(name="doomed", max_retries=0)
    def doomed() -> None:
        raise ValueError("always")

    try:
        done = [ok.enqueue(1), await ok.enqueue_async(2), flaky.enqueue()]
        dead = doomed.enqueue()
        async with running_worker(app):
            await wait_all(done, TaskState.SUCCEEDED, 15)
            await wait_all([dead], TaskState.DEAD, 15)
        assert [h.result(timeout=1) for h in done] == [1, 2, "second time"]
        (stats,) = app.inspector.queue_stats()
        assert (stats.pending, stats.dead) == (0, 1)
        assert {e.task_id for e in app.inspector.events(count=100)} >= {h.id for h in done}
        runner = CliRunner()
        shown = runner.invoke(
            cli, ["--redis-url", settings.redis_url, "--prefix", prefix, "queues"]
        )
        assert shown.exit_code == 0 and "default" in shown.output, shown.output
        async with api_client(settings) as client:
            queued = await client.post("/task", json={"type": "ok", "payload": 3})
            assert queued.status_code == 202, queued.text
            seed_stats = await client.get("/stats")
            assert seed_stats.status_code == 200 and seed_stats.json()["pending"] == 1
        checks = {c.name: c for c in Doctor(app.inspector).run()}
        assert checks["permissions"].verdict == Verdict.OK, checks["permissions"]
        assert user in checks["permissions"].detail
    finally:
        await app.aclose()
        app.close()
    assert refused(r, user) <= BEST_EFFORT


@pytest.mark.parametrize(
    ("dropped", "missing"),
    [
        ({"+xadd"}, "xadd"),
        ({"+evalsha", "+blpop"}, "evalsha, blpop"),
        ({"&{prefix}:*"}, "publish, subscribe"),
    ],
)
def test_doctor_names_each_missing_permission(
    redis_server: RedisServer, r: redis.Redis, prefix: str, dropped: set[str], missing: str
) -> None:
    name = "u" + uuid.uuid4().hex[:8]
    rules = [
        rule for rule in acl_rules(prefix) if rule not in {d.format(prefix=prefix) for d in dropped}
    ]
    admin(r, "ACL", "SETUSER", name, "on", ">secret", *rules)
    try:
        app = Conveyor(settings=user_settings(redis_server, prefix, name))
        check = {c.name: c for c in Doctor(app.inspector).run()}["permissions"]
        app.close()
    finally:
        admin(r, "ACL", "DELUSER", name)
    assert check.verdict == Verdict.FAIL
    assert check.detail == f"user {name} may not run {missing} on {prefix}:*"
    assert check.fix == f"ACL SETUSER {name} " + " ".join(f"+{c}" for c in missing.split(", "))


def test_doctor_says_when_it_cannot_probe(
    redis_server: RedisServer, r: redis.Redis, prefix: str
) -> None:
    name = "u" + uuid.uuid4().hex[:8]
    rules = [rule for rule in acl_rules(prefix) if rule not in {"+multi", "+acl|whoami"}]
    admin(r, "ACL", "SETUSER", name, "on", ">secret", *rules)
    try:
        app = Conveyor(settings=user_settings(redis_server, prefix, name))
        check = {c.name: c for c in Doctor(app.inspector).run()}["permissions"]
        app.close()
    finally:
        admin(r, "ACL", "DELUSER", name)
    assert check.verdict == Verdict.WARN
    assert check.detail.startswith("cannot probe: MULTI is refused")
    assert "multi" in COMMANDS
