"""`conveyor dashboard` as users run it: a process serving HTTP on a loopback socket, its
live stream, and its refusal to serve an open dashboard beyond this machine."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from click.testing import CliRunner

from conveyor import Conveyor
from conveyor.cli import cli
from conveyor.dashboard.live import Live
from conveyor.settings import Settings
from conveyor.tools.embedded import free_port, is_loopback_host
from tests.support.worker import wait_until_sync


@contextlib.contextmanager
def serving(settings: Settings, tmp_path: Path, *args: str, **env: str) -> Iterator[str]:
    """`python -m conveyor dashboard` on a free port; yields its base URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "conveyor", "--redis-url", settings.redis_url,
        "--prefix", settings.prefix, "dashboard", "--port", str(port), *args,
    ]  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env={**clean, **env}, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{base}/stats", timeout=1, trust_env=False).status_code == 200
            except httpx.TransportError:
                return False

        wait_until_sync(answers, 30, "the dashboard to answer /stats")
        yield base
    finally:
        process.terminate()
        # the live stream may hold a connection: the server closes it within its grace
        process.wait(15)
        assert process.returncode == 0, log.read_text()


def test_it_serves_the_page_the_seed_stats_and_a_live_stream(
    settings: Settings, app: Conveyor, tmp_path: Path
) -> None:
    app.enqueue("job")
    with serving(settings, tmp_path) as base:
        page = httpx.get(base + "/", trust_env=False)
        assert page.status_code == 200 and '<base href="/">' in page.text
        assert httpx.get(base + "/stats", trust_env=False).json()["pending"] == 1
        started = time.monotonic()
        snapshots = []
        with httpx.stream("GET", base + "/api/events", timeout=10, trust_env=False) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    snapshots.append(orjson.loads(line.removeprefix("data: ")))
                    if len(snapshots) == 1:
                        app.enqueue("job")  # the next snapshots see it
                    if snapshots[-1]["overview"]["queues"][0]["pending"] == 2:
                        break
        assert snapshots[0]["redis"] == "up" and snapshots[0]["history"]["window"] == "15m"
        # one snapshot a second: the new task shows within about two
        assert time.monotonic() - started < 5 and len(snapshots) <= 4
    log = (tmp_path / "dashboard.log").read_text()
    assert "no API tokens set: the dashboard is open to anyone on this machine" in log


def test_without_tokens_it_refuses_to_serve_beyond_loopback() -> None:
    env = {"CONVEYOR_API_TOKENS": ""}
    result = CliRunner().invoke(cli, ["dashboard", "--host", "0.0.0.0"], env=env)
    assert result.exit_code == 2
    assert "open to anyone who reaches 0.0.0.0" in result.output


async def test_a_snapshot_says_redis_is_down_when_it_is(settings: Settings) -> None:
    gone = Conveyor(settings=settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        event = await Live(gone.async_inspector(), lost_after=30).snapshot()
    finally:
        await gone.aclose()
    name, data = event.decode().strip().split("\n")
    assert name == "event: snapshot"
    snapshot = orjson.loads(data.removeprefix("data: "))
    assert snapshot["redis"] == "down" and snapshot["error"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_hosts_are_recognised(host: str) -> None:
    assert is_loopback_host(host)
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("example.com")
