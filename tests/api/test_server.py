"""`conveyor api` as users run it: a subprocess serving HTTP on a loopback socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from conveyor.settings import Settings
from conveyor.tools.embedded import free_port
from tests.support.worker import wait_until_sync

SEED_BODY = b'{"type": "email-notification", "payload": "user@example.com"}'


@pytest.fixture
def api_process(
    settings: Settings, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m conveyor ... api` on a free port; yields the process and its base URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "conveyor",
        "--redis-url", settings.redis_url, "--prefix", settings.prefix,
        "api", "--port", str(port), "--host", "127.0.0.1",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{base}/healthz", timeout=1, trust_env=False).status_code == 200
            except httpx.TransportError:
                return False

        wait_until_sync(healthy, 30, "the API to answer /healthz")
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        print(log.read_text())  # shown by pytest when a test fails


def test_the_seed_curl_example_over_a_socket(
    api_process: tuple[subprocess.Popen[bytes], str], app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    process, base = api_process
    with httpx.Client(base_url=base, trust_env=False, timeout=5) as http:
        response = http.post(
            "/task", content=SEED_BODY, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 202
        body = response.json()
        assert set(body) == {"status", "task_id"} and body["status"] == "queued"
        task_id = body["task_id"]

        stored = app.get_record(task_id)
        assert stored is not None
        assert (stored.name, stored.queue, stored.state, stored.args) == (
            "email-notification",
            "default",
            "pending",
            ["user@example.com"],
        )
        assert r.zscore(GlobalKeys(prefix).queue("default").pending, task_id) is not None
        stats = http.get("/stats").json()
        assert (stats["pending"], stats["processing"], stats["dead_letter"]) == (1, 0, 0)
        assert http.get("/readyz").json() == {"status": "ready"}
        schema = http.get("/openapi.json").json()
        assert {"/task", "/stats", "/v1/tasks", "/v1/dead", "/metrics"} <= set(schema["paths"])
        docs = http.get("/docs")
        assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")

    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
