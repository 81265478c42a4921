"""What a handler may learn about the attempt it is running, and what it may report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor import serializers
from conveyor.errors import ConveyorError, LeaseLostError

#: Most bytes a checkpoint may take as JSON: it lives in the task's record, read by every
#: claim, so it holds a position to resume from, not the work's data.
MAX_CHECKPOINT_BYTES = 64 * 1024
#: Most characters of a progress message.
MAX_MESSAGE_CHARS = 1000


class Reporter(Protocol):
    """The worker's side of a context: where progress goes and whence a cancel comes."""

    #: true once the task is cancelled while it runs
    cancelled: bool

    async def report(self, progress: bytes | None, checkpoint: bytes | None) -> bool:
        """Store progress and/or a checkpoint; False if this attempt lost its task."""
        ...

    def report_blocking(self, progress: bytes | None, checkpoint: bytes | None) -> bool:
        """`report` from a handler's thread, waiting for the answer."""
        ...


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Passed to a handler that declares a parameter annotated `TaskContext`.

    `token` grows with every delivery of the task: write it with your downstream
    results and refuse writes carrying a smaller one, and a worker that lost its lease
    (paused, partitioned) can never overwrite the work of the one that took over.

    `progress` and `checkpoint` are fenced by that token too (they raise LeaseLostError
    once this attempt lost its task), and renew the task's lease: see
    docs/progress-and-cancel.md.
    """

    task_id: str
    name: str
    queue: str
    attempt: int
    token: int
    worker_id: str
    #: what the previous attempt of this task saved with `checkpoint`, or None
    last_checkpoint: Any = None
    _reporter: Reporter | None = field(default=None, repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled while running. An async handler is stopped
        (its coroutine cancelled); a sync one in a thread cannot be, and should check this
        between steps and return: whatever it returns, the task ends cancelled."""
        return self._reporter is not None and self._reporter.cancelled

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the task got (0.0 to 1.0), from a sync handler (in its thread)."""
        self._send(encode_progress(fraction, message), None)

    async def progress_async(self, fraction: float, message: str | None = None) -> None:
        """Like `progress`, from an async handler."""
        await self._send_async(encode_progress(fraction, message), None)

    def checkpoint(self, data: Any) -> None:
        """Save `data` (JSON-encodable) for the next attempt's `last_checkpoint`, from a sync
        handler (in its thread)."""
        self._send(None, encode_checkpoint(data))

    async def checkpoint_async(self, data: Any) -> None:
        """Like `checkpoint`, from an async handler."""
        await self._send_async(None, encode_checkpoint(data))

    def _send(self, progress: bytes | None, checkpoint: bytes | None) -> None:
        _accepted(self._linked().report_blocking(progress, checkpoint), self.task_id)

    async def _send_async(self, progress: bytes | None, checkpoint: bytes | None) -> None:
        _accepted(await self._linked().report(progress, checkpoint), self.task_id)

    def _linked(self) -> Reporter:
        if self._reporter is None:
            raise ConveyorError("this context cannot report: it was not made by a worker")
        return self._reporter

    def __reduce__(self) -> tuple[Any, ...]:
        # a process handler's context crosses to its child without the link to the worker
        # (not picklable); the child links it to its pipe (see worker/processes.py)
        fields = (self.task_id, self.name, self.queue, self.attempt, self.token)
        return (TaskContext, (*fields, self.worker_id, self.last_checkpoint))


def on_loop_error() -> ConveyorError:
    """The error of a blocking report made on the event loop it would wait for."""
    return ConveyorError(
        "ctx.progress() and ctx.checkpoint() block: in an async handler, await "
        "ctx.progress_async() or ctx.checkpoint_async()"
    )


def encode_progress(fraction: float, message: str | None) -> bytes:
    """The progress object a record keeps (JSON), validated: a clear error now, not a
    corrupt record later."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise TypeError(f"progress fraction must be a number, not {type(fraction).__name__}")
    if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        raise ValueError(f"progress fraction must be between 0.0 and 1.0, not {fraction}")
    if message is not None and not isinstance(message, str):
        raise TypeError(f"progress message must be a string, not {type(message).__name__}")
    if message is not None and len(message) > MAX_MESSAGE_CHARS:
        raise ValueError(f"progress message is over {MAX_MESSAGE_CHARS} characters")
    return serializers.dumps({"fraction": float(fraction), "message": message})


def encode_checkpoint(data: Any) -> bytes:
    """A checkpoint as JSON; SerializationError if it is not JSON-encodable, ValueError
    past MAX_CHECKPOINT_BYTES."""
    encoded = serializers.dumps(data)
    if len(encoded) > MAX_CHECKPOINT_BYTES:
        raise ValueError(
            f"checkpoint is {len(encoded)} bytes as JSON, over {MAX_CHECKPOINT_BYTES}: keep a "
            "position to resume from, and the data itself elsewhere"
        )
    return encoded


def _accepted(accepted: bool, task_id: str) -> None:
    if not accepted:
        raise LeaseLostError(
            f"task {task_id}: this attempt no longer holds the task (lease lost, or the task "
            "is being cancelled); its report was refused"
        )
