"""One error tree for everything Conveyor raises."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class of every error Conveyor raises."""


class ConfigurationError(ConveyorError):
    """A setting, name or option is invalid."""


class InvalidNameError(ConfigurationError):
    """A queue or task name breaks the naming rules (charset, length)."""


class SerializationError(ConveyorError):
    """A payload or result cannot be encoded as JSON."""


class CorruptRecordError(SerializationError, ValueError):
    """A task record in Redis cannot be decoded (written by hand, or damaged)."""


class BrokerUnavailableError(ConveyorError):
    """Redis cannot be reached, or did not answer in time."""


class BrokerFullError(BrokerUnavailableError):
    """Redis refused a write: its memory is at `maxmemory` (policy noeviction).

    Redis refuses a script before it writes anything, so a refused call stored nothing. A
    bulk enqueue is one script call per queue and chunk of tasks: when a later one is
    refused, the tasks of those before it are stored, and their ids are in `stored`.
    """

    def __init__(
        self,
        stored: tuple[str, ...] = (),
        total: int = 0,
        memory: tuple[int, int, str] | None = None,
    ) -> None:
        if stored:
            what = f"{len(stored)} of the {total} tasks were stored (ids in .stored), the rest not"
        else:
            what = "nothing was stored"
        usage = "used memory above maxmemory"
        if memory is not None:
            used, limit, policy = memory
            usage = f"{used / 2**20:.1f} MiB used of maxmemory {limit / 2**20:.1f} MiB, {policy}"
        super().__init__(
            f"Redis is full ({usage}): it refused the write, {what}. "
            "Workers free memory as tasks finish and their records expire; retry later, or "
            "raise maxmemory"
        )
        self.stored = stored
        #: (used_memory, maxmemory, maxmemory_policy), read just after the refusal if Redis
        #: answered
        self.memory = memory


class NotReplicatedError(ConveyorError):
    """Redis stored the tasks, but fewer replicas than asked confirmed them in time (WAIT).

    They are on the master (their ids in `stored`) and will run; until a replica has them,
    a failover could lose them. Enqueuing them again under the same idempotency keys is
    safe; without keys it would store them twice.
    """

    def __init__(self, stored: tuple[str, ...], replicas: int, needed: int, waited: float) -> None:
        super().__init__(
            f"{len(stored)} task(s) stored on the master, but {replicas} of the {needed} "
            f"replica(s) asked for confirmed them within {waited:g}s: a failover before they "
            "replicate would lose them (ids in .stored)"
        )
        self.stored = stored
        self.replicas = replicas
        self.needed = needed


class TaskNotFoundError(ConveyorError):
    """No record exists for this task id (never enqueued, or expired)."""


class TaskConflictError(ConveyorError):
    """The task is in a state that forbids the requested change."""

    def __init__(self, task_id: str, state: str, action: str) -> None:
        super().__init__(f"cannot {action} task {task_id}: it is {state}")
        self.task_id = task_id
        self.state = state


class ResultTimeoutError(ConveyorError, TimeoutError):
    """The task did not finish within the time the caller waited."""


class TaskFailedError(ConveyorError):
    """The task ended without a result (dead, failed or cancelled)."""

    def __init__(self, task_id: str, state: str, error: dict[str, str] | None) -> None:
        detail = f": {error.get('type')}: {error.get('message')}" if error else ""
        super().__init__(f"task {task_id} ended {state}{detail}")
        self.task_id = task_id
        self.state = state
        self.error = error


class WorkflowNotFoundError(ConveyorError):
    """No workflow exists with this id (never enqueued, or expired after it ended)."""


class WorkflowFailedError(ConveyorError):
    """The workflow stopped: one of its tasks ended without a result (policy "stop")."""

    def __init__(self, workflow_id: str, error: dict[str, object] | None) -> None:
        detail = ""
        if isinstance(error, dict):
            cause = error.get("error")
            if isinstance(cause, dict):
                detail = f": node {error.get('node')}: {cause.get('type')}: {cause.get('message')}"
        super().__init__(f"workflow {workflow_id} failed{detail}")
        self.workflow_id = workflow_id
        self.error = error


class Retry(ConveyorError):
    """Raised by a handler to ask for another attempt, optionally after `delay` seconds."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay = delay


class TaskTimeoutError(ConveyorError, TimeoutError):
    """A handler ran past its task's timeout."""


class WorkerLostError(ConveyorError):
    """The process running a task died before the task finished."""


class LeaseLostError(ConveyorError):
    """This attempt no longer holds its task (its lease was lost, or the task is being
    cancelled): what it reports is refused, so a late attempt never overwrites a newer one."""
