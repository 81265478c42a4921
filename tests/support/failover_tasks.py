"""The app of the failover test's worker subprocess: each run is noted in a file outside
Redis (CONVEYOR_TEST_RUNS), so a task run twice is seen even if Redis lost its record."""

from __future__ import annotations

import os
import time

from conveyor import Conveyor, TaskContext

app = Conveyor()


@app.task(name="note", max_retries=3)
def note(n: int, ctx: TaskContext) -> int:
    """Append `<task id> <time>` to the runs file; one short write, so lines never mix."""
    with open(os.environ["CONVEYOR_TEST_RUNS"], "a") as runs:
        runs.write(f"{ctx.task_id} {time.time():.6f}\n")
    return n
