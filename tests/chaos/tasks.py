"""The app the chaos workers run: `python -m conveyor worker tests.chaos.tasks:app`.

Its Redis URL, prefix, lease and retention come from CONVEYOR_* variables set by the
runner; every handler records its attempts in the ledger (CHAOS_LEDGER_URL and
CHAOS_LEDGER_KEY). Each task's first argument is a label unique to its enqueue, so a
task seen anywhere can be traced to the producer call that made it.

What a GIL-holding handler gets (see docs/reliability.md): in a thread, its one long C
call stalls the whole worker, heartbeats included, so past its lease another worker
takes it over: at-least-once, and the stalled attempt's late completion is refused by
its stale fencing token. In a child process (`executor="process"`) the worker's
heartbeats go on, the lease holds, and it runs once.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from conveyor import Conveyor, TaskContext
from tests.chaos import ledger
from tests.support.gil import hold_gil

#: A timeout task's limit; it always sleeps longer.
OVERRUN_TIMEOUT = 0.3
#: Retries of a timeout task: it is started this many times plus one, then dead.
OVERRUN_RETRIES = 1

app = Conveyor()


def _outcome(ctx: TaskContext) -> dict[str, Any]:
    """What a handler returns: its fencing token, so a stale overwrite would show."""
    return {"token": ctx.token, "pid": os.getpid(), "worker": ctx.worker_id}


@app.task(name="work", max_retries=0)
def work(label: str, seconds: float, ctx: TaskContext) -> dict[str, Any]:
    """The ordinary task: records its start and end around a sleep of `seconds` (a
    long one, several leases long, lives on the heartbeats)."""
    ledger.write(ctx, label, "start")
    time.sleep(seconds)
    ledger.write(ctx, label, "end")
    return _outcome(ctx)


@app.task(name="poison", max_retries=0)
def poison(label: str, ctx: TaskContext) -> None:
    """Records its start and, a moment later (its siblings in the process have
    started), kills its own process as a segfault or the OOM killer would."""
    ledger.write(ctx, label, "start")
    time.sleep(0.2)
    os._exit(17)


@app.task(name="overrun", timeout=OVERRUN_TIMEOUT, max_retries=OVERRUN_RETRIES)
async def overrun(label: str, ctx: TaskContext) -> None:
    """Runs past its timeout every time: it is cancelled, retried, then dead ("timeout")."""
    ledger.write(ctx, label, "start")
    await asyncio.sleep(OVERRUN_TIMEOUT * 20)
    ledger.write(ctx, label, "end")


def hold_gil_once(label: str, seconds: float, ctx: TaskContext) -> dict[str, Any]:
    """Holds the GIL for `seconds` on its first attempt only (a takeover returns at once)."""
    ledger.write(ctx, label, "start")
    if ctx.attempt == 1:
        hold_gil(seconds)
    ledger.write(ctx, label, "end")
    return _outcome(ctx)


app.task(name="gil", executor="thread", max_retries=0)(hold_gil_once)
app.task(name="gil_process", executor="process", max_retries=0)(hold_gil_once)
