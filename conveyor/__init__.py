"""Conveyor: a reliable, fast distributed task queue for Python on Redis."""

from conveyor.app import Conveyor
from conveyor.context import TaskContext
from conveyor.errors import (
    BrokerUnavailableError,
    ConveyorError,
    Retry,
    TaskConflictError,
    TaskFailedError,
    TaskNotFoundError,
)
from conveyor.model import TaskRecord, TaskState
from conveyor.task import TaskHandle

__version__ = "0.1.0"

__all__ = [
    "BrokerUnavailableError",
    "Conveyor",
    "ConveyorError",
    "Retry",
    "TaskConflictError",
    "TaskContext",
    "TaskFailedError",
    "TaskHandle",
    "TaskNotFoundError",
    "TaskRecord",
    "TaskState",
    "__version__",
]
