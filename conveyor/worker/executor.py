"""Runs claimed tasks: decode, invoke the handler under its timeout, record the outcome."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from conveyor import middleware as hooks
from conveyor import serializers
from conveyor.broker.ops import encode_error
from conveyor.broker.records import ClaimedTask
from conveyor.broker.scripts import Call
from conveyor.context import TaskContext
from conveyor.errors import (
    ConveyorError,
    SerializationError,
    TaskTimeoutError,
    WorkerLostError,
)
from conveyor.middleware import ExecutionContext, Middleware
from conveyor.worker.completer import Completer
from conveyor.worker.instrumentation import Instrumentation
from conveyor.worker.processes import ProcessPool
from conveyor.worker.reporting import TaskLink
from conveyor.worker.stats import StatsWriter
from conveyor.worker.threads import DaemonThreadPool
from conveyor.worker.workflows import WorkflowStepper

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.task import TaskDefinition

log = logging.getLogger("conveyor.worker")
#: Most argument shapes (task, count, keyword names) remembered as binding cleanly.
MAX_SHAPES = 10_000
#: Most unknown task names remembered as already warned about.
MAX_UNKNOWN = 1_000


#: The dead-letter reason of a task whose name no handler is registered under.
UNKNOWN = "unknown task"


class Undeliverable(ConveyorError):
    """A task that can never run as stored: unknown name, corrupt data, wrong arguments."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Invocation:
    """A decoded task, ready to call."""

    definition: TaskDefinition
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float | None
    #: the context a sync handler's thread runs in (set only when the app has middleware,
    #: so what their hooks put in context variables, a span say, reaches the handler)
    context: contextvars.Context | None = None


