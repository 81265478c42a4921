"""Sans-IO workflow operations: store a compiled workflow and begin it, advance it by one
node's end (workflow_step.lua), enqueue the task nodes a step returns, and read a
workflow back for the Inspector. The procedures (`advance`, `launch`) are `Steps`, driven
by the worker (a task's end), the producer (the begin) and the Inspector (a cancel)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conveyor import serializers
from conveyor.broker.admin import Procedure
from conveyor.broker.keys import WorkflowKeys
from conveyor.broker.ops import Op, Operations, as_text, raw, scored
from conveyor.broker.records import EnqueueResult, NewTask
from conveyor.broker.scripts import Arg, Call
from conveyor.broker.steps import Steps
from conveyor.errors import InvalidNameError
from conveyor.model import to_millis
from conveyor.options import TaskOptions

#: The idempotency key of the task that runs a node: however often a step returns the
#: node (a repeat after a crash), it is enqueued once.
NODE_KEY = "workflow:{workflow}:{node}"
#: Most fields written per HSET when a workflow is stored.
FIELDS_PER_CALL = 1000


@dataclass(frozen=True, slots=True)
class Start:
    """A task node to start now: its stored message, and its input (JSON) if any."""

    node: str
    spec: bytes
    input: bytes | None


@dataclass(frozen=True, slots=True)
class Step:
    """What one step did: the workflow's state after it ("" when unknown), whether it
    recorded something new, and the task nodes to start now."""

    state: str
    fresh: bool
    starts: list[Start]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A workflow's state ("" when unknown or expired), and its result or error once it
    ended."""

    state: str
    result: Any = None
    error: Any = None


@dataclass(frozen=True, slots=True)
class WorkflowSummary:
    """One line of the workflow index: a workflow, when it was enqueued, its state now
    ("expired" once its keys are gone)."""

    id: str
    created_at: float
    state: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {s: getattr(self, s) for s in self.__slots__}


