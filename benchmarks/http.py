"""HTTP producers: `POST /task` and `POST /v1/tasks/batch` under wrk, beside a bare endpoint.

wrk (a separate load process, one thread, 64 connections) drives a server that runs alone
in its own process; the bare endpoint on the same FastAPI + uvicorn stack is the ceiling.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.drivers._common import payload
from conveyor.tools.embedded import free_port

LUA = Path(__file__).parent / "wrk" / "post.lua"
BATCH = 100


def available() -> bool:
    """wrk is on PATH (Debian's package `wrk`)."""
    return shutil.which("wrk") is not None


def _serve(argv: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{argv} exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"{argv} did not listen on {port}")


def wrk(url: str, body: bytes, seconds: float, connections: int = 64) -> float:
    """Requests/s over `seconds`; raises if any answer was not a 2xx."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(LUA), url],
        env={**os.environ, "BENCH_BODY": body.decode()},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return float(match.group(1))


def measure(redis_url: str, seconds: float) -> dict[str, Any]:
    """The bare endpoint, `POST /task` and the batch endpoint, each `seconds` long."""
    task = json.dumps({"type": "noop", "payload": payload(0)}).encode()
    batch = json.dumps({"tasks": [{"name": "noop", "payload": payload(i)} for i in range(BATCH)]})
    results: dict[str, Any] = {"connections": 64, "batch_size": BATCH}
    port = free_port()
    bare = _serve([sys.executable, "-m", "benchmarks.bare_app", str(port)], port, {})
    try:
        wrk(f"http://127.0.0.1:{port}/task", task, 1)  # warm up
        results["bare_post_task"] = wrk(f"http://127.0.0.1:{port}/task", task, seconds)
    finally:
        bare.terminate()
        bare.wait()
    port = free_port()
    env = {"CONVEYOR_REDIS_URL": redis_url, "CONVEYOR_LOG_LEVEL": "WARNING"}
    argv = [sys.executable, "-m", "conveyor", "api", "--port", str(port)]
    api = _serve(argv, port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        wrk(f"{base}/task", task, 1)
        results["post_task"] = wrk(f"{base}/task", task, seconds)
        results["batch_requests"] = wrk(f"{base}/v1/tasks/batch", batch.encode(), seconds, 8)
        results["batch_tasks"] = results["batch_requests"] * BATCH
    finally:
        api.terminate()
        api.wait()
    results["post_task_vs_bare"] = results["post_task"] / results["bare_post_task"]
    return results
