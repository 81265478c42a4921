"""The long workflow proofs: `python -m tests.workflows [--only chord,chain]`.

At the issue's sizes: a chord of 1,000 children and a chain of 50 steps, each while 4
worker subprocesses are SIGKILLed and replaced (10 kills). Prints each proof's figures and
violations; exit code 1 if any proof failed.
"""

from __future__ import annotations

import argparse
import sys
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.workflows")
    parser.add_argument("--only", default="chord,chain", help="proofs to run, comma-separated")
    chosen = parser.parse_args().only.split(",")
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
            print(f"{name}: {figures}")
            failed |= bool(figures.violations)
    finally:
        server.cleanup()
    print("FAILED" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