#: A page of the workflow index.
Summaries = list[WorkflowSummary]


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node as the Inspector shows it."""

    id: str
    kind: str
    parent: str | None
    children: list[str]
    #: waiting (not started), started, succeeded or failed
    state: str
    #: its result, or its error description (decoded JSON); None until it ended
    result: Any
    #: the task that runs it (task nodes, once started)
    task_id: str | None
    #: the task's name (task nodes)
    name: str | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {s: getattr(self, s) for s in self.__slots__}


@dataclass(frozen=True, slots=True)
class WorkflowView:
    """A workflow and every one of its nodes, the root first."""

    id: str
    state: str
    policy: str
    created_at: float | None
    finished_at: float | None
    result: Any
    error: Any
    failures: int
    nodes: list[NodeView]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        found = {s: getattr(self, s) for s in self.__slots__}
        found["nodes"] = [n.to_json() for n in self.nodes]
        return found


class WorkflowOps:
    """Builds the workflow operations for one keyspace."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def keys(self, workflow_id: str) -> WorkflowKeys:
        """Keys of one workflow (validates the id)."""
        return self.ops.keys.workflow(workflow_id)

    def create(
        self,
        workflow_id: str,
        shapes: Sequence[tuple[str, bytes]],
        specs: Sequence[tuple[str, bytes]],
        policy: str,
        now_ms: int,
    ) -> Op[Step]:
        """Store a compiled workflow (its nodes' shapes, the root first, and its task
        nodes' messages), list it, and begin it: decodes to the first nodes to start. The
        begin step is idempotent, so the producer may repeat it.

        It is listed as launching before it begins, until `launched`: if the producer dies
        before its first tasks are enqueued, a worker finds it there and launches it."""
        k = self.keys(workflow_id)
        calls = [Call.command("ZADD", self.ops.keys.workflows, now_ms, workflow_id)]
        for key, found in ((k.nodes, shapes), (k.specs, specs)):
            pairs: list[Arg] = [v for pair in found for v in pair]
            for first in range(0, len(pairs), 2 * FIELDS_PER_CALL):
                calls.append(Call.command("HSET", key, *pairs[first : first + 2 * FIELDS_PER_CALL]))
        calls.append(Call.command("ZADD", self.ops.keys.workflows_launching, now_ms, workflow_id))
        calls.append(
            Call.command("HSET", k.meta, "state", "running", "policy", policy, "root", shapes[0][0],
                         "created_at", now_ms, "size", len(shapes))
        )  # fmt: skip
        begin = self.step(workflow_id, shapes[0][0], "begin", b"", "")
        return Op([*calls, *begin.calls], lambda replies: begin.decode(replies[-1:]))

    def step(
        self, workflow_id: str, node: str, outcome: str, payload: bytes, task_id: str
    ) -> Op[Step]:
        """Record how `node` ended (`outcome` succeeded or failed; begin for the root)."""
        s = self.ops.settings
        argv: list[Arg] = [node, outcome, payload, task_id, to_millis(s.succeeded_retention),
                           to_millis(s.failed_retention)]  # fmt: skip
        call = Call.script_call(self.ops.scripts["workflow_step"], self.keys(workflow_id).all, argv)
        return Op([call], lambda replies: decode_step(replies[0]))

    def started(
        self, workflow_id: str, tasks: Sequence[NewTask], results: Sequence[EnqueueResult]
    ) -> Call:
        """Note which task runs each started node (a replayed enqueue names the first)."""
        pairs: list[Arg] = []
        for task, result in zip(tasks, results, strict=True):
            pairs += [node_of(task.workflow), result.id]
        return Call.command("HSET", self.keys(workflow_id).tasks, *pairs)

    def launched(self, workflow_id: str) -> Call:
        """Its first tasks are enqueued: no longer launching."""
        return Call.command("ZREM", self.ops.keys.workflows_launching, workflow_id)

    def stranded(self, stored_before_ms: int, limit: int) -> Op[list[tuple[str, int]]]:
        """Workflows still launching that were stored before `stored_before_ms`, oldest
        first: (id, when stored in ms)."""
        call = Call.command("ZRANGEBYSCORE", self.ops.keys.workflows_launching, "-inf",
                            stored_before_ms, "WITHSCORES", "LIMIT", 0, limit)  # fmt: skip
        return Op([call], lambda replies: [(as_text(i), int(s)) for i, s in scored(replies[0])])

    def relaunch(self, workflow_id: str) -> Procedure[bool]:
        """Launch a stranded workflow, as its producer would have: the begin step again
        (it writes nothing twice) and its first tasks under their idempotency keys (an
        enqueue the producer did make is replayed). False when there was nothing to launch
        (never fully stored, or not running any more)."""
        meta = self.keys(workflow_id).meta
        state, root = yield Op([Call.command("HMGET", meta, "state", "root")], lambda r: r[0])
        if state is None or as_text(state) != "running" or root is None:
            yield raw(self.launched(workflow_id))
            return False
        step = yield self.step(workflow_id, as_text(root), "begin", b"", "")
        yield from launch(self, workflow_id, step, then=[self.launched(workflow_id)])
        return True

    def outcome(self, workflow_id: str) -> Op[Outcome]:
        """The workflow's state, result and error, from its meta hash alone."""
        call = Call.command("HMGET", self.keys(workflow_id).meta, "state", "result", "error")

        def decode(replies: list[Any]) -> Outcome:
            state, result, error = replies[0]
            return Outcome(as_text(state) if state else "", _json(result), _json(error))

        return Op([call], decode)

    def task_ids(self, workflow_id: str) -> Op[set[str]]:
        """The ids of the tasks its nodes started so far."""
        call = Call.command("HVALS", self.keys(workflow_id).tasks)
        return Op([call], lambda replies: {as_text(t) for t in replies[0]})

    def index(
        self, offset: int = 0, limit: int = 50
    ) -> Procedure[tuple[int, list[WorkflowSummary]]]:
        """(total, page) of the workflow index, newest first, with each one's state."""
        index = self.ops.keys.workflows
        last = offset + max(1, limit) - 1  # a limit of 0 would make ZREVRANGE read all
        first = [
            Call.command("ZCARD", index),
            Call.command("ZREVRANGE", index, offset, last, "WITHSCORES"),
        ]
        total, page = yield Op(first, lambda r: (int(r[0]), scored(r[1])))
        ids = [as_text(member) for member, _ in page]
        calls = [Call.command("HGET", self.keys(i).meta, "state") for i in ids]
        states = (yield Op(calls, lambda r: r)) if calls else []
        return total, [
            WorkflowSummary(i, score / 1000, as_text(state) if state else "expired")
            for i, (_, score), state in zip(ids, page, states, strict=True)
        ]

    def read(self, workflow_id: str) -> Procedure[WorkflowView | None]:
        """The workflow and its nodes, or None when unknown, expired or not a workflow id
        (one round trip)."""
        try:
            k = self.keys(workflow_id)
        except InvalidNameError:
            return None
        hashes = [k.meta, k.nodes, k.states, k.results, k.tasks, k.specs]
        calls = [Call.command("HGETALL", key) for key in hashes]
        replies = yield Op(calls, lambda r: [_as_dict(reply) for reply in r])
        meta, shapes, states, results, tasks, specs = replies
        if not meta:
            return None
        nodes = sorted(shapes, key=int)
        return WorkflowView(
            id=workflow_id,
            state=meta.get("state", ""),
            policy=meta.get("policy", ""),
            created_at=_seconds(meta.get("created_at")),
            finished_at=_seconds(meta.get("finished_at")),
            result=_json(meta.get("result")),
            error=_json(meta.get("error")),
            failures=int(meta.get("failures", 0)),
            nodes=[_node(n, shapes[n], states, results, tasks, specs) for n in nodes],
        )


