"""Sans-IO broker operations: each builds the calls for Redis and decodes the replies.

The asyncio broker and the sync broker only execute an `Op`; all logic lives here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar, overload

from conveyor import serializers
from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.broker.records import Claim, ClaimedTask, EnqueueResult, NewTask
from conveyor.broker.scripts import Arg, Call, load_scripts
from conveyor.errors import BrokerFullError, InvalidNameError, NotReplicatedError
from conveyor.ids import id_millis, new_ulid, queue_of
from conveyor.model import to_millis
from conveyor.settings import MAX_CLAIM_BATCH, Settings

T_co = TypeVar("T_co", covariant=True)

#: Most tasks per enqueue script call, so one call never blocks Redis for long (and its
#: one ZADD of every pending task stays within what Lua can unpack).
ENQUEUE_CHUNK = 1000
#: Most entries any maintenance script handles per call.
MAINTENANCE_BATCH = 500
#: Most queues whose key builders are kept (beyond it they are built per call).
MAX_CACHED_QUEUES = 10_000


@dataclass(frozen=True, slots=True)
class Op(Generic[T_co]):
    """Calls to send in one round trip, and how to turn their replies into a T_co."""

    calls: Sequence[Call]
    decode: Callable[[list[Any]], T_co]
    #: the decoder takes error replies in their place (else the first one is raised)
    reads_errors: bool = False
    #: a blocking read (XREAD BLOCK of at most READ_BLOCK_MAX s): sent over a connection
    #: of its own, whose socket timeout allows the wait, never shared with other calls
    blocks: bool = False


class BuiltOnRead(Sequence[Call]):
    """Calls of which all but the first few are built when first read. The sync transport
    sends a large call as soon as it has read it, so Redis runs one chunk of a bulk enqueue
    while the next is built: the build overlaps Redis' work instead of preceding it."""

    def __init__(self, ready: Sequence[Call], builders: Sequence[Callable[[], Call]]) -> None:
        self._calls: list[Call | None] = [*ready, *([None] * len(builders))]
        self._builders = builders
        self._built = len(ready)  # index of the first call built from `builders`

    def __len__(self) -> int:
        return len(self._calls)

    @overload
    def __getitem__(self, index: int) -> Call: ...

    @overload
    def __getitem__(self, index: slice) -> list[Call]: ...

    def __getitem__(self, index: int | slice) -> Call | list[Call]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        call = self._calls[index]
        if call is None:
            call = self._calls[index] = self._builders[index % len(self) - self._built]()
        return call


CLAIM_WIDTH = 15  # values per task in claim.lua's reply
#: Most registered workers one survey of the reaper reads.
MAX_SURVEYED = 10_000
#: Leases release_worker.lua reads per call.
RELEASE_WINDOW = 1000


@dataclass(frozen=True, slots=True)
class Renewal:
    """What one lease renewal of a queue learned."""

    #: ids whose lease is lost (recovered, or claimed again by another worker)
    lost: list[str]
    #: ids still leased but being cancelled: their worker must stop them
    cancelling: list[str]


@dataclass(frozen=True, slots=True)
class Survey:
    """What the reaper sees in one look at Redis."""

    #: worker id -> its last heartbeat (ms since the epoch)
    beats: dict[str, float]
    #: the names of the connections Redis holds (CLIENT LIST)
    connections: set[str]
    #: which Redis process answered; a restart or a failover changes it
    server_id: str
    #: how long that process has run, in seconds
    uptime: float


