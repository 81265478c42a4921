"""Every Redis key name Conveyor uses, built in this one place.

All keys of a queue share the `{queue}` hash tag, so a queue lives in one Redis Cluster
slot and every script touching it is cluster-safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.errors import InvalidNameError
from conveyor.names import validate_prefix, validate_queue_name
from conveyor.options import PRIORITY_RANGE


@dataclass(frozen=True, slots=True)
class GlobalKeys:
    """Keys that span queues; never touched by per-queue scripts."""

    prefix: str

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    @property
    def queues(self) -> str:
        """SET of queue names ever enqueued to."""
        return f"{self.prefix}:queues"

    @property
    def workers(self) -> str:
        """ZSET worker id -> last heartbeat (ms); `{workers}` keeps the registry in one slot."""
        return f"{self.prefix}:{{workers}}:index"

    @property
    def worker_prefix(self) -> str:
        """Start of the per-worker keys; the workers script receives it in KEYS."""
        return f"{self.prefix}:{{workers}}:worker:"

    def worker(self, worker_id: str) -> str:
        """STRING (JSON) describing one worker; expires unless renewed."""
        return self.worker_prefix + worker_id

    def presence(self, worker_id: str) -> str:
        """LIST a worker's presence connection blocks on; nothing is ever pushed to it."""
        return f"{self.prefix}:{{workers}}:presence:{worker_id}"

    @property
    def reaper(self) -> str:
        """STRING the id of the worker surveying the others for the dead; expires."""
        return f"{self.prefix}:{{workers}}:reaper"

    @property
    def stats_prefix(self) -> str:
        """Start of the history buckets' keys."""
        return f"{self.prefix}:{{stats}}:"

    def stats(self, step: int, bucket: int) -> str:
        """HASH of the outcome counts and latency histograms of all workers in one time
        bucket (`step` seconds wide, starting at epoch second `bucket`); expires."""
        return f"{self.stats_prefix}{step}:{bucket}"

    @property
    def audit(self) -> str:
        """LIST of operator actions (JSON), newest first, trimmed to a bound."""
        return f"{self.prefix}:{{audit}}:log"

    @property
    def schedules(self) -> str:
        """ZSET schedule id -> when its next tick is due (ms; +inf while paused). The
        `{schedules}` tag keeps every schedule key in one slot, so the schedule scripts
        are cluster-safe."""
        return f"{self.prefix}:{{schedules}}:index"

    @property
    def schedule_prefix(self) -> str:
        """Start of the schedule hashes' keys."""
        return f"{self.prefix}:{{schedules}}:schedule:"

    def schedule(self, schedule_id: str) -> str:
        """HASH one schedule: its definition (`spec`, JSON) and state (cursor, paused,
        last run); see broker/schedules.py."""
        return self.schedule_prefix + schedule_id

    def queue(self, name: str) -> QueueKeys:
        """The keys of one queue."""
        return QueueKeys(self.prefix, validate_queue_name(name))

    @property
    def workflows(self) -> str:
        """ZSET workflow id -> when it was enqueued (ms); entries outlive the workflows'
        keys, which expire after they end (readers skip the missing)."""
        return f"{self.prefix}:{{workflows}}:index"

    @property
    def workflows_launching(self) -> str:
        """ZSET workflow id -> when it was stored (ms), until its first tasks are enqueued:
        one a producer left here (it died in between) is launched by a worker."""
        return f"{self.prefix}:{{workflows}}:launching"

    def workflow(self, workflow_id: str) -> WorkflowKeys:
        """The keys of one workflow."""
        return WorkflowKeys(self.prefix, validate_workflow_id(workflow_id))


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Keys of one queue, all in the `{queue}` slot."""

    prefix: str
    queue: str

    @property
    def base(self) -> str:
        """Common start of every key of this queue, e.g. `conveyor:{emails}:`."""
        return f"{self.prefix}:{{{self.queue}}}:"

    @property
    def pending(self) -> str:
        """ZSET task id -> priority band and time; lowest score is claimed first. Holds the
        pending tasks of any priority but the default, and suspects (see `ready`)."""
        return self.base + "pending"

    @property
    def ready(self) -> str:
        """LIST of pending tasks of the default priority, oldest first, each as the ULID of
        its id (the queue is the list's): O(1) to add and take at any depth, and 28 bytes
        an entry. Claims take the higher priorities from `pending` first, then the default
        priority's entries there in turns with this list, then the lower ones."""
        return self.base + "ready"

    @property
    def active(self) -> str:
        """ZSET task id -> lease deadline (ms)."""
        return self.base + "active"

    @property
    def scheduled(self) -> str:
        """ZSET task id -> due time (ms): delayed tasks and retries waiting for backoff."""
        return self.base + "scheduled"

    @property
    def retrying(self) -> str:
        """ZSET id -> due time (ms): the retries among `scheduled`, so they can be counted
        apart; an entry leaves when due (promote_due), cancelled or deleted."""
        return self.base + "retrying"

    @property
    def dead(self) -> str:
        """ZSET task id -> time it died (ms)."""
        return self.base + "dead"

    @property
    def cancels(self) -> str:
        """Pub/sub channel (not a key) on which cancel.lua names a running task of this
        queue that was cancelled; the queue's workers listen to it."""
        return self.base + "cancels"

    @property
    def paused(self) -> str:
        """STRING present while the queue is paused."""
        return self.base + "paused"

    @property
    def signal(self) -> str:
        """LIST of at most one element, pushed when work arrives; idle workers BLPOP it."""
        return self.base + "signal"

    @property
    def events(self) -> str:
        """STREAM of the queue's state changes (see conveyor/events.py), capped near
        EVENTS_MAX_LEN entries; written by the scripts, read with a cursor."""
        return self.base + "events"

    @property
    def task_prefix(self) -> str:
        """Start of task hash keys; scripts that claim by id receive it in KEYS."""
        return self.base + "task:"

    def task(self, task_id: str) -> str:
        """HASH the task record."""
        return self.task_prefix + task_id

    def claim_request(self, request_id: str) -> str:
        """LIST ids one claim request leased, kept for a lease (answers a client retry)."""
        return self.base + "claim:" + request_id

    def idempotency(self, key: str) -> str:
        """STRING idempotency key -> task id, expiring with its window."""
        return self.base + "idem:" + key

    # Flow control: scripts get `flow_prefix` in KEYS and name these keys from it (see
    # prelude.lua), so only tasks that use an option ever touch them.

    @property
    def flow_prefix(self) -> str:
        """Start of the flow-control keys below."""
        return self.base + "flow:"

    def unique(self, key: str) -> str:
        """STRING the id of the live task holding a unique key (a throttle's expires)."""
        return self.flow_prefix + "unique:" + key

    def slots(self, key: str) -> str:
        """SET ids of the active tasks holding a slot of a concurrency key."""
        return self.flow_prefix + "slots:" + key

    def waiting(self, key: str) -> str:
        """LIST ids of pending tasks waiting for a slot of a concurrency key, oldest first."""
        return self.flow_prefix + "waiting:" + key

    @property
    def held(self) -> str:
        """SET the concurrency keys with a slot in use."""
        return self.flow_prefix + "held"

    @property
    def blocked(self) -> str:
        """SET the concurrency keys with tasks waiting for a slot."""
        return self.flow_prefix + "blocked"

    def rate(self, key: str) -> str:
        """STRING a rate limit's theoretical arrival time (GCRA, ms); expires when idle."""
        return self.flow_prefix + "rate:" + key

    @property
    def rates(self) -> str:
        """SET the rate keys used in this queue (their buckets expire; the names stay)."""
        return self.flow_prefix + "rates"

    @property
    def groups(self) -> str:
        """ZSET fair group -> the virtual finish time of its last pending task."""
        return self.flow_prefix + "groups"

    @property
    def virtual_time(self) -> str:
        """STRING the virtual start time of the last grouped task claimed (fair queuing)."""
        return self.flow_prefix + "vtime"


#: A workflow id: a ULID (see ids.new_ulid).
WORKFLOW_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def validate_workflow_id(workflow_id: str) -> str:
    """Return `workflow_id` if it is a workflow id, else raise InvalidNameError."""
    if not isinstance(workflow_id, str) or not WORKFLOW_ID.fullmatch(workflow_id):
        raise InvalidNameError(f"invalid workflow id {workflow_id!r}")
    return workflow_id


@dataclass(frozen=True, slots=True)
class WorkflowKeys:
    """Keys of one workflow, all in its `{workflow:<id>}` slot, so workflow_step.lua is
    cluster-safe. Its tasks live in their queues' slots: the worker enqueues them."""

    prefix: str
    id: str

    @property
    def base(self) -> str:
        """Common start of the workflow's keys, e.g. `conveyor:{workflow:01J...}:`."""
        return f"{self.prefix}:{{workflow:{self.id}}}:"

    @property
    def meta(self) -> str:
        """HASH state (running, succeeded, failed), policy, root, created_at, finished_at,
        result (the root's, JSON), error (JSON), failures (nodes failed)."""
        return self.base + "meta"

    @property
    def nodes(self) -> str:
        """HASH node id -> its place in the tree (JSON: kind, parent, index, children)."""
        return self.base + "nodes"

    @property
    def specs(self) -> str:
        """HASH task node id -> the message it enqueues (JSON; opaque to the script)."""
        return self.base + "specs"

    @property
    def states(self) -> str:
        """HASH node id -> started, succeeded or failed (absent: not started)."""
        return self.base + "states"

    @property
    def results(self) -> str:
        """HASH node id -> its result, or its error description (JSON); first one wins."""
        return self.base + "results"

    @property
    def counts(self) -> str:
        """HASH group node id -> children ended; `by:<group>` -> the child that ended it."""
        return self.base + "counts"

    @property
    def tasks(self) -> str:
        """HASH task node id -> the id of the task that runs it."""
        return self.base + "tasks"

    @property
    def all(self) -> list[str]:
        """Every key of the workflow, in the order workflow_step.lua takes them."""
        return [self.meta, self.nodes, self.specs, self.states, self.results, self.counts,
                self.tasks]  # fmt: skip


#: Width of one priority band in a pending score: `(100 - priority) * band + ms`.
#: 2**42 ms lasts until the year 2109. Defined only here: the scripts get it from
#: `scripts.load_scripts`, which prepends it to each of them.
PRIORITY_BAND = 2**42
#: Pending scores from this one to DEFAULT_BAND_END belong to the default priority (0):
#: claims take them in turns with the `ready` list, after the higher priorities' (below)
#: and before the lower ones' (above).
DEFAULT_BAND_START = PRIORITY_RANGE[-1] * PRIORITY_BAND
DEFAULT_BAND_END = DEFAULT_BAND_START + PRIORITY_BAND


#: Start of the name (CLIENT SETNAME) of every connection a worker opens.
WORKER_CONNECTION = "conveyor-worker:"


def worker_connection_name(worker_id: str) -> str:
    """The name a worker's connections carry, so the reaper can tell whose they are."""
    return WORKER_CONNECTION + worker_id


def worker_of_connection(name: str) -> str | None:
    """The worker a connection name belongs to (its waits and presence add `:` suffixes),
    or None for connections of producers, the API and tools."""
    if not name.startswith(WORKER_CONNECTION):
        return None
    return name[len(WORKER_CONNECTION) :].split(":", 1)[0] or None
