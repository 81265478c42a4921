"""What a handler may learn about the attempt it is running."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Passed to a handler that declares a parameter annotated `TaskContext`.

    `token` grows with every delivery of the task: write it with your downstream
    results and refuse writes carrying a smaller one, and a worker that lost its lease
    (paused, partitioned) can never overwrite the work of the one that took over.
    """

    task_id: str
    name: str
    queue: str
    attempt: int
    token: int
    worker_id: str
