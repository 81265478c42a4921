"""`conveyor api` as users run it: a subprocess serving HTTP on a loopback socket."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
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


@contextlib.contextmanager
def running_api(
    settings: Settings, tmp_path: Path, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m conveyor ... api` on a free port, with `env` added to a clean environment;
    yields the process and its base URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "conveyor",
        "--redis-url", settings.redis_url, "--prefix", settings.prefix,
        "api", "--port", str(port), "--host", "127.0.0.1",
    ]  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT
        )
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


@pytest.fixture
def api_process(
    settings: Settings, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The API as users run it."""
    with running_api(settings, tmp_path) as running:
        yield running


#: The body limit of the `small_api`: the seed body fits, twice its size does not.
SMALL_LIMIT = 100


@pytest.fixture
def small_api(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """The API with a 100-byte body limit; yields its base URL."""
    with running_api(settings, tmp_path, CONVEYOR_API_MAX_BODY=str(SMALL_LIMIT)) as (_, base):
        yield base


def raw_exchange(base: str, request: bytes, *, close_after: bool = False) -> bytes:
    """Send `request` bytes as they are on a fresh connection; the server's whole answer.
    With `close_after`, the client stops sending (half-closes) right after them."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        if close_after:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and _complete(answer):
                break
        return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def post_task(body: bytes, headers: dict[str, str]) -> bytes:
    lines = [b"POST /task HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(body: bytes, size: int = 10) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


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
        ready = r.lrange(GlobalKeys(prefix).queue("default").ready, 0, -1)
        assert ready == [task_id.rpartition(":")[2].encode()]
        stats = http.get("/stats").json()
        assert (stats["pending"], stats["processing"], stats["dead_letter"]) == (1, 0, 0)
        assert http.get("/readyz").json() == {"status": "ready"}
        schema = http.get("/openapi.json").json()
        assert {"/task", "/stats", "/v1/tasks", "/v1/dead", "/metrics"} <= set(schema["paths"])
        docs = http.get("/docs")
        assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")

    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0


def test_a_chunked_body_within_the_limit_is_taken(
    small_api: str, r: redis.Redis, prefix: str
) -> None:
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    answer = raw_exchange(small_api, post_task(chunked(SEED_BODY), headers))
    assert status_of(answer) == 202, answer
    assert r.llen(GlobalKeys(prefix).queue("default").ready) == 1


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_and_stores_nothing(
    small_api: str, r: redis.Redis, prefix: str, framing: str
) -> None:
    body = b'{"type": "email-notification", "payload": "' + b"x" * SMALL_LIMIT + b'"}'
    headers = {"Content-Type": "application/json"}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        request = post_task(chunked(body), headers)
    else:
        headers["Content-Length"] = str(len(body))
        request = post_task(body, headers)
    answer = raw_exchange(small_api, request)
    assert status_of(answer) == 413, answer
    assert b"payload_too_large" in answer
    assert r.keys(f"{prefix}:*") == []


def test_a_body_shorter_than_its_content_length_stores_nothing(
    api_process: tuple[subprocess.Popen[bytes], str], r: redis.Redis, prefix: str
) -> None:
    """The client declares more than it sends, then stops: the server waits for the rest,
    sees the end of the stream, and never runs the route."""
    _, base = api_process
    headers = {"Content-Type": "application/json", "Content-Length": str(len(SEED_BODY) + 20)}
    answer = raw_exchange(base, post_task(SEED_BODY, headers), close_after=True)
    assert answer == b"" or 400 <= status_of(answer) < 500, answer  # uvicorn just closes
    with httpx.Client(base_url=base, trust_env=False, timeout=5) as http:
        assert http.get("/healthz").status_code == 200  # the server is still serving
    assert r.keys(f"{prefix}:*") == []


def test_a_body_longer_than_its_content_length_is_cut_and_refused(
    api_process: tuple[subprocess.Popen[bytes], str], r: redis.Redis, prefix: str
) -> None:
    """Only the declared bytes are the body: here a truncated JSON document (400)."""
    _, base = api_process
    headers = {"Content-Type": "application/json", "Content-Length": str(len(SEED_BODY) - 5)}
    answer = raw_exchange(base, post_task(SEED_BODY, headers))
    assert status_of(answer) == 400, answer
    assert r.keys(f"{prefix}:*") == []


def test_sigterm_lets_a_request_in_flight_finish(
    api_process: tuple[subprocess.Popen[bytes], str], r: redis.Redis, prefix: str
) -> None:
    """SIGTERM while a request's body is still arriving: the server stops taking new
    connections but answers that request, then exits cleanly."""
    process, base = api_process
    host, port = base.removeprefix("http://").split(":")
    headers = {"Content-Type": "application/json", "Content-Length": str(len(SEED_BODY))}
    request = post_task(SEED_BODY, headers)
    cut = len(request) - 10
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(request[:cut])
        assert r.keys(f"{prefix}:*") == []  # the route has not run: its body is incomplete
        process.send_signal(signal.SIGTERM)

        def refusing() -> bool:  # the shutdown has begun: no new connection is taken
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
            except OSError:
                return True
            return False

        wait_until_sync(refusing, 15, "the server to stop listening")
        sock.sendall(request[cut:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert status_of(answer) == 202, answer
    assert process.wait(15) == 0
    assert r.llen(GlobalKeys(prefix).queue("default").ready) == 1


def test_given_the_app_the_api_refuses_names_it_does_not_register(
    settings: Settings, tmp_path: Path
) -> None:
    """`conveyor api --app` (here through CONVEYOR_API_APP) loads the registry once."""
    with running_api(settings, tmp_path, CONVEYOR_API_APP="tests.support.tasks:app") as (_, base):
        refused = httpx.post(f"{base}/v1/tasks", json={"name": "send_email"}, trust_env=False)
        accepted = httpx.post(f"{base}/task", json={"type": "record"}, trust_env=False)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "unknown_task"
    assert accepted.status_code == 202, accepted.text
