"""`.env` in the working directory and the seeds' variable names, as users run the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor
from conveyor.tools.embedded import RedisServer, free_port
from tests.support.worker import wait_until_sync

ROOT = Path(__file__).resolve().parents[2]
SEED_NAMES = ("REDIS_ADDR", "QUEUE_NAME", "WORKER_CONCURRENCY", "METRICS_PORT")


def bare_env(**extra: str) -> dict[str, str]:
    """This environment without any CONVEYOR_* or seed variable, `tests` importable."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_") and k not in SEED_NAMES
    }
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def conveyor(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "conveyor", *args]
    return subprocess.run(
        command, cwd=cwd, env=bare_env(**env), capture_output=True, text=True, timeout=30
    )


def address(server: RedisServer) -> str:
    return server.url.removeprefix("redis://").rsplit("/", 1)[0]


def test_dot_env_with_redis_addr(
    tmp_path: Path, redis_server: RedisServer, prefix: str, app: Conveyor
) -> None:
    (tmp_path / ".env").write_text(
        f"REDIS_ADDR={address(redis_server)}\nCONVEYOR_PREFIX={prefix}\n"
    )
    result = conveyor(tmp_path, "enqueue", "send")
    assert result.returncode == 0, result.stderr
    record = app.get_record(result.stdout.strip())
    assert record is not None and record.name == "send"


def test_set_variables_win_over_dot_env(
    tmp_path: Path, redis_server: RedisServer, prefix: str, app: Conveyor
) -> None:
    (tmp_path / ".env").write_text(
        f"CONVEYOR_REDIS_URL=redis://127.0.0.1:{free_port()}/0\nCONVEYOR_PREFIX=not-this-one\n"
    )
    result = conveyor(
        tmp_path, "enqueue", "send", CONVEYOR_REDIS_URL=redis_server.url, CONVEYOR_PREFIX=prefix
    )
    assert result.returncode == 0, result.stderr
    assert app.get_record(result.stdout.strip()) is not None


def test_conveyor_redis_url_wins_over_redis_addr(
    tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    result = conveyor(
        tmp_path, "queues", REDIS_ADDR=nowhere, CONVEYOR_REDIS_URL=redis_server.url,
        CONVEYOR_PREFIX=prefix,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "no queues yet\n"), result.stderr
    # and REDIS_ADDR alone is used: nothing listens there
    alone = conveyor(tmp_path, "queues", REDIS_ADDR=nowhere)
    assert alone.returncode == 3 and nowhere in alone.stderr


@pytest.mark.slow
def test_a_worker_configured_by_the_seeds_dot_env(
    tmp_path: Path, redis_server: RedisServer, prefix: str, app: Conveyor
) -> None:
    metrics = free_port()
    (tmp_path / ".env").write_text(
        f"REDIS_ADDR={address(redis_server)}\nCONVEYOR_PREFIX={prefix}\n"
        f"QUEUE_NAME=emails\nWORKER_CONCURRENCY=7\nMETRICS_PORT={metrics}\n"
    )
    command = [sys.executable, "-m", "conveyor", "worker", "tests.support.tasks:app"]
    with subprocess.Popen(
        command, cwd=tmp_path, env=bare_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as worker:
        try:
            wait_until_sync(lambda: bool(app.inspector.workers()), 20, "the worker to register")
            [info] = app.inspector.workers()
            assert (info["queues"], info["concurrency"]) == (["emails"], 7)
            answer = httpx.get(f"http://127.0.0.1:{metrics}/metrics", trust_env=False)
            assert answer.status_code == 200 and "conveyor_" in answer.text
            # the CLI sees it too, through the same .env
            listed = conveyor(tmp_path, "workers")
            assert json.loads(listed.stdout)["concurrency"] == 7
        finally:
            worker.terminate()
            worker.wait(20)
    assert worker.returncode == 0  # SIGTERM drained it cleanly
