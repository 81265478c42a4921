"""A bad Redis URL is one clear line: exit 2 when malformed, 3 when what answers is not Redis."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from conveyor.cli import cli
from conveyor.errors import ConfigurationError
from conveyor.settings import Settings
from conveyor.tools.embedded import env_without_redis_url

ROOT = Path(__file__).resolve().parents[2]
MALFORMED = ["notaurl", "http://127.0.0.1:8080", "redis://127.0.0.1:port/0", "redis://h:6379/x"]
COMMANDS = [["queues"], ["enqueue", "send"], ["workers"], ["dlq", "list"]]


def conveyor(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="conveyor", env=env)


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """A redis:// URL whose port is an HTTP server's."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(400)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    server.shutdown()
    server.server_close()


def assert_one_line(result: Result, code: int, text: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and text in errors[0], result.stderr


@pytest.mark.parametrize("url", MALFORMED)
@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_malformed_url_is_a_usage_error(url: str, args: list[str]) -> None:
    assert_one_line(conveyor("--redis-url", url, *args), 2, "bad Redis URL")
    assert_one_line(conveyor(*args, "--redis-url", url), 2, "bad Redis URL")


def test_a_malformed_url_from_the_environment_too() -> None:
    result = conveyor("queues", env={"CONVEYOR_REDIS_URL": "notaurl"})
    assert_one_line(result, 2, "it must start with redis://, rediss://, unix://")


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_server_that_is_not_redis_exits_3(http_url: str, args: list[str]) -> None:
    assert_one_line(conveyor(*args, "--redis-url", http_url), 3, "is not Redis")


def worker(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "conveyor", "worker", "tests.support.tasks:app", *args]
    env = {**env_without_redis_url(), "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("url", "code", "text"), [
    ("notaurl", 2, "bad Redis URL"),
    ("http://127.0.0.1:1", 2, "bad Redis URL"),
    (None, 3, "is not Redis"),
])  # fmt: skip
def test_the_worker_exits_at_once_on_a_bad_url(
    http_url: str, url: str | None, code: int, text: str
) -> None:
    process = worker("--redis-url", url or http_url, "--metrics-port", "0")
    assert process.returncode == code, process.stderr
    assert "Traceback" not in process.stderr
    assert text in process.stderr


@pytest.mark.parametrize("url", MALFORMED)
def test_settings_refuse_a_malformed_url(url: str) -> None:
    with pytest.raises(ConfigurationError, match="bad Redis URL"):
        Settings(redis_url=url)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://h", "redis://", "unix:///tmp/r.sock?db=1"]
)
def test_settings_accept_what_redis_py_accepts(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url
