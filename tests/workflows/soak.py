"""The workflow proofs at the issue's sizes, for `python -m tests.workflows` and the chaos
soak: a chord of 1,000 children and a chain of 50 steps, each while 4 worker subprocesses
are SIGKILLed and replaced (10 kills)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer, find_redis_binaries
from tests.workflows import proofs

LONG = proofs.Size(
    members=1000, member_seconds=0.15, steps=50, step_seconds=0.1, workers=4,
    concurrency=10, kills=10, kill_every=0.35, timeout=900.0,
)  # fmt: skip


def run_proofs(chosen: list[str]) -> bool:
    """Run the proofs named in `chosen` at the long size on a private redis-server, print
    each one's figures; True when none found a violation (the chaos soak runs them too)."""
    binary = find_redis_binaries(virtualenvs=())[0]
    server = RedisServer(binary.path).start()
    failed = False
    try:
        for name in chosen:
            run = {"chord": proofs.run_chord, "chain": proofs.run_chain}[name]
            settings = Settings(
                redis_url=server.url, prefix="wf" + uuid.uuid4().hex[:10], lease_timeout=2.0
            )
            with tempfile.TemporaryDirectory() as logs:
                figures = run(settings, Path(logs), LONG)
            print(f"{name}: {figures}", flush=True)
            failed |= bool(figures.violations)
    finally:
        server.cleanup()
    return not failed