class Operations:
    """Builds every broker operation for one keyspace and its settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = GlobalKeys(settings.prefix)
        self.scripts = load_scripts()
        self._queue_keys: dict[str, QueueKeys] = {}

    def queue_keys(self, queue: str) -> QueueKeys:
        """Keys of `queue` (validates the name; valid ones are remembered)."""
        found = self._queue_keys.get(queue)
        if found is None:
            found = self.keys.queue(queue)
            if len(self._queue_keys) < MAX_CACHED_QUEUES:
                self._queue_keys[queue] = found
        return found

    def task_keys(self, task_id: str) -> QueueKeys:
        """Keys of the queue a task id belongs to."""
        return self.keys.queue(queue_of(task_id))

    def _script(self, name: str, keys: list[str], argv: list[Arg]) -> Call:
        return Call.script_call(self.scripts[name], keys, argv)

    # -- producing -------------------------------------------------------------------

    def enqueue(
        self, tasks: Sequence[NewTask], new_queues: Iterable[str] = ()
    ) -> Op[list[EnqueueResult]]:
        """Enqueue tasks of any queues: one script call per queue and chunk, one round trip;
        with several chunks, each one's call is built as it is sent (see BuiltOnRead).

        New queues are registered first, so no reader ever sees a queue's keys before the
        queue is listed.
        """
        registry = list(new_queues)
        registering = [Call.command("SADD", self.keys.queues, *registry)] if registry else []
        by_queue: dict[str, list[NewTask]] = {}
        for task in tasks:
            by_queue.setdefault(task.queue, []).append(task)
        order: list[str] = []
        builders: list[Callable[[], Call]] = []
        for queue, group in by_queue.items():
            keys = self.queue_keys(queue)  # validates the name before anything is sent
            for start in range(0, len(group), ENQUEUE_CHUNK):
                chunk = group[start : start + ENQUEUE_CHUNK]
                builders.append(partial(self._enqueue_call, keys, chunk))
                order.extend(t.id for t in chunk)
        needed = self.replicas_needed(any(t.options.durable for t in tasks))
        if needed:  # on a Cluster, on every master that ran a script (see cluster.py)
            route = self.queue_keys(tasks[0].queue).pending if tasks else None
            builders.append(lambda: self.replicated(needed, route))
        calls: Sequence[Call]
        if len(builders) == 1:  # nothing to overlap: built now, without the wrapper's cost
            calls = [*registering, builders[0]()]
        else:
            calls = BuiltOnRead(registering, builders)

        def decode(replies: list[Any]) -> list[EnqueueResult]:
            chunks = replies[1 if registry else 0 : len(replies) - (1 if needed else 0)]
            if any(isinstance(reply, Exception) for reply in replies):
                raise _enqueue_error(replies, chunks, len(tasks))
            results = [result for reply in chunks for result in _enqueued(reply)]
            if needed and replies[-1] < needed:
                stored = tuple(r.id for r in results if not r.replayed)
                waited = self.settings.replica_wait
                raise NotReplicatedError(stored, replies[-1], needed, waited)
            if len(by_queue) == 1:  # replies are already in the order of `tasks`
                return results
            by_id = dict(zip(order, results, strict=True))
            return [by_id[t.id] for t in tasks]

        return Op(calls, decode, reads_errors=True)

    def replicas_needed(self, durable: bool = False) -> int:
        """Replicas a write must reach before it counts as done: `min_replicas`, and at
        least one for a durable task."""
        return max(self.settings.min_replicas, 1 if durable else 0)

    def replicated(self, replicas: int, route: str | None = None) -> Call:
        """WAIT: block until `replicas` replicas have this connection's writes so far (or
        the replica timeout passes); replies with how many have them. A Cluster sends it
        to the masters of the batch's keys and of `route`."""
        wait = to_millis(self.settings.replica_wait)
        return Call.command("WAIT", replicas, wait, route=route)

    def _enqueue_call(self, keys: QueueKeys, tasks: Sequence[NewTask]) -> Call:
        script_keys = [keys.pending, keys.scheduled, keys.signal, keys.task_prefix, keys.ready,
                       keys.flow_prefix, keys.events]  # fmt: skip
        argv: list[Arg] = [to_millis(self.settings.idempotency_window)]
        for task in tasks:
            flags, extra = 0, list[Arg]()
            if task.idempotency_key is not None:
                script_keys.append(keys.idempotency(task.idempotency_key))
                flags = 1
            flow = task.flow
            if flow is not None and flow.unique_key is not None:
                script_keys.append(keys.unique(flow.unique_key))
                flags |= 2
                extra += [flow.unique_mode, flow.unique_window_ms]
            if flow is not None and flow.group is not None:
                flags |= 4
                extra.append(flow.group)
            fields = task.fields()
            argv += [task.id, task.delay_ms, task.priority, flags, *extra, len(fields) // 2]
            argv += fields
        return self._script("enqueue", script_keys, argv)

    def cancel(self, task_id: str) -> Op[tuple[bool, str]]:
        """Cancel a task: one not yet started ends cancelled, a running one becomes
        cancelling; decodes to (done, state before; "" if unknown)."""
        keys = self.task_keys(task_id)
        retention = to_millis(self.settings.cancelled_retention)
        call = self._script(
            "cancel",
            [
                keys.pending,
                keys.scheduled,
                keys.task(task_id),
                keys.retrying,
                keys.ready,
                keys.flow_prefix,
                keys.cancels,
                keys.active,
                keys.events,
            ],
            [task_id, retention],
        )
        return Op([call], lambda r: (bool(r[0][0]), r[0][1].decode()))

    # -- consuming -------------------------------------------------------------------

    def claim(self, queue: str, count: int, worker_id: str, *, idle: bool = True) -> Op[Claim]:
        """Lease up to `count` tasks of `queue` for `settings.lease_timeout`.

        An `idle` worker may get a suspect (a task whose worker died before), alone.
        Each Op carries a fresh request id, so the client's retry of a call whose reply
        was lost gets the same tasks back.
        """
        if not 1 <= count <= MAX_CLAIM_BATCH:  # 0 would make the script's ZRANGE read all
            raise ValueError(f"a claim takes 1..{MAX_CLAIM_BATCH} tasks, not {count}")
        keys = self.queue_keys(queue)
        lease = to_millis(self.settings.lease_timeout)
        request = keys.claim_request(new_ulid())
        call = self._script(
            "claim",
            [keys.pending, keys.active, keys.paused, keys.dead, keys.signal, keys.task_prefix,
             request, keys.ready, keys.flow_prefix, keys.scheduled, keys.events],
            [count, lease, worker_id, int(idle), to_millis(self.settings.dead_retention),
             keys.queue],
        )  # fmt: skip
        return Op([call], lambda r: _decode_claim(queue, r[0]))

    def extend_leases(self, queue: str, held: Sequence[tuple[str, int]]) -> Op[Renewal]:
        """Renew the leases of `held` (id, token) pairs; decodes to the ids whose lease is
        lost and those being cancelled."""
        keys = self.queue_keys(queue)
        argv: list[Arg] = [to_millis(self.settings.lease_timeout)]
        for task_id, token in held:
            argv += [task_id, token]
        call = self._script("extend_leases", [keys.active, keys.task_prefix], argv)

        def decode(replies: list[Any]) -> Renewal:
            lost, cancelling = replies[0]
            return Renewal([i.decode() for i in lost], [i.decode() for i in cancelling])

        return Op([call], decode)

    def report_progress(
        self, task: ClaimedTask, progress: bytes | None, checkpoint: bytes | None
    ) -> Op[bool]:
        """Keep a running task's progress (JSON object) and/or checkpoint (JSON) and renew
        its lease; decodes to False when its lease is lost or it is being cancelled."""
        keys = self.queue_keys(task.queue)
        lease = to_millis(self.settings.lease_timeout)
        argv: list[Arg] = [task.id, task.token, lease, progress or b"", checkpoint or b""]
        call = self._script("progress", [keys.active, keys.task(task.id), keys.events], argv)
        return Op([call], lambda r: bool(r[0]))

    def end_cancel(self, task: ClaimedTask) -> Call:
        """End a task its worker stopped for a cancel; reply 1, or 0 if its lease was lost
        or it is not being cancelled."""
        keys = self.queue_keys(task.queue)
        argv: list[Arg] = [task.id, task.token, to_millis(self.settings.cancelled_retention)]
        script_keys = [keys.active, keys.task(task.id), keys.pending, keys.signal,
                       keys.flow_prefix, keys.task_prefix, keys.events]  # fmt: skip
        return self._script("end_cancel", script_keys, argv)

    def ack(self, done: Sequence[tuple[ClaimedTask, bytes]]) -> Call:
        """Record the success of tasks of one queue, each with its result (JSON).

        The reply has per task 1, or 0 if its lease was lost.
        """
        keys = self.queue_keys(done[0][0].queue)
        argv: list[Arg] = [to_millis(self.settings.succeeded_retention)]
        for task, result in done:
            argv += [task.id, task.token, result]
        script_keys = [keys.active, keys.task_prefix, keys.pending, keys.signal, keys.flow_prefix,
                       keys.events]  # fmt: skip
        return self._script("ack", script_keys, argv)

    def retry(self, task: ClaimedTask, delay: float, error: bytes) -> Call:
        """Schedule another attempt after `delay` seconds; reply 1, or 0 if the lease was lost."""
        keys = self.queue_keys(task.queue)
        argv: list[Arg] = [task.id, task.token, to_millis(delay), error]
        script_keys = [keys.active, keys.scheduled, keys.task(task.id), keys.retrying,
                       keys.pending, keys.signal, keys.flow_prefix, keys.task_prefix,
                       keys.events]  # fmt: skip
        return self._script("retry", script_keys, argv)

    def dead_letter(
        self, task: ClaimedTask, reason: str, error: bytes, *, keep: bool = True
    ) -> Call:
        """End a task as dead (kept in the dead-letter queue) or failed (`keep=False`)."""
        keys = self.queue_keys(task.queue)
        s = self.settings
        retention = to_millis(s.dead_retention if keep else s.failed_retention)
        state = "dead" if keep else "failed"
        argv: list[Arg] = [task.id, task.token, reason, error, retention, state]
        script_keys = [keys.active, keys.dead, keys.task(task.id), keys.pending, keys.signal,
                       keys.flow_prefix, keys.task_prefix, keys.events]  # fmt: skip
        return self._script("dead_letter", script_keys, argv)

    def requeue(self, task: ClaimedTask, *, crashed: bool) -> Call:
        """Give a claimed task back to pending now; a crash counts toward the poison limit."""
        keys = self.queue_keys(task.queue)
        s = self.settings
        argv: list[Arg] = [
            task.id,
            task.token,
            int(crashed),
            s.max_crashes,
            to_millis(s.dead_retention),
            to_millis(s.cancelled_retention),
        ]
        script_keys = [keys.active, keys.pending, keys.dead, keys.signal, keys.task(task.id),
                       keys.flow_prefix, keys.task_prefix, keys.events]  # fmt: skip
        return self._script("requeue", script_keys, argv)

    # -- workers ---------------------------------------------------------------------

    def register_worker(self, worker_id: str, info: bytes, now_ms: int) -> Op[bool]:
        """Announce a live worker; its description expires unless renewed by heartbeat.

        Decodes to False when Redis is full: it refuses the ZADD and the SET then, but not
        the PEXPIRE, so the description stays (its heartbeat time goes stale) for as long
        as the worker lives and Redis is full.
        """
        ttl = to_millis(self.settings.lease_timeout * 3)
        calls = [
            Call.command("PEXPIRE", self.keys.worker(worker_id), ttl),
            Call.command("ZADD", self.keys.workers, now_ms, worker_id),
            Call.command("SET", self.keys.worker(worker_id), info, "PX", ttl),
        ]

        def decode(replies: list[Any]) -> bool:
            errors = [reply for reply in replies if isinstance(reply, Exception)]
            for error in errors:
                if not isinstance(error, BrokerFullError):
                    raise error
            return not errors

        return Op(calls, decode, reads_errors=True)

    def deregister_worker(self, worker_id: str) -> Op[None]:
        """Remove a worker that stopped cleanly."""
        calls = [
            Call.command("ZREM", self.keys.workers, worker_id),
            Call.command("DEL", self.keys.worker(worker_id)),
        ]
        return Op(calls, lambda r: None)

    def presence(self, worker_id: str) -> str:
        """The key a worker's presence connection blocks on."""
        return self.keys.presence(worker_id)

    # -- the reaper ------------------------------------------------------------------

    def lead(self, worker_id: str, role_ttl: float) -> Op[bool]:
        """Take or renew the reaper's role (`role_ttl` 0: give it up); decodes to whether
        it is `worker_id`'s."""
        call = self._script("lead", [self.keys.reaper], [worker_id, to_millis(role_ttl)])
        return Op([call], lambda r: bool(r[0]))

    def survey(self) -> Op[Survey]:
        """The registered workers, the names of the connections Redis holds, and which
        Redis this is and since when, in one round trip."""
        calls = [
            Call.command("ZRANGE", self.keys.workers, 0, MAX_SURVEYED - 1, "WITHSCORES"),
            # where the presence connections block: the `{workers}` slot's node
            Call.command("CLIENT", "LIST", "TYPE", "normal", route=self.keys.workers),
            Call.command("INFO", "server", route=self.keys.workers),
        ]

        def decode(replies: list[Any]) -> Survey:
            registry, clients, info = replies
            beats = {as_text(worker): score for worker, score in scored(registry)}
            server = info if isinstance(info, dict) else parse_info(info)
            return Survey(
                beats,
                _connection_names(clients),
                str(server.get("run_id", "")),
                float(server.get("uptime_in_seconds", 0)),
            )

        return Op(calls, decode)

    def worker_queues(self, worker_ids: Sequence[str]) -> Op[dict[str, list[str]]]:
        """The queues each worker said it serves (absent when its description expired)."""
        calls = [Call.command("GET", self.keys.worker(w)) for w in worker_ids]

        def decode(replies: list[Any]) -> dict[str, list[str]]:
            found = {}
            for worker_id, info in zip(worker_ids, replies, strict=True):
                if info is not None:
                    queues = serializers.loads(info).get("queues", [])
                    found[worker_id] = [q for q in queues if isinstance(q, str)]
            return found

        return Op(calls, decode)

    def release_worker(
        self, queue: str, worker_id: str, start: int = 0
    ) -> Op[tuple[int, list[tuple[str, str]]]]:
        """Take back what a dead worker leased in `queue`, one window of the leases from
        `start`; decodes to (where the next window starts, or -1; (id, outcome) pairs)."""
        keys = self.queue_keys(queue)
        s = self.settings
        argv: list[Arg] = [
            worker_id, s.max_crashes, to_millis(s.dead_retention), start, RELEASE_WINDOW,
            to_millis(s.cancelled_retention),
        ]  # fmt: skip
        script_keys = [keys.active, keys.pending, keys.dead, keys.signal, keys.task_prefix,
                       keys.flow_prefix, keys.events]  # fmt: skip
        call = self._script("release_worker", script_keys, argv)
        return Op([call], lambda r: (int(r[0][0]), _pairs(r[0][1:])))

    # -- maintenance -----------------------------------------------------------------

    def recover(self, queue: str) -> Op[list[tuple[str, str]]]:
        """Return expired leases to pending (or dead); decodes to (id, outcome) pairs."""
        keys = self.queue_keys(queue)
        s = self.settings
        argv: list[Arg] = [
            s.max_crashes, MAINTENANCE_BATCH, to_millis(s.dead_retention),
            to_millis(s.cancelled_retention),
        ]  # fmt: skip
        script_keys = [keys.active, keys.pending, keys.dead, keys.signal, keys.task_prefix,
                       keys.flow_prefix, keys.events]  # fmt: skip
        return Op([self._script("recover", script_keys, argv)], lambda r: _pairs(r[0]))

    def promote_due(self, queue: str) -> Op[tuple[int, float | None]]:
        """Promote due tasks; decodes to (promoted, seconds until the next due task or None)."""
        keys = self.queue_keys(queue)
        script_keys = [keys.scheduled, keys.pending, keys.signal, keys.task_prefix, keys.retrying,
                       keys.flow_prefix, keys.events]  # fmt: skip
        call = self._script("promote_due", script_keys, [MAINTENANCE_BATCH])

        def decode(replies: list[Any]) -> tuple[int, float | None]:
            promoted, next_ms = replies[0]
            return int(promoted), (None if next_ms < 0 else next_ms / 1000)

        return Op([call], decode)

    def trim_dead(self, queue: str) -> Op[int]:
        """Drop dead letters past the configured age or size."""
        keys = self.queue_keys(queue)
        s = self.settings
        argv: list[Arg] = [to_millis(s.dead_retention), s.dead_letter_max_size, MAINTENANCE_BATCH]
        call = self._script("trim_dead", [keys.dead, keys.task_prefix], argv)
        return Op([call], lambda r: int(r[0]))

    def replay_dead(self, queue: str, task_ids: Sequence[str]) -> Op[list[str]]:
        """Requeue dead letters by id; decodes to the ids replayed."""
        keys = self.queue_keys(queue)
        script_keys = [keys.dead, keys.pending, keys.signal, keys.task_prefix, keys.events]
        call = self._script("replay", script_keys, list(task_ids))
        return Op([call], lambda r: [i.decode() for i in r[0]])

    def delete_dead(self, queue: str, task_ids: Sequence[str]) -> Op[int]:
        """Delete dead letters and their records by id."""
        keys = self.queue_keys(queue)
        script_keys = [keys.dead, keys.task_prefix, keys.events]
        call = self._script("delete_dead", script_keys, list(task_ids))
        return Op([call], lambda r: int(r[0]))


def _made_at(task_id: str, otherwise: int) -> int:
    """When a task was enqueued, from its id; `otherwise` for an index entry that is not an
    id (a corrupt keyspace; the claim still runs the task it names)."""
    try:
        return id_millis(task_id)
    except InvalidNameError:
        return otherwise


def _enqueued(reply: list[Any]) -> list[EnqueueResult]:
    items = iter(reply)
    return [
        EnqueueResult(returned.decode(), bool(replayed), state.decode())
        for returned, replayed, state in zip(items, items, items, strict=True)
    ]


def _enqueue_error(replies: list[Any], chunks: list[Any], total: int) -> Exception:
    """Why an enqueue failed: the first error reply, or, when Redis refused only for lack
    of memory, a BrokerFullError naming the tasks stored by the script calls before."""
    errors = [reply for reply in replies if isinstance(reply, Exception)]
    refusals = [error for error in errors if isinstance(error, BrokerFullError)]
    if len(refusals) < len(errors):
        return next(error for error in errors if not isinstance(error, BrokerFullError))
    stored = tuple(
        result.id
        for reply in chunks
        if not isinstance(reply, Exception)
        for result in _enqueued(reply)
        if not result.replayed
    )
    return BrokerFullError(stored, total, refusals[0].memory) if stored else refusals[0]


def _pairs(reply: list[bytes]) -> list[tuple[str, str]]:
    items = iter(reply)
    return [(a.decode(), b.decode()) for a, b in zip(items, items, strict=True)]


def _decode_claim(queue: str, reply: list[Any]) -> Claim:
    now = int(reply[0])
    tasks = []
    for i in range(3, len(reply), CLAIM_WIDTH):
        (task_id, token, attempts, name, args, kwargs, failures, crashes,
         max_retries, timeout, enqueued, due, checkpoint, workflow,
         trace) = reply[i : i + CLAIM_WIDTH]  # fmt: skip
        tasks.append(
            ClaimedTask(
                id=task_id.decode(),
                queue=queue,
                token=int(token),
                attempts=int(attempts),
                name=name.decode("utf-8", "replace") if name else "",
                args=args,
                kwargs=kwargs,
                failures=max(0, _int(failures) or 0),
                crashes=max(0, _int(crashes) or 0),
                max_retries=_int(max_retries),
                timeout=_float(timeout),
                enqueued_at_ms=_int(enqueued) or _made_at(task_id.decode(), now),
                due_at_ms=_int(due),
                claimed_at_ms=now,
                checkpoint=checkpoint,
                workflow=workflow.decode() if workflow else None,
                trace=trace.decode() if trace else None,
            )
        )
    return Claim(tasks, bool(reply[1]), int(reply[2]) or None)


def _int(value: bytes | None) -> int | None:
    """Lenient: a corrupt number reads as None and the executor treats the task as corrupt."""
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _float(value: bytes | None) -> float | None:
    try:
        return None if not value else float(value)
    except ValueError:
        return None


#: Longest error message and traceback kept (characters); a record keeps up to
#: ATTEMPT_HISTORY errors, so one huge exception must not bloat it. A traceback keeps its
#: end, where the raise is.
MAX_ERROR_MESSAGE = 2_000
MAX_TRACEBACK = 8_000


def encode_error(exc: BaseException, traceback_text: str) -> bytes:
    """The JSON stored as a task's last error (and in its attempt history)."""
    message = str(exc)
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[:MAX_ERROR_MESSAGE] + " [...]"
    if len(traceback_text) > MAX_TRACEBACK:
        traceback_text = "[...]\n" + traceback_text[-MAX_TRACEBACK:]
    return serializers.dumps(
        {"type": type(exc).__name__, "message": message, "traceback": traceback_text}
    )


def raw(call: Call) -> Op[Any]:
    """One call whose reply is used as it comes."""
    return Op([call], lambda replies: replies[0])


def combine(ops: Sequence[Op[Any]]) -> Op[list[Any]]:
    """One Op sending the calls of several in a single round trip; decodes to their results."""
    calls = [call for op in ops for call in op.calls]

    def decode(replies: list[Any]) -> list[Any]:
        results, start = [], 0
        for op in ops:
            mine = replies[start : start + len(op.calls)]
            start += len(op.calls)
            if not op.reads_errors:
                for error in (reply for reply in mine if isinstance(reply, Exception)):
                    raise error
            results.append(op.decode(mine))
        return results

    return Op(calls, decode, reads_errors=any(op.reads_errors for op in ops))


def scored(entries: list[Any]) -> list[tuple[bytes, float]]:
    """A raw WITHSCORES reply is flat (member, score, ...); RESP3 clients nest the pairs."""
    if entries and isinstance(entries[0], list | tuple):
        return [(member, float(score)) for member, score in entries]
    items = iter(entries)
    return [(member, float(score)) for member, score in zip(items, items, strict=True)]


def parse_info(text: bytes | str) -> dict[str, Any]:
    """INFO's `key:value` lines; numbers as numbers, as redis-py parses them."""
    info: dict[str, Any] = {}
    for line in as_text(text).splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            info[key] = int(value) if value.isdigit() else value
    return info


def _connection_names(reply: Any) -> set[str]:
    """The `name=` of each line of CLIENT LIST (parsed into dicts by some clients)."""
    if isinstance(reply, list):
        return {as_text(client.get("name", "")) for client in reply} - {""}
    names = set()
    for line in as_text(reply).splitlines():
        for field in line.split(" "):
            if field.startswith("name=") and len(field) > 5:
                names.add(field[5:])
    return names


def as_text(value: Any) -> str:
    """A reply as text, whether the client decoded it or not."""
    return value.decode() if isinstance(value, bytes) else str(value)
