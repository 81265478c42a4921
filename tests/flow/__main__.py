"""The long proofs: `python -m tests.flow [--only rate,concurrency,...] [--minutes N]`.

At the issue's sizes: 1,000 tasks under 50/s on 4 workers (`rate`, and `rate-burst` with a
burst of 10); 4 workers at concurrency 50 for `--minutes` with a kill every ~10 s
(`concurrency`); 10,000 tasks of A then 10 of B (`fairness`); 50 producers enqueueing one
unique key 1,000 times each (`unique-held`, `unique-churn`); a unique task's worker
killed (`unique-crash`). Prints each proof's figures and violations; exit code 1 if any
proof failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor.settings import Settings
from conveyor.tools.embedded import RedisBinary, RedisServer, find_redis_binaries
from tests.flow import concurrency, fairness, rate, uniqueness

#: Tasks of flow.limited per minute of the concurrency proof: LIMIT runs of 35 ms on
#: average make about 85 a second; this keeps the run near its minutes.
LIMITED_PER_MINUTE = 4_200
#: Seconds between two kills of the concurrency proof.
KILL_EVERY = 10.0

#: A proof: runs on a server's settings and a log directory; returns figures, violations.
Proof = Callable[[Settings, Path], tuple[Any, list[str]]]


def _rate(size: rate.Size) -> Proof:
    def prove(settings: Settings, logs: Path) -> tuple[Any, list[str]]:
        figures = rate.run(settings, logs, size)
        return figures, figures.violations(size)

    return prove


def _concurrency(minutes: float) -> Proof:
    limited = round(minutes * LIMITED_PER_MINUTE)
    kills = max(2, round(minutes * 60 / KILL_EVERY))
    size = concurrency.Size(limited, limited // 2, kills, timeout=minutes * 180 + 60)

    def prove(settings: Settings, logs: Path) -> tuple[Any, list[str]]:
        figures = concurrency.run(settings, logs, size)
        return figures, figures.violations(size)

    return prove


def _fairness(settings: Settings, logs: Path) -> tuple[Any, list[str]]:
    size = fairness.Size()
    figures = fairness.run(settings, logs, size)
    return figures, figures.violations(size)


def _unique(held: bool) -> Proof:
    size = uniqueness.Size(producers=50, each=1000, timeout=300)

    def prove(settings: Settings, logs: Path) -> tuple[Any, list[str]]:
        figures = uniqueness.run(settings, logs, size, held=held)
        return figures, figures.violations(held)

    return prove


def _crash(settings: Settings, logs: Path) -> tuple[Any, list[str]]:
    figures = uniqueness.crash(settings, logs)
    return figures, figures.violations()


def proofs(minutes: float) -> dict[str, Proof]:
    """Every long proof by name."""
    return {
        "rate": _rate(rate.Size(tasks=1000, rate=50)),
        "rate-burst": _rate(rate.Size(tasks=1000, rate=50, burst=10)),
        "concurrency": _concurrency(minutes),
        "fairness": _fairness,
        "unique-held": _unique(held=True),
        "unique-churn": _unique(held=False),
        "unique-crash": _crash,
    }


def newest_redis() -> str:
    """The newest redis-server found."""

    def version(binary: RedisBinary) -> tuple[int, ...]:
        return tuple(int(part) for part in binary.version.split(".") if part.isdigit())

    return max(find_redis_binaries(), key=version).path


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.flow", description=__doc__)
    parser.add_argument("--only", help="comma-separated proof names")
    parser.add_argument("--minutes", type=float, default=3.0, help="of the concurrency proof")
    parser.add_argument("--lease", type=float, default=2.0, help="lease timeout (s)")
    parser.add_argument("--redis-server", help="the redis-server binary (default: newest)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    every = proofs(args.minutes)
    chosen = [name for name in every if not args.only or name in args.only.split(",")]
    if not chosen:
        print(f"no proof matches {args.only!r}; proofs: {', '.join(every)}", file=sys.stderr)
        return 2
    binary = args.redis_server or newest_redis()
    server = RedisServer(binary).start()
    failed = []
    try:
        with tempfile.TemporaryDirectory(prefix="conveyor-flow-") as tmp:
            for name in chosen:
                settings = Settings(
                    redis_url=server.url, prefix="f" + uuid.uuid4().hex[:12],
                    lease_timeout=args.lease,
                )  # fmt: skip
                began = time.monotonic()
                figures, violations = every[name](settings, Path(tmp))
                print(f"## {name} ({time.monotonic() - began:.1f} s)")
                for field, value in dataclasses.asdict(figures).items():
                    print(f"    {field}: {value}")
                for violation in violations:
                    print(f"    FAIL: {violation}")
                if violations:
                    failed.append(name)
                sys.stdout.flush()
    finally:
        server.cleanup()
    print(f"failed: {', '.join(failed)}" if failed else "every proof held")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
