"""Conveyor: a reliable, fast distributed task queue for Python on Redis.

The names below are imported on first use (PEP 562), so that `python -m conveyor` and the
`--workers N` supervisor start without loading Redis clients and metrics they do not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.canvas import chain, chord, group
    from conveyor.context import TaskContext
    from conveyor.errors import (
        BrokerFullError,
        BrokerUnavailableError,
        ConveyorError,
        NotReplicatedError,
        Retry,
        TaskConflictError,
        TaskFailedError,
        TaskNotFoundError,
        WorkflowFailedError,
    )
    from conveyor.model import TaskRecord, TaskState
    from conveyor.producer import TaskHandle
    from conveyor.workflow import WorkflowHandle

__version__ = "0.1.0"

_EXPORTS = {
    "BrokerFullError": "conveyor.errors",
    "BrokerUnavailableError": "conveyor.errors",
    "Conveyor": "conveyor.app",
    "ConveyorError": "conveyor.errors",
    "NotReplicatedError": "conveyor.errors",
    "Retry": "conveyor.errors",
    "TaskConflictError": "conveyor.errors",
    "TaskContext": "conveyor.context",
    "TaskFailedError": "conveyor.errors",
    "TaskHandle": "conveyor.producer",
    "TaskNotFoundError": "conveyor.errors",
    "TaskRecord": "conveyor.model",
    "TaskState": "conveyor.model",
    "WorkflowFailedError": "conveyor.errors",
    "WorkflowHandle": "conveyor.workflow",
    "chain": "conveyor.canvas",
    "chord": "conveyor.canvas",
    "group": "conveyor.canvas",
}

__all__ = [
    "BrokerFullError",
    "BrokerUnavailableError",
    "Conveyor",
    "ConveyorError",
    "NotReplicatedError",
    "Retry",
    "TaskConflictError",
    "TaskContext",
    "TaskFailedError",
    "TaskHandle",
    "TaskNotFoundError",
    "TaskRecord",
    "TaskState",
    "WorkflowFailedError",
    "WorkflowHandle",
    "__version__",
    "chain",
    "chord",
    "group",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
