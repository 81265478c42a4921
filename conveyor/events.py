"""State-change events: what each queue's event stream holds, as Python sees it.

Every script that changes a task's state appends one entry to its queue's stream, in the
same atomic call (see `event` in broker/lua/prelude.lua): an event is never lost while the
change stands, and never written for a change that did not happen. Readers keep their own
cursor (the stream id of the last event they saw), so any number of them, the CLI, the
API's server-sent events and the handles waiting for a result, read without affecting
each other or the workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

#: Entries a queue's stream keeps, roughly: Redis trims whole nodes of it (MAXLEN ~), so it
#: may hold up to a node more. About 80 bytes an event: some 0.8 MB a queue at the cap.
EVENTS_MAX_LEN = 10_000


class EventKind(StrEnum):
    """What happened to a task."""

    ENQUEUED = "enqueued"  # stored, pending
    SCHEDULED = "scheduled"  # stored or deferred (rate limit) until `due_at`
    REPLACED = "replaced"  # a unique task not yet started got new arguments (`state`)
    DUE = "due"  # a scheduled task or a waiting retry became pending
    STARTED = "started"  # claimed by `worker`, attempt `attempt`
    PROGRESS = "progress"  # the handler reported `fraction` (and `message`)
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"  # failed; the next attempt is due at `due_at`
    FAILED = "failed"  # failed for good, not kept in the dead-letter queue
    DEAD = "dead"  # failed for good, in the dead-letter queue (`reason`)
    CANCELLING = "cancelling"  # cancel asked while running: its worker stops it
    CANCELLED = "cancelled"
    REQUEUED = "requeued"  # given back by a stopping worker, pending again
    RECOVERED = "recovered"  # its worker or process died: pending again (`crashes`)
    REPLAYED = "replayed"  # a dead letter sent back to pending
    DELETED = "deleted"


#: The events after which a task runs no more.
FINAL_KINDS = frozenset(
    {
        EventKind.SUCCEEDED,
        EventKind.FAILED,
        EventKind.DEAD,
        EventKind.CANCELLED,
        EventKind.DELETED,
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    """One state change of one task.

    `id` is the stream entry's id (`<ms>-<seq>`), unique and increasing within its
    queue: the cursor to resume after it. `at` is Redis' clock (ms) when it happened.
    `fields` holds what the kind adds (attempt, worker, due_at, reason, ...), as text.
    """

    id: str
    queue: str
    kind: str
    task_id: str
    task: str
    at: int
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        """True when the task runs no more after this event."""
        return self.kind in FINAL_KINDS

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: for the CLI's `--json` and the API's server-sent events."""
        return {
            "id": self.id,
            "queue": self.queue,
            "event": self.kind,
            "task_id": self.task_id,
            "task": self.task,
            "at": self.at,
            **self.fields,
        }
