"""Middleware: code that runs around every enqueue and every execution of an app's tasks.

A middleware subclasses `Middleware` and overrides the hooks it needs (all are no-ops).
`Conveyor(middleware=[...])` or `app.add_middleware(m)` registers them in order: the
`before_*` hooks run in that order, the after-hooks (`after_*`, `on_*error`) in reverse,
so the first middleware wraps all the others, as in Dramatiq and ASGI.

The hooks are plain functions, not coroutines: the enqueue hooks run in the caller's
thread or task (sync and async producers alike), the execution hooks on the worker's
event loop, in the asyncio task that runs the attempt (its context variables are the
handler's). They must be quick and must not block; hand I/O to something else.

What a hook's exception does (see docs/middleware.md):

- `before_enqueue`: raised to the caller; nothing of the batch is sent, and the tasks and
  middleware already prepared get `on_enqueue_error`.
- `after_enqueue`, `on_enqueue_error`, `after_execute`, `on_error`, `after_outcome`:
  logged and swallowed. The task is stored (or its outcome decided) already; the
  remaining hooks still run.
- `before_execute`: fails the attempt as the handler raising it would (retry or dead
  letter, by the task's policy); the handler does not run, and the middleware whose
  `before_execute` had run get `on_error`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.broker.records import ClaimedTask, NewTask
    from conveyor.producer import TaskHandle
    from conveyor.task import TaskDefinition

log = logging.getLogger("conveyor.middleware")


@dataclass(slots=True)
class EnqueueContext:
    """One task on its way to Redis, as the enqueue hooks see it."""

    #: the encoded task; replace it to amend what is stored, e.g.
    #: `ctx.task = dataclasses.replace(ctx.task, trace=...)`
    task: NewTask
    #: per-task room for middleware state between its hooks (key it by the middleware)
    scratch: dict[object, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ExecutionContext:
    """One attempt of a task in a worker, as the execution hooks see it."""

    task: ClaimedTask
    #: the task's handler; None for a task no handler is registered for (its attempt gets
    #: only `after_outcome`, "dead": it never runs)
    definition: TaskDefinition | None
    worker_id: str
    #: per-attempt room for middleware state between its hooks (key it by the middleware)
    scratch: dict[object, Any] = field(default_factory=dict)

    @property
    def attempt(self) -> int:
        """The attempt's number, 1 for the first delivery."""
        return self.task.attempts


class Middleware:
    """Hooks around enqueues and executions; override those you need (all are no-ops)."""

    def before_enqueue(self, ctx: EnqueueContext) -> None:
        """Before the task is sent: may amend `ctx.task`; raising cancels the batch."""

    def after_enqueue(self, ctx: EnqueueContext, handle: TaskHandle) -> None:
        """After Redis stored the task (or replayed an idempotency key: `handle.replayed`)."""

    def on_enqueue_error(self, ctx: EnqueueContext, error: BaseException) -> None:
        """The task was not sent: the round trip failed, or a `before_enqueue` raised."""

    def before_execute(self, ctx: ExecutionContext) -> None:
        """Before the handler runs; raising fails the attempt like the handler would."""

    def after_execute(self, ctx: ExecutionContext, result: Any) -> None:
        """After the handler returned `result` (before it is stored)."""

    def on_error(self, ctx: ExecutionContext, error: BaseException) -> None:
        """The attempt ended without a result: the handler (or a `before_execute`) raised,
        it timed out, or it was cancelled (shutdown) or lost its process (it is retried)."""

    def after_outcome(self, ctx: ExecutionContext, outcome: str) -> None:
        """Redis accepted the attempt's `outcome`: succeeded, retried, failed, dead or
        cancelled. Not called for an outcome refused (the lease was lost: another worker
        owns the task) nor for an attempt given back to pending (shutdown, a lost process),
        so each attempt reaches it at most once, and only for what stands."""


# -- running the hooks: only ever called with at least one middleware ---------------


def prepare(middleware: Sequence[Middleware], tasks: list[NewTask]) -> list[EnqueueContext]:
    """Run `before_enqueue` of every middleware on every task, in order.

    If one raises, those already run are unwound (`on_enqueue_error`) and it propagates.
    """
    done: list[EnqueueContext] = []
    for task in tasks:
        ctx = EnqueueContext(task)
        for i, m in enumerate(middleware):
            try:
                m.before_enqueue(ctx)
            except BaseException as exc:
                _unwind_enqueue(middleware[:i], ctx, exc)
                for earlier in reversed(done):
                    _unwind_enqueue(middleware, earlier, exc)
                raise
        done.append(ctx)
    return done


def enqueued(
    middleware: Sequence[Middleware], contexts: list[EnqueueContext], handles: list[TaskHandle]
) -> None:
    """Run `after_enqueue` of every middleware, in reverse, on every stored task."""
    for ctx, handle in zip(contexts, handles, strict=True):
        for m in reversed(middleware):
            _guarded(m.after_enqueue, ctx, handle)


def enqueue_failed(
    middleware: Sequence[Middleware], contexts: list[EnqueueContext], error: BaseException
) -> None:
    """Run `on_enqueue_error` of every middleware, in reverse, on every unsent task."""
    for ctx in contexts:
        _unwind_enqueue(middleware, ctx, error)


def before_execute(middleware: Sequence[Middleware], ctx: ExecutionContext) -> None:
    """Run `before_execute` in order; if one raises, unwind those run and propagate."""
    for i, m in enumerate(middleware):
        try:
            m.before_execute(ctx)
        except BaseException as exc:
            execute_failed(middleware[:i], ctx, exc)
            raise


def after_execute(middleware: Sequence[Middleware], ctx: ExecutionContext, result: Any) -> None:
    """Run `after_execute` in reverse order."""
    for m in reversed(middleware):
        _guarded(m.after_execute, ctx, result)


def execute_failed(
    middleware: Sequence[Middleware], ctx: ExecutionContext, error: BaseException
) -> None:
    """Run `on_error` in reverse order."""
    for m in reversed(middleware):
        _guarded(m.on_error, ctx, error)


def outcome_written(middleware: Sequence[Middleware], ctx: ExecutionContext, outcome: str) -> None:
    """Run `after_outcome` in reverse order."""
    for m in reversed(middleware):
        _guarded(m.after_outcome, ctx, outcome)


def _unwind_enqueue(
    middleware: Sequence[Middleware], ctx: EnqueueContext, error: BaseException
) -> None:
    for m in reversed(middleware):
        _guarded(m.on_enqueue_error, ctx, error)


def _guarded(hook: Callable[[Any, Any], object], ctx: object, value: object) -> None:
    """Call an after-hook; its exception is logged, never raised: what it follows has
    happened already (the task is stored, the attempt decided)."""
    try:
        hook(ctx, value)
    except Exception:
        log.exception("middleware hook %s failed (ignored)", getattr(hook, "__qualname__", hook))
