"""OpenTelemetry tracing of tasks: a span per enqueue and per execution, one trace across.

Needs the `otel` extra (`pip install 'conveyor-queue[otel]'`); nothing else in Conveyor
imports this module, so the core runs without OpenTelemetry.

`conveyor.enqueue <task>` (PRODUCER) is a child of the span active where the task is
enqueued; its W3C `traceparent` is stored with the task (`NewTask.trace`). A worker's
`conveyor.execute <task>` (CONSUMER) is that span's child, and is current while the
handler runs: spans the handler makes (an HTTP call, a query) belong to the same trace.
A task enqueued where no span is active keeps the `traceparent` it was given (the REST
API stores its request's header), so the execution still joins the caller's trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from conveyor import __version__
from conveyor.middleware import EnqueueContext, ExecutionContext, Middleware
from conveyor.producer import TaskHandle
from conveyor.traceparent import EXECUTION

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # the core without the extra: say which to install
    raise ImportError(
        "conveyor.tracing needs OpenTelemetry: pip install 'conveyor-queue[otel]'"
    ) from exc

#: the `messaging.system` of Conveyor's spans
SYSTEM = "conveyor"
_HEADER = "traceparent"


class TracingMiddleware(Middleware):
    """Traces every enqueue and execution of the app's tasks with OpenTelemetry.

    Args:
        tracer_provider: where spans go (default: the global provider, which the
            application configures with the OpenTelemetry SDK).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("conveyor", __version__, tracer_provider=tracer_provider)
        self.propagator = TraceContextTextMapPropagator()

    # -- enqueue -----------------------------------------------------------------------

    def before_enqueue(self, ctx: EnqueueContext) -> None:
        """Open the PRODUCER span and store its `traceparent` with the task."""
        task = ctx.task
        span = self.tracer.start_span(
            f"conveyor.enqueue {task.name}",
            context=self._producer_parent(task.trace),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "send",
                "messaging.operation.name": "enqueue",
                "messaging.destination.name": task.queue,
                "messaging.message.id": task.id,
                "conveyor.task.name": task.name,
            },
        )
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        if _HEADER in carrier:  # not when nothing samples: the given trace then stays
            ctx.task = dataclasses.replace(task, trace=carrier[_HEADER])
        ctx.scratch[self] = span

    def after_enqueue(self, ctx: EnqueueContext, handle: TaskHandle) -> None:
        """Close the span; a replay names the first task's id, which the caller gets."""
        span: trace.Span = ctx.scratch[self]
        if handle.replayed:
            span.set_attribute("messaging.message.id", handle.id)
            span.set_attribute("conveyor.replayed", True)
        span.end()

    def on_enqueue_error(self, ctx: EnqueueContext, error: BaseException) -> None:
        """Close the span (if it was opened) as failed."""
        span: trace.Span | None = ctx.scratch.get(self)
        if span is not None:
            _failed(span, error)
            span.end()

    def _producer_parent(self, given: str | None) -> otel_context.Context:
        """The active span's context, or else the task's given `traceparent`'s."""
        current = otel_context.get_current()
        if given is None or trace.get_current_span(current).get_span_context().is_valid:
            return current
        return self.propagator.extract({_HEADER: given})

    # -- execution ---------------------------------------------------------------------

    def before_execute(self, ctx: ExecutionContext) -> None:
        """Open the CONSUMER span under the stored `traceparent`; make it current."""
        task = ctx.task
        parent = self.propagator.extract({_HEADER: task.trace} if task.trace else {})
        span = self.tracer.start_span(
            f"conveyor.execute {task.name}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "execute",
                "messaging.destination.name": task.queue,
                "messaging.message.id": task.id,
                "conveyor.task.name": task.name,
                "conveyor.task.attempt": task.attempts,
                "conveyor.worker.id": ctx.worker_id,
            },
        )
        current = trace.set_span_in_context(span, parent)
        token = otel_context.attach(current)
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=current)
        ctx.scratch[self] = span, token, EXECUTION.set(carrier.get(_HEADER))

    def after_execute(self, ctx: ExecutionContext, result: Any) -> None:
        """Close the span (its status stays unset: the convention for success)."""
        span, token, execution = ctx.scratch.pop(self)
        EXECUTION.reset(execution)
        otel_context.detach(token)
        span.end()

    def on_error(self, ctx: ExecutionContext, error: BaseException) -> None:
        """Close the span with the error recorded; a cancelled attempt (the worker shuts
        down and gives the task back) is marked so, not as an error."""
        span, token, execution = ctx.scratch.pop(self)
        EXECUTION.reset(execution)
        otel_context.detach(token)
        if isinstance(error, asyncio.CancelledError):
            span.set_attribute("conveyor.cancelled", True)
        else:
            _failed(span, error)
        span.end()


@contextlib.contextmanager
def continued(traceparent: str) -> Iterator[None]:
    """The span `traceparent` names made current, for a process handler's child: the spans
    its handler makes are children of the execution span in the worker."""
    parent = TraceContextTextMapPropagator().extract({_HEADER: traceparent})
    token = otel_context.attach(parent)
    try:
        yield
    finally:
        otel_context.detach(token)


def _failed(span: trace.Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
