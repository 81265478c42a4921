"""`conveyor demo` end to end: its own embedded Redis, every kind of task, a clean exit."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.tools.embedded import env_without_redis_url

#: The labels of the demo's table, in order.
LABELS = ("async email", "sync resize", "process checksum", "retried webhook", "delayed 1s",
          "by name", "poison pill", "bulk:")  # fmt: skip


def line_of(output: str, label: str) -> str:
    """The demo's outcome line for `label`."""
    lines = [line for line in output.splitlines() if line.startswith(label)]
    assert len(lines) == 1, output
    return lines[0]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_demo_on_an_embedded_redis(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "demo", "--tasks", "200"],
        env=env_without_redis_url(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # as a terminal shows both: the log must not cut the table
        text=True,
        timeout=60,
    )
    out = result.stdout
    assert result.returncode == 0, out
    assert "Traceback" not in out
    lines = out.splitlines()
    table = [i for i, line in enumerate(lines) if line.startswith(LABELS)]
    assert table == list(range(table[0], table[0] + len(LABELS))), out  # contiguous
    logged = [i for i, line in enumerate(lines) if " conveyor." in line]
    assert logged and max(logged) < table[0], out  # the worker's log came before, and stopped

    started = re.search(r"embedded Redis \S+ on redis://127\.0\.0\.1:(\d+)/0", out)
    assert started is not None, out
    assert "enqueued 200 tasks in one round trip" in out
    assert "bulk: 200/200 succeeded" in out
    for label in ("async email", "sync resize", "process checksum", "delayed 1s", "by name"):
        assert line_of(out, label).split()[len(label.split())] == "succeeded", out
    webhook = line_of(out, "retried webhook").split()
    assert webhook[2:4] == ["succeeded", "attempts=3"], out
    assert "delivered to https://example.com/hook on attempt 3" in line_of(out, "retried webhook")
    poison = line_of(out, "poison pill").split()
    assert poison[2] == "dead", out
    # the error type and message, and why it ended, rather than just "error"
    assert line_of(out, "poison pill").endswith(
        "ValueError: cannot handle {'bad': True} (reason: error)"
    ), out
    assert re.search(r"^dead letter \S+: ValueError: cannot handle \{'bad': True\}$", out, re.M)

    data = tmp_path / ".conveyor" / "redis"
    assert data.is_dir()
    assert [p for p in data.rglob("*.aof") if p.stat().st_size > 0], sorted(data.rglob("*"))
    assert not answers(int(started.group(1))), "the embedded Redis outlived the demo"
