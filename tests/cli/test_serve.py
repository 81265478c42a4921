"""`conveyor api` and `conveyor dashboard` as users start them: where they listen, their
access log, and a port in use (exit 4); `conveyor workers` with none alive."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from conveyor.settings import Settings
from tests.cli.conftest import Invoke

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))\n")
#: The page each server answers without a token, on loopback.
PROBES = {"api": "/healthz", "dashboard": "/stats"}


def command(settings: Settings, *args: str) -> list[str]:
    connection = ["--redis-url", settings.redis_url, "--prefix", settings.prefix]
    return [sys.executable, "-m", "conveyor", *connection, *args]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}


def read_line(process: subprocess.Popen[str], timeout: float = 20) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "no line in time"
    return process.stdout.readline()


@contextmanager
def serving(settings: Settings, *args: str) -> Iterator[subprocess.Popen[str]]:
    """The server as a subprocess; stopped after the block if still running, pipes closed."""
    with subprocess.Popen(
        command(settings, *args), env=clean_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    ) as process:  # fmt: skip
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("server", ["api", "dashboard"])
def test_it_says_where_it_listens_and_logs_no_request(settings: Settings, server: str) -> None:
    with serving(settings, server, "--port", "0") as process:
        first = read_line(process)
        match = LISTENING.fullmatch(first)
        assert match is not None, first
        # port 0: the line names the port the system chose, and it serves there
        assert int(match[2]) > 0
        assert httpx.get(match[1] + PROBES[server], trust_env=False).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.stdout is not None and process.stdout.read() == ""
        assert process.wait(10) == 0


@pytest.mark.parametrize("server", ["api", "dashboard"])
def test_access_log_prints_each_request(settings: Settings, server: str) -> None:
    with serving(settings, server, "--port", "0", "--access-log") as process:
        match = LISTENING.fullmatch(read_line(process))
        assert match is not None
        httpx.get(match[1] + PROBES[server] + "?probe=1", trust_env=False)
        logged = read_line(process)
    assert f'"GET {PROBES[server]}?probe=1 HTTP/1.1" 200' in logged


@pytest.mark.parametrize("server", ["api", "dashboard"])
def test_a_port_in_use_exits_4_in_one_line(settings: Settings, server: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = subprocess.run(
            command(settings, server, "--port", str(port)),
            env=clean_env(), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert process.returncode == 4, process.stderr
    # (the dashboard warns first that it has no tokens)
    errors = [line for line in process.stderr.splitlines() if "Error" in line]
    assert errors == [f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert process.stderr.endswith(f"{errors[0]}\n") and "Traceback" not in process.stderr
    assert process.stdout == ""


def test_workers_says_when_none_is_alive(invoke: Invoke) -> None:
    result = invoke("workers")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no workers alive\n")
