"""The worker's own measurements as a middleware: Prometheus metrics and the shared history
the dashboard charts, counted from the same hooks any middleware gets.

Every worker runs it first (so it wraps the app's middleware). It counts an outcome only
once Redis accepted it (`after_outcome`): a refused outcome (the lease was lost) is
counted by the worker that owns the task then, never twice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from conveyor import metrics
from conveyor.errors import WorkerLostError
from conveyor.middleware import ExecutionContext, Middleware
from conveyor.worker.stats import StatsWriter

#: The scratch key of an attempt's start (perf_counter seconds).
_STARTED = object()


class Instrumentation(Middleware):
    """Wait and run latencies, and outcomes: to Prometheus and to the StatsWriter."""

    def __init__(self, stats: StatsWriter) -> None:
        self.stats = stats

    def before_execute(self, ctx: ExecutionContext) -> None:
        task = ctx.task
        waited = _waited(ctx)
        metrics.child(metrics.TASK_WAIT, task.queue).observe(waited)
        self.stats.latency(task.queue, "wait", waited)
        ctx.scratch[_STARTED] = time.perf_counter()

    def after_execute(self, ctx: ExecutionContext, result: Any) -> None:
        self._ran(ctx)

    def on_error(self, ctx: ExecutionContext, error: BaseException) -> None:
        # a run cut short by a shutdown or a lost process says nothing of how long the
        # handler takes: it is not measured (the attempt is given back, not ended)
        if not isinstance(error, asyncio.CancelledError | WorkerLostError):
            self._ran(ctx)

    def after_outcome(self, ctx: ExecutionContext, outcome: str) -> None:
        task = ctx.task
        metrics.child(metrics.TASKS_PROCESSED, task.queue, task.name, outcome).inc()
        self.stats.outcome(task.queue, task.name, outcome)

    def _ran(self, ctx: ExecutionContext) -> None:
        elapsed = time.perf_counter() - ctx.scratch[_STARTED]
        task = ctx.task
        metrics.child(metrics.TASK_DURATION, task.queue, task.name).observe(elapsed)
        self.stats.latency(task.queue, "run", elapsed)


def _waited(ctx: ExecutionContext) -> float:
    """Seconds from enqueue (or the due time of a delayed task or retry) to this claim."""
    task = ctx.task
    ready = max(task.enqueued_at_ms, task.due_at_ms or 0)
    return max(0.0, (task.claimed_at_ms - ready) / 1000)
