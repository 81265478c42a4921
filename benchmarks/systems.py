"""The systems under test: Conveyor in the project's environment, each peer in its venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import venvs

DRIVERS = Path(__file__).parent / "drivers"
#: the order of the columns in every table
PEERS = ("celery", "rq", "dramatiq", "huey", "arq", "saq", "taskiq")


@dataclass(frozen=True)
class System:
    """One queue library and the interpreter that runs its driver."""

    key: str
    python: Path
    #: the driver's name when it is not `key`: the A/B runs Conveyor's as two systems
    driver: str = ""
    #: variables for the driver (and its workers): how a variant of a driver is chosen
    env: tuple[tuple[str, str], ...] = ()
    #: the only scenarios it runs (the suite's keys, e.g. e2e_1), if not all
    only: tuple[str, ...] = ()

    @property
    def driver_name(self) -> str:
        return self.driver or self.key

    @property
    def is_conveyor(self) -> bool:
        return self.driver_name == "conveyor"

    def runs(self, scenario: str) -> bool:
        """Whether this system takes part in `scenario` (a suite key, e.g. e2e_1)."""
        return not self.only or scenario in self.only

    def run(self, spec: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
        """Run one scenario in a fresh driver process; its one JSON line is the result."""
        driver = DRIVERS / f"{self.driver_name}_driver.py"
        done = subprocess.run(
            [str(self.python), str(driver), json.dumps(spec)],
            cwd=DRIVERS,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **dict(self.env)},
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{self.key} {spec['scenario']} failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def conveyor() -> System:
    return System("conveyor", Path(sys.executable))


#: Conveyor's driver with plain `def` handlers run on the worker's threads
SYNC_HANDLERS = (("BENCH_HANDLERS", "sync"),)


def conveyor_sync() -> System:
    """Conveyor with sync handlers, end to end only: the other scenarios do not run a
    handler, and would measure the same code as the "conveyor" column."""
    return System(
        "conveyor_sync", Path(sys.executable), "conveyor", SYNC_HANDLERS, ("e2e_1", "e2e_2")
    )


def peers(names: list[str], root: Path) -> list[System]:
    """The peers asked for, their virtualenvs built first if needed."""
    return [System(name, venvs.python_of(name, root)) for name in names]