def start_tasks(
    workflow_id: str, starts: Sequence[Start], shards: Mapping[str, int]
) -> list[NewTask]:
    """The tasks that run `starts`: each node's message, its input first among its
    arguments, under the node's idempotency key and tagged with its `workflow` field."""
    tasks = []
    for start in starts:
        spec = serializers.loads(start.spec)
        args = list(spec["args"])
        if start.input is not None:
            args.insert(0, serializers.loads(start.input))
        options: dict[str, Any] = dict(spec["options"])
        if "eta" in options:
            options["eta"] = datetime.fromtimestamp(options["eta"], UTC)
        options["idempotency_key"] = NODE_KEY.format(workflow=workflow_id, node=start.node)
        tasks.append(NewTask.build(spec["name"], args, spec["kwargs"], TaskOptions(**options),
                                   shards, workflow=f"{workflow_id}:{start.node}"))  # fmt: skip
    return tasks


def launch(
    workflows: WorkflowOps, workflow_id: str, step: Step, *, then: Sequence[Call] = ()
) -> Steps[Op[Any], Step]:
    """Enqueue the task nodes `step` returned, then note which task runs each (with the
    calls `then`, in the same round trip)."""
    tasks = start_tasks(workflow_id, step.starts, workflows.ops.settings.shards)
    if tasks:
        results = yield workflows.ops.enqueue(tasks, sorted({t.queue for t in tasks}))
        calls = [workflows.started(workflow_id, tasks, results), *then]
        yield Op(calls, lambda replies: replies)
    elif then:
        yield Op(list(then), lambda replies: replies)
    return step


def advance(
    workflows: WorkflowOps,
    workflow_field: str,
    outcome: str,
    payload: bytes,
    task_id: str,
) -> Steps[Op[Any], Step]:
    """Record how the task of a workflow node ended (`outcome` succeeded or failed, with
    its result or error description), then start what that sets going."""
    workflow_id, _, node = workflow_field.rpartition(":")
    step = yield workflows.step(workflow_id, node, outcome, payload, task_id)
    return (yield from launch(workflows, workflow_id, step))


def error_description(node: str, task_id: str, state: str, error: bytes) -> bytes:
    """What stands in for a failed node's result (policy "continue") or is the failed
    workflow's error (policy "stop"): its node, task, final state and error."""
    cause = serializers.loads(error) if error else {}
    if isinstance(cause, dict):
        cause.pop("traceback", None)
    return serializers.dumps({"node": node, "task_id": task_id, "state": state, "error": cause})


def node_of(workflow_field: str | None) -> str:
    """The node id of a task's `workflow` field, `<workflow id>:<node>`."""
    return (workflow_field or "").rpartition(":")[2]


def decode_step(reply: list[Any]) -> Step:
    """The step script's reply as a Step."""
    starts = []
    for i in range(2, len(reply), 4):
        node, spec, has_input, value = reply[i : i + 4]
        starts.append(Start(as_text(node), spec, value if int(has_input) else None))
    return Step(as_text(reply[0]), bool(int(reply[1])), starts)


def _node(
    node: str,
    shape: str,
    states: dict[str, str],
    results: dict[str, str],
    tasks: dict[str, str],
    specs: dict[str, str],
) -> NodeView:
    place = serializers.loads(shape)
    spec = specs.get(node)
    return NodeView(
        id=node,
        kind=place.get("k", ""),
        parent=place.get("p"),
        children=list(place.get("c", [])),
        state=states.get(node, "waiting"),
        result=_json(results.get(node)),
        task_id=tasks.get(node),
        name=serializers.loads(spec).get("name") if spec else None,
    )


def _as_dict(reply: Any) -> dict[str, str]:
    """An HGETALL reply (a dict, or a flat list from a raw client) with text keys and values."""
    if isinstance(reply, dict):
        return {as_text(k): as_text(v) for k, v in reply.items()}
    items = iter(reply)
    return {as_text(k): as_text(v) for k, v in zip(items, items, strict=True)}


def _json(value: str | bytes | None) -> Any:
    return None if value is None else serializers.loads(value)


def _seconds(value: str | None) -> float | None:
    return None if value is None else int(value) / 1000
