"""`conveyor up --demo` as a new user runs it: the whole system on an embedded Redis, demo
tasks flowing (some succeed, some die), a clean stop in order on SIGTERM, and the tasks
still there when it starts again."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.tools.embedded import RedisServer, free_port
from tests.support.worker import LOAD_SLACK, wait_until_sync

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def conveyor_up(home: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m conveyor up --demo` in `home`, on free ports, its output in `log`."""
    command = [
        sys.executable, "-m", "conveyor", "up", "--demo", "--shutdown-grace", "5",
        "--api-port", str(free_port()), "--dashboard-port", str(free_port()),
        "--metrics-port", str(free_port()), "--data-dir", str(home / "redis"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=home, env=env, stdout=out, stderr=out)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def redis_url_of(log: Path) -> str:
    """The embedded Redis' URL, as `up` announces it."""
    found: list[str] = []

    def announced() -> bool:
        found[:] = re.findall(r"embedded Redis \S+ on (redis://\S+)", log.read_text())
        return bool(found)

    wait_until_sync(announced, 30 + LOAD_SLACK, "the embedded Redis")
    return found[0]


def test_up_runs_the_demo_stops_in_order_and_keeps_its_tasks(tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    with conveyor_up(tmp_path, log) as up:
        app = Conveyor(redis_url=redis_url_of(log))
        inspector = app.inspector

        def flowing() -> bool:
            assert up.poll() is None, log.read_text()
            stats = {s.name: s for s in inspector.queue_stats()}
            _, points = inspector.history("15m")
            succeeded = sum(p.succeeded * p.seconds for p in points)
            return "reports" in stats and stats["reports"].dead >= 1 and succeeded >= 5

        # reports of a month that does not exist die after one retry; the rest succeed
        wait_until_sync(flowing, 60 + LOAD_SLACK, "demo tasks to succeed and to die")
        assert "dashboard  http://127.0.0.1:" in log.read_text()
        assert "load:      conveyor load --url http://127.0.0.1:" in log.read_text()
        _, [dead, *_] = inspector.dead_letters(["reports"])
        app.close()
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0, log.read_text()
    output = log.read_text()
    order = [output.index(line) for line in (
        "SIGTERM: stopping in order", "api stopped (0)", "worker stopped (0)",
        "dashboard stopped (0)", "redis | stopped",
    )]  # fmt: skip
    assert order == sorted(order), output
    # between the runs: nothing was left active, and the append-only file kept everything
    with RedisServer(data_dir=tmp_path / "redis", appendonly=True) as server:
        stopped = Conveyor(redis_url=server.url)
        assert all(s.active == 0 for s in stopped.inspector.queue_stats())
        assert stopped.inspector.dead_letter(dead.id) is not None
        stopped.close()
    # and `up` starts again on the same data: the earlier tasks are still there
    with conveyor_up(tmp_path, tmp_path / "again.log") as again:
        app = Conveyor(redis_url=redis_url_of(tmp_path / "again.log"))
        record = app.inspector.dead_letter(dead.id)
        assert record is not None and record.args == dead.args
        app.close()
        again.send_signal(signal.SIGTERM)
        assert again.wait(60) == 0


def test_up_needs_an_app_or_the_demo(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "up"], cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "name the app whose tasks the workers run (MODULE:APP), or --demo" in done.stderr


def test_up_stops_everything_when_a_component_dies(tmp_path: Path) -> None:
    """An app that cannot be imported: its workers exit, and `up` stops the rest, exit 1."""
    log = tmp_path / "broken.log"
    command = [
        sys.executable, "-m", "conveyor", "up", "no_such_module:app",
        "--api-port", str(free_port()), "--dashboard-port", str(free_port()),
        "--metrics-port", "0", "--data-dir", str(tmp_path / "redis"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    with log.open("wb") as out:
        done = subprocess.run(command, cwd=tmp_path, env=env, stdout=out, stderr=out, timeout=90)
    output = log.read_text()
    assert done.returncode == 1, output
    assert "cannot import 'no_such_module'" in output
    assert "the worker exited" in output and "redis | stopped" in output
