"""The app of the periodic tests' worker subprocesses: one schedule, `tick`, every second.

Its misfire policy comes from PERIODIC_MISFIRE (default "skip"): restarting the workers
with another one upserts the changed definition, as a redeploy would. The handler counts
its runs per task id in `<prefix>:periodic-ledger` (a HASH), through its own connection.
"""

from __future__ import annotations

import os

from conveyor import Conveyor, TaskContext
from tests.support.handlers import _client

app = Conveyor()


def ledger_key(prefix: str) -> str:
    """HASH task id -> how many times a handler ran it."""
    return f"{prefix}:periodic-ledger"


@app.periodic(id="tick", every=1, misfire=os.environ.get("PERIODIC_MISFIRE", "skip"))  # type: ignore[arg-type]
@app.task(name="tick", max_retries=0)
def tick(ctx: TaskContext) -> None:
    """Counts this run in the ledger."""
    prefix = os.environ["CONVEYOR_PREFIX"]
    _client(os.environ["CONVEYOR_REDIS_URL"]).hincrby(ledger_key(prefix), ctx.task_id, 1)
