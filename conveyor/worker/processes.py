"""Child processes for CPU-bound handlers (`executor="process"`).

A handler holding the GIL stalls every thread of its process, heartbeats included; in a
child process it stalls only itself. Each child runs one task at a time, so a task past
its timeout (or cancelled) is stopped by killing its child, which harms no other task.

A child has no connection to Redis: its handler's `ctx.progress` and `ctx.checkpoint` go
up the task's pipe, the worker stores them, and the answer comes back the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import multiprocessing
import signal
import traceback
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from conveyor.context import TaskContext
from conveyor.errors import ConveyorError, TaskTimeoutError, WorkerLostError
from conveyor.traceparent import EXECUTION

#: Stores a report (progress, checkpoint; JSON or None); answers whether it was accepted.
OnReport = Callable[[bytes | None, bytes | None], Awaitable[bool]]
#: The tag of a child's report on its pipe: (REPORT, progress, checkpoint). A handler's
#: outcome is a pair (ok, value).
REPORT = "report"


class RemoteError(ConveyorError):
    """An exception from a child process that could not be sent back as itself."""


class ProcessPool:
    """Up to `size` reusable child processes, started on demand (forkserver)."""

    def __init__(self, size: int) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Child] = []
        self._all: set[_Child] = set()

    async def run(
        self,
        import_path: tuple[str, str],
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
        on_report: OnReport | None = None,
    ) -> Any:
        """Run the handler at `import_path` in a child; raises what it raised. Its context's
        reports go to `on_report`.

        Raises TaskTimeoutError (child killed) past `timeout`, WorkerLostError if the child died.
        """
        async with self._slots:
            child = self._idle.pop() if self._idle else self._spawn()
            request = (*import_path, args, kwargs, EXECUTION.get())
            try:
                async with asyncio.timeout(timeout) as deadline:
                    ok, value = await child.call(request, on_report)
            except TimeoutError:
                self._discard(child)
                if deadline.expired():
                    raise TaskTimeoutError(
                        f"timed out after {timeout}s; its process was killed"
                    ) from None
                raise
            except BaseException:
                self._discard(child)  # dead, or cancelled mid-task: never reuse
                raise
            self._idle.append(child)
        if ok:
            return value
        raise value

    def _spawn(self) -> _Child:
        child = _Child(self._context)
        self._all.add(child)
        return child

    def _discard(self, child: _Child) -> None:
        child.kill()
        self._all.discard(child)

    def shutdown(self) -> None:
        """Kill every child (called after the drain, when none should be busy)."""
        for child in list(self._all):
            self._discard(child)
        self._idle.clear()


class _Child:
    def __init__(self, context: Any) -> None:
        self.conn, child_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(child_end,), daemon=True)
        self.process.start()
        child_end.close()

    async def call(self, request: tuple[Any, ...], on_report: OnReport | None) -> tuple[bool, Any]:
        """Send a task; answer its reports until its outcome comes back."""
        self.conn.send(request)
        while True:
            message = await self._receive()
            if not (len(message) == 3 and message[0] == REPORT):
                return message
            try:
                answer: object = on_report is not None and await on_report(*message[1:])
            except ConveyorError as exc:  # Redis unreachable: the handler hears why
                answer = exc
            self.conn.send(answer)

    async def _receive(self) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(self.conn.fileno(), wake)
        try:
            await readable
        finally:
            loop.remove_reader(self.conn.fileno())
        try:
            message: tuple[Any, ...] = self.conn.recv()
        except (EOFError, OSError):
            code = self.process.exitcode
            raise WorkerLostError(f"its process died (exit code {code})") from None
        return message

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


def _serve(conn: Connection) -> None:
    """Child main loop: run requested handlers until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            module, qualname, args, kwargs, traceparent = conn.recv()
        except (EOFError, OSError):
            return
        kwargs = {name: _linked(value, conn) for name, value in kwargs.items()}
        try:
            with _continued(traceparent):
                result = _resolve(module, qualname)(*args, **kwargs)
                if asyncio.iscoroutine(result):
                    result = asyncio.run(result)
            conn.send((True, result))
        except BaseException as exc:
            detail = traceback.format_exc()
            try:
                exc.add_note(f"raised in a child process:\n{detail}")
                conn.send((False, exc))
            except Exception:
                conn.send((False, RemoteError(f"{type(exc).__name__}: {exc}\n{detail}")))


class _PipeReporter:
    """A child's link to the worker (a `context.Reporter`): each report goes up the pipe,
    and the child waits for the worker's answer. A cancelled task's child is killed, so
    `cancelled` is never set here."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.cancelled = False

    async def report(self, progress: bytes | None, checkpoint: bytes | None) -> bool:
        # the child runs one task; its loop has nothing else to do while it waits
        return self.report_blocking(progress, checkpoint)

    def report_blocking(self, progress: bytes | None, checkpoint: bytes | None) -> bool:
        self.conn.send((REPORT, progress, checkpoint))
        answer = self.conn.recv()
        if isinstance(answer, BaseException):
            raise answer
        return bool(answer)


def _linked(value: Any, conn: Connection) -> Any:
    """A handler's context, linked to the child's pipe; any other argument as it is."""
    if isinstance(value, TaskContext):
        return dataclasses.replace(value, _reporter=_PipeReporter(conn))
    return value


def _continued(traceparent: str | None) -> contextlib.AbstractContextManager[None]:
    """The worker's execution span made current here, when a tracing middleware set one
    (only then is OpenTelemetry imported: it is installed, since the worker used it)."""
    if traceparent is None:
        return contextlib.nullcontext()
    from conveyor.tracing import continued

    return continued(traceparent)


def _resolve(module: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return getattr(target, "fn", target)  # a TaskDefinition wraps the function