class Executor:
    """Runs up to `concurrency` tasks at once; async handlers on the loop, sync ones in
    daemon threads, `executor="process"` ones in child processes.

    A task whose worker died before (a suspect poison pill) runs alone: if it kills this
    process too, no innocent task dies with it and has its crash count raised. The
    fetcher sets `wants_suspect` when it skipped one; the executor then takes no new
    task until it is idle, so the suspect is claimed next.
    """

    def __init__(
        self,
        app: Conveyor,
        completer: Completer,
        stats: StatsWriter,
        worker_id: str,
        concurrency: int,
        processes: int,
        threads: int | None = None,
    ) -> None:
        self.app = app
        #: the hooks of every attempt: the worker's own measurements first (so they wrap
        #: the rest), then the app's middleware registered by now
        self.middleware: list[Middleware] = [Instrumentation(stats), *app.middleware]
        self.ops = completer.broker.ops
        self.completer = completer
        #: a workflow task's step runs before its outcome is written
        self.workflows = WorkflowStepper(completer.broker)
        #: attempts this worker finished (any outcome), for its description
        self.processed = 0
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.running: dict[str, asyncio.Task[None]] = {}
        self.threads = DaemonThreadPool(min(threads or concurrency, concurrency))
        self.processes = ProcessPool(processes)
        self._slot_freed = asyncio.Event()
        self._isolated: str | None = None
        self.wants_suspect = False
        self._shapes_bound: set[tuple[str, int, frozenset[str]]] = set()
        #: the link of each running task: its context's reports, its cancel flag
        self._links: dict[str, TaskLink] = {}
        #: what the hooks see of each running task's attempt
        self._attempts: dict[str, ExecutionContext] = {}
        self._unknown_warned: set[str] = set()

    @property
    def idle(self) -> bool:
        """True when nothing runs: the only time a suspect may be claimed."""
        return not self.running

    @property
    def free_slots(self) -> int:
        """How many more tasks may start now (none while a suspect runs or is awaited)."""
        if self._isolated is not None or (self.wants_suspect and self.running):
            return 0
        return self.concurrency - len(self.running)

    async def wait_for_slot(self) -> None:
        """Return once at least one slot is free."""
        while self.free_slots <= 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def start(self, task: ClaimedTask) -> None:
        """Run `task` in the background (the caller holds its lease)."""
        if task.crashes > 0:
            log.info("task %s lost its worker %d time(s): running it alone", task.id, task.crashes)
            self._isolated = task.id
        self.running[task.id] = asyncio.create_task(self._run(task), name=f"conveyor:{task.id}")

    def cancel(self, task_id: str) -> None:
        """Stop a running task that was cancelled (a no-op for a task not running here,
        or already told). An async handler's coroutine is cancelled and a process
        handler's child killed; a thread handler only sees `ctx.cancelled` (a thread cannot
        be stopped). The task then ends cancelled (see `_run`)."""
        link = self._links.get(task_id)
        if link is None or link.cancelled:
            return
        log.info("task %s was cancelled; stopping it", task_id)
        link.cancelled = True
        if link.interruptible:
            self.running[task_id].cancel()

    async def drain(self, grace: float) -> None:
        """Let running tasks finish for up to `grace` seconds, then cancel the rest.

        A cancelled task is given back to pending at once (not after its lease expires).
        A sync handler cannot be interrupted: its thread is abandoned, its result ignored.
        """
        if self.running and grace > 0:
            await asyncio.wait(list(self.running.values()), timeout=grace)
        left = list(self.running.values())
        if left:
            log.warning("cancelling %d unfinished tasks; they return to pending", len(left))
            for job in left:
                job.cancel()
            await asyncio.wait(left)
        self.threads.shutdown()
        self.processes.shutdown()

    async def _run(self, task: ClaimedTask) -> None:
        definition = self.app.tasks.get(task.name)
        ctx = self._attempts[task.id] = ExecutionContext(task, definition, self.worker_id)
        link = self._links[task.id] = TaskLink(
            self.completer.broker, task, interruptible=self._interruptible(definition)
        )
        try:
            try:
                invocation = self._decode(task, definition, link)
            except Undeliverable as exc:
                self._report_undeliverable(task, exc)
                error = encode_error(exc, "")
                await self._workflow_failed(task, "dead", error)
                self._finish(task, self.ops.dead_letter(task, exc.reason, error), "dead")
                return
            try:
                result = await self._invoke_hooked(ctx, invocation)
            except asyncio.CancelledError:
                if not link.cancelled:  # the worker stops: back to pending
                    self.completer.submit(task, self.ops.requeue(task, crashed=False))
                    raise
                cast(asyncio.Task[None], asyncio.current_task()).uncancel()
                self._end_cancelled(task)
            except WorkerLostError as exc:
                log.error("task %s: %s", task.id, exc)
                requeue = self.ops.requeue(task, crashed=True)
                self.completer.submit(task, requeue, self.workflows.requeued(task))
            except BaseException as exc:  # a handler's SystemExit is its failure, not ours
                if link.cancelled:
                    self._end_cancelled(task)
                else:
                    await self._failed(task, invocation.definition, exc)
            else:
                if link.cancelled:  # a thread handler that saw ctx.cancelled
                    self._end_cancelled(task)
                else:
                    await self._succeeded(task, result)
        finally:
            del self.running[task.id]
            del self._links[task.id]
            del self._attempts[task.id]
            if self._isolated == task.id:
                self._isolated = None
            self._slot_freed.set()

    def _report_undeliverable(self, task: ClaimedTask, exc: Undeliverable) -> None:
        """Log a task that goes to the dead letters undelivered; an unknown name once only:
        a producer misspelling it sends thousands, each worth no more than the first."""
        if exc.reason != UNKNOWN:
            log.error("task %s is undeliverable (%s): %s", task.id, exc.reason, exc)
            return
        if task.name in self._unknown_warned:
            return
        if len(self._unknown_warned) < MAX_UNKNOWN:
            self._unknown_warned.add(task.name)
        known = ", ".join(sorted(self.app.tasks)[:5]) or "none"
        log.warning(
            "no handler registered for task %r: its tasks go to the dead letters as %r "
            "(first: %s; logged once per name). Registered here: %s",
            task.name, UNKNOWN, task.id, known,
        )  # fmt: skip

    @staticmethod
    def _interruptible(definition: TaskDefinition | None) -> bool:
        return definition is None or definition.is_async or definition.executor == "process"

    def _decode(
        self, task: ClaimedTask, definition: TaskDefinition | None, link: TaskLink
    ) -> Invocation:
        if definition is None:
            raise Undeliverable(UNKNOWN, f"no handler registered for {task.name!r}")
        try:
            args = serializers.loads(task.args) if task.args else []
            kwargs = serializers.loads(task.kwargs) if task.kwargs else {}
        except SerializationError as exc:
            raise Undeliverable("corrupt record", str(exc)) from None
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise Undeliverable("corrupt record", "args must be a list and kwargs an object")
        if definition.context_parameter:
            kwargs[definition.context_parameter] = self._context(task, link)
        # binding depends only on the argument count and keyword names: check each shape once
        shape = (task.name, len(args), frozenset(kwargs))
        if shape not in self._shapes_bound:
            try:
                definition.signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise Undeliverable("bad arguments", f"{task.name}: {exc}") from None
            if len(self._shapes_bound) < MAX_SHAPES:
                self._shapes_bound.add(shape)
        timeouts = (task.timeout, definition.defaults.timeout, self.app.settings.timeout)
        timeout = next((t for t in timeouts if t), None)
        return Invocation(definition, args, kwargs, timeout)

    async def _invoke_hooked(self, ctx: ExecutionContext, call: Invocation) -> Any:
        """`_invoke` between the middleware's hooks, here on the loop in this task's
        context (for a process handler too: its child sees none of it)."""
        hooks.before_execute(self.middleware, ctx)  # raising: fails the attempt
        if self.app.middleware and call.definition.executor == "thread":
            call = dataclasses.replace(call, context=contextvars.copy_context())
        try:
            result = await self._invoke(ctx.task, call)
        except BaseException as exc:
            hooks.execute_failed(self.middleware, ctx, exc)
            raise
        hooks.after_execute(self.middleware, ctx, result)
        return result

    def _context(self, task: ClaimedTask, link: TaskLink) -> TaskContext:
        try:
            checkpoint = serializers.loads(task.checkpoint) if task.checkpoint else None
        except SerializationError as exc:  # a damaged checkpoint: start afresh, say why
            log.warning("task %s: its checkpoint cannot be read (%s); ignored", task.id, exc)
            checkpoint = None
        fields = (task.id, task.name, task.queue, task.attempts, task.token, self.worker_id)
        return TaskContext(*fields, checkpoint, link)

    async def _invoke(self, task: ClaimedTask, call: Invocation) -> Any:
        definition = call.definition
        if definition.executor == "process":
            link = self._links[task.id]
            return await self.processes.run(
                definition.import_path, call.args, call.kwargs, call.timeout, link.report
            )
        if call.timeout is None:  # the common case: no timer to arm
            return await self._call(call)
        if not definition.is_async:
            return await self._call_timed_in_thread(task, call, call.timeout)
        async with asyncio.timeout(call.timeout) as deadline:
            try:
                return await self._call(call)
            except asyncio.CancelledError:
                if deadline.expired():
                    raise TaskTimeoutError(f"timed out after {call.timeout}s") from None
                raise

    def _call(self, call: Invocation) -> Awaitable[Any]:
        """The handler's run: its coroutine, or its call in a worker thread."""
        definition = call.definition
        if definition.is_async:
            return cast(Awaitable[Any], definition.fn(*call.args, **call.kwargs))
        fn = functools.partial(definition.fn, *call.args, **call.kwargs)
        if call.context is not None:  # middleware ran: the handler sees their context
            fn = functools.partial(call.context.run, fn)
        return self.threads.run(fn).result

    async def _call_timed_in_thread(
        self, task: ClaimedTask, call: Invocation, timeout: float
    ) -> Any:
        """A sync handler under its timeout, which counts from when a thread starts it (it
        may wait for one first); past it, its thread is abandoned and replaced."""
        fn = functools.partial(call.definition.fn, *call.args, **call.kwargs)
        if call.context is not None:
            fn = functools.partial(call.context.run, fn)
        job = self.threads.run(fn, timed=True)
        try:
            await cast(asyncio.Future[None], job.started)
            async with asyncio.timeout(timeout) as deadline:
                try:
                    return await job.result
                except asyncio.CancelledError:
                    if deadline.expired():
                        log.warning("task %s: its thread is abandoned past its timeout", task.id)
                        self.threads.abandon(job)
                        raise TaskTimeoutError(f"timed out after {timeout}s") from None
                    raise
        finally:
            job.result.cancel()  # no-op once settled; else a job still queued is skipped

    async def _succeeded(self, task: ClaimedTask, result: Any) -> None:
        try:
            encoded = serializers.dumps(result)
        except SerializationError as exc:
            log.error("task %s returned a result that is not JSON: %s", task.id, exc)
            error = encode_error(exc, "")
            await self._workflow_failed(task, "dead", error)
            call = self.ops.dead_letter(task, "result not serializable", error)
            self._finish(task, call, "dead")
            return
        if task.workflow is not None:
            await self._stepped(task, self.workflows.succeeded(task, encoded))
        self.completer.ack(task, encoded, self._written(task, "succeeded"))

    async def _workflow_failed(self, task: ClaimedTask, state: str, error: bytes) -> None:
        """A workflow task's failure reaches its workflow before it is written."""
        if task.workflow is not None:
            await self._stepped(task, self.workflows.failed(task, state, error))

    async def _stepped(self, task: ClaimedTask, step: Awaitable[None]) -> None:
        """Await a workflow step; cancelled (a drain), the task goes back to pending and its
        next run repeats the step."""
        try:
            await step
        except asyncio.CancelledError:
            self.completer.submit(task, self.ops.requeue(task, crashed=False))
            raise

    async def _failed(
        self, task: ClaimedTask, definition: TaskDefinition, exc: BaseException
    ) -> None:
        error = encode_error(exc, "".join(traceback.format_exception(exc)))
        delay = definition.retry_policy(task.max_retries).next_delay(exc, task.failures)
        name = type(exc).__name__
        if delay is not None:
            log.info("task %s failed (%s: %s); retry in %.2fs", task.id, name, exc, delay)
            self._finish(task, self.ops.retry(task, delay, error), "retried")
            return
        reason = "timeout" if isinstance(exc, TaskTimeoutError) else "error"
        keep = definition.dead_letter
        log.warning("task %s failed for good (%s: %s)", task.id, name, exc)
        await self._workflow_failed(task, "dead" if keep else "failed", error)
        call = self.ops.dead_letter(task, reason, error, keep=keep)
        self._finish(task, call, "dead" if keep else "failed")

    def _end_cancelled(self, task: ClaimedTask) -> None:
        """The handler of a cancelled task stopped: the task ends cancelled (whatever the
        handler returned or raised), never retried."""
        self._finish(task, self.ops.end_cancel(task), "cancelled")

    def _finish(self, task: ClaimedTask, call: Call, outcome: str) -> None:
        """Queue the outcome's script; count it once Redis accepted it."""
        self.completer.submit(task, call, self._written(task, outcome))

    def _written(
        self, task: ClaimedTask, outcome: str, ctx: ExecutionContext | None = None
    ) -> Callable[[Any], None]:
        """What follows Redis' reply to an outcome; called while the attempt runs (or
        with its `ctx`, which the reply outlives)."""
        ctx = ctx or self._attempts[task.id]

        def written(reply: Any) -> None:
            if reply:
                self.processed += 1
                hooks.outcome_written(self.middleware, ctx, outcome)
            elif outcome != "cancelled":
                # refused: the token was stale (another worker owns the task now), or the
                # task was cancelled as it finished: end it so, unless it is not cancelling
                log.warning(
                    "task %s: lease lost; outcome dropped (another worker owns it, or it was "
                    "cancelled)",
                    task.id,
                )
                self.completer.submit(
                    task, self.ops.end_cancel(task), self._written(task, "cancelled", ctx)
                )

        return written
