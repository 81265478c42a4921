"""Conveyor on a real Sentinel deployment (master, replica, three sentinels): producers,
workers and the seed API through a redis+sentinel:// URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor import Conveyor, TaskState
from conveyor.cli import cli
from conveyor.errors import BrokerUnavailableError
from conveyor.settings import Settings
from conveyor.tools.doctor import Doctor
from tests.api.conftest import api_client
from tests.conftest import REDIS_BINARIES
from tests.support.sentinel import SentinelGroup
from tests.support.tls import make_certificates
from tests.support.worker import running_worker, wait_all

pytestmark = pytest.mark.slow

#: The newest redis-server found runs the group (Sentinel is not a per-version concern).
BINARY = REDIS_BINARIES[max(REDIS_BINARIES, key=lambda v: tuple(map(int, v.split("."))))]


@pytest.fixture(scope="module")
def sentinel_group() -> Iterator[SentinelGroup]:
    """One Sentinel group for this module's tests (none of them fails it over)."""
    group = SentinelGroup(BINARY).start()
    yield group
    group.stop()


@pytest.fixture
def sentinel_settings(sentinel_group: SentinelGroup, prefix: str) -> Settings:
    return Settings(redis_url=sentinel_group.url, prefix=prefix, retry_backoff_base=0.01)


async def test_tasks_run_end_to_end_through_the_sentinels(
    sentinel_settings: Settings, sentinel_group: SentinelGroup
) -> None:
    app = Conveyor(settings=sentinel_settings)
    attempts: dict[int, int] = {}

    @app.task(max_retries=1)
    async def double(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if x == 3 and attempts[x] == 1:
            raise RuntimeError("once")  # retried once, then succeeds
        return 2 * x

    try:
        handles = [double.enqueue(x) for x in range(5)]  # sync producer
        handles.append(await double.enqueue_async(10))  # async producer
        async with running_worker(app):
            await wait_all(handles, TaskState.SUCCEEDED, 15)
        assert [h.result(timeout=1) for h in handles] == [0, 2, 4, 6, 8, 20]
        assert attempts[3] == 2
        checks = {check.name: check for check in Doctor(app.inspector).run()}
        nodes = ",".join(f"127.0.0.1:{port}" for port in sentinel_group.sentinel_ports)
        master = f"127.0.0.1:{sentinel_group.master.port}"
        expected = f"Sentinel: master 'conveyor' now at {master} (sentinels {nodes}), TLS off"
        assert checks["connection"].detail == expected
    finally:
        await app.aclose()
        app.close()


def test_the_cli_and_doctor_through_the_sentinels(
    sentinel_group: SentinelGroup, prefix: str
) -> None:
    where = ["--redis-url", sentinel_group.url, "--prefix", prefix]
    result = CliRunner().invoke(cli, [*where, "doctor"])
    assert result.exit_code == 0, result.output
    master = f"127.0.0.1:{sentinel_group.master.port}"
    assert f"Sentinel: master 'conveyor' now at {master}" in result.output
    assert "user default may run every command Conveyor needs" in result.output


async def test_the_seed_api_through_the_sentinels(sentinel_settings: Settings) -> None:
    async with api_client(sentinel_settings) as client:
        queued = await client.post("/task", json={"type": "email-notification", "payload": "a"})
        assert queued.status_code == 202, queued.text
        stats = await client.get("/stats")
        assert stats.status_code == 200
        assert stats.json()["queues"]["default"]["pending"] == 1, stats.json()


async def test_sentinel_over_tls_with_a_user_and_a_sentinel_password(
    tmp_path: Path, prefix: str
) -> None:
    """rediss+sentinel://user:password@.../service?sentinel_password=: TLS to the sentinels
    and the master, the master's ACL user, the sentinels' own password."""
    files = make_certificates(tmp_path)
    group = SentinelGroup(BINARY, tls=files, user=("app", "pw1"), sentinel_password="pw2")
    group.start()
    settings = Settings(
        redis_url=group.url,
        prefix=prefix,
        redis_tls_ca=str(files.ca),
        redis_tls_cert=str(files.client_cert),
        redis_tls_key=str(files.client_key),
    )
    app = Conveyor(settings=settings)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    try:
        handles = [double.enqueue(1), await double.enqueue_async(2)]
        async with running_worker(app):
            await wait_all(handles, TaskState.SUCCEEDED, 15)
        assert [h.result(timeout=1) for h in handles] == [2, 4]
        checks = {check.name: check for check in Doctor(app.inspector).run()}
        assert checks["connection"].detail.endswith(", TLS on"), checks["connection"]
        assert checks["permissions"].detail.startswith("user app may run every command")
        wrong = Conveyor(settings=settings.replace(redis_url=group.url.replace("pw2", "nope")))
        try:
            with pytest.raises(BrokerUnavailableError, match="No master found for 'conveyor'"):
                wrong.enqueue("anything")
        finally:
            wrong.close()
    finally:
        await app.aclose()
        app.close()
        group.stop()
