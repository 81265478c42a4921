"""workflow_step.lua: begin a workflow, record its nodes' ends (first one wins), start what
follows exactly once, and stop or continue past a failure. Every step is also repeated,
as a worker that died before its ack repeats it: a repeat writes nothing and returns the
same nodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from conveyor import Conveyor, chain, chord, group
from conveyor.broker.steps import drive
from conveyor.broker.sync_broker import SyncBroker
from conveyor.broker.workflows import Step, WorkflowOps
from conveyor.canvas import MAX_DEPTH, FailurePolicy, Workflow, compile_workflow
from conveyor.errors import ConfigurationError
from conveyor.ids import new_ulid
from conveyor.producer import Message
from tests.support.keyspace import dump


def m(name: str, *args: Any) -> Message:
    return Message(name, args)


Create = Callable[..., tuple[str, Step]]


@pytest.fixture
def wops(broker: SyncBroker) -> WorkflowOps:
    return WorkflowOps(broker.ops)


@pytest.fixture
def create(broker: SyncBroker, wops: WorkflowOps) -> Create:
    """Stores a workflow and begins it (no task is enqueued: the tests play the worker)."""

    def make(workflow: Workflow, on_failure: FailurePolicy = "stop") -> tuple[str, Step]:
        nodes = compile_workflow(workflow)
        shapes = [(n.id, n.shape()) for n in nodes]
        specs = [(n.id, n.spec) for n in nodes if n.spec is not None]
        workflow_id = new_ulid()
        return workflow_id, broker.run(wops.create(workflow_id, shapes, specs, on_failure, 1))

    return make


def assert_expiring(r: redis.Redis, keys: list[str], retention: float) -> None:
    """Every key of an ended workflow expires within `retention` (or does not exist)."""
    ttls = [r.pttl(key) for key in keys]
    assert ttls[0] > 0, "its meta hash is kept until it expires"
    assert all(ttl == -2 or 0 < ttl <= retention * 1000 for ttl in ttls), ttls


def starts(step: Step) -> list[tuple[str, str, Any]]:
    """(node, task name, input or None) per node to start."""
    return [
        (s.node, orjson.loads(s.spec)["name"], None if s.input is None else orjson.loads(s.input))
        for s in step.starts
    ]


def test_begin_starts_every_member_of_the_first_group_and_a_repeat_changes_nothing(
    create: Create, broker: SyncBroker, wops: WorkflowOps, r: redis.Redis, prefix: str
) -> None:
    wf, step = create(chord([m("a"), m("b"), m("c")], m("cb")))
    assert step.state == "running" and step.fresh
    assert starts(step) == [("2", "a", None), ("3", "b", None), ("4", "c", None)]
    before = dump(r, prefix)
    again = broker.run(wops.step(wf, "0", "begin", b"", ""))
    assert (again.state, again.fresh, again.starts) == ("running", False, step.starts)
    assert dump(r, prefix) == before


def test_the_last_child_of_a_chord_starts_the_callback_once_with_results_in_order(
    create: Create, broker: SyncBroker, wops: WorkflowOps, r: redis.Redis, prefix: str
) -> None:
    wf, _ = create(chord([m("a"), m("b")], m("cb")))
    # b ends first, then a: the two last children "at once", serialized by Redis
    first = broker.run(wops.step(wf, "3", "succeeded", b'"B"', "q:1"))
    second = broker.run(wops.step(wf, "2", "succeeded", b'"A"', "q:2"))
    assert first.starts == [] and first.fresh
    assert starts(second) == [("4", "cb", ["A", "B"])]
    before = dump(r, prefix)
    # each worker repeats its step (it died before its ack): the same answers, no writes
    assert broker.run(wops.step(wf, "3", "succeeded", b'"B2"', "q:1")).starts == []
    repeat = broker.run(wops.step(wf, "2", "succeeded", b'"A2"', "q:3"))
    assert (repeat.fresh, repeat.starts) == (False, second.starts)
    assert dump(r, prefix) == before


@pytest.mark.parametrize("order", [("2", "3"), ("3", "2")])
def test_exactly_one_of_two_racing_last_children_ends_the_group(
    create: Create, broker: SyncBroker, wops: WorkflowOps, order: tuple[str, str]
) -> None:
    wf, _ = create(chord([m("a"), m("b")], m("cb")))
    steps = [broker.run(wops.step(wf, n, "succeeded", n.encode(), "q:1")) for n in order]
    assert [bool(s.starts) for s in steps] == [False, True]
    assert starts(steps[1]) == [("4", "cb", [2, 3])]


def test_a_chain_passes_each_result_on_and_its_end_ends_the_workflow(
    create: Create, broker: SyncBroker, wops: WorkflowOps, r: redis.Redis, prefix: str
) -> None:
    wf, step = create(chain(m("a", 1), m("b"), m("c")))
    assert starts(step) == [("1", "a", None)]
    step = broker.run(wops.step(wf, "1", "succeeded", b"10", "q:1"))
    assert starts(step) == [("2", "b", 10)]
    step = broker.run(wops.step(wf, "2", "succeeded", b"20", "q:2"))
    assert starts(step) == [("3", "c", 20)]
    step = broker.run(wops.step(wf, "3", "succeeded", b"30", "q:3"))
    assert (step.state, step.starts) == ("succeeded", [])
    outcome = broker.run(wops.outcome(wf))
    assert (outcome.state, outcome.result) == ("succeeded", 30)
    assert_expiring(r, wops.keys(wf).all, broker.settings.succeeded_retention)


def test_the_first_result_wins(create: Create, broker: SyncBroker, wops: WorkflowOps) -> None:
    wf, _ = create(chain(m("a"), m("b")))
    first = broker.run(wops.step(wf, "1", "succeeded", b'"first"', "q:1"))
    second = broker.run(wops.step(wf, "1", "succeeded", b'"second"', "q:2"))
    assert starts(first) == starts(second) == [("2", "b", "first")]
    view = drive(wops.read(wf), broker.run)
    assert view is not None
    assert [(n.id, n.state, n.result, n.task_id) for n in view.nodes] == [
        ("0", "started", None, None),
        ("1", "succeeded", "first", "q:1"),
        ("2", "started", None, None),
    ]


def test_nesting_a_group_of_chains_inside_a_chain(
    create: Create, broker: SyncBroker, wops: WorkflowOps
) -> None:
    # 0 chain(1 a, 2 group(3 chain(4 b, 5 c), 6 d), 7 e)
    wf, step = create(chain(m("a"), group([chain(m("b"), m("c")), m("d")]), m("e")))
    assert starts(step) == [("1", "a", None)]
    step = broker.run(wops.step(wf, "1", "succeeded", b"1", "q:1"))
    assert starts(step) == [("4", "b", 1), ("6", "d", 1)]
    assert broker.run(wops.step(wf, "6", "succeeded", b'"d"', "q:2")).starts == []
    step = broker.run(wops.step(wf, "4", "succeeded", b'"b"', "q:3"))
    assert starts(step) == [("5", "c", "b")]
    step = broker.run(wops.step(wf, "5", "succeeded", b'"c"', "q:4"))
    assert starts(step) == [("7", "e", ["c", "d"])]
    step = broker.run(wops.step(wf, "7", "succeeded", b'"end"', "q:5"))
    assert step.state == "succeeded"
    assert broker.run(wops.outcome(wf)).result == "end"


def test_a_chord_inside_a_chain_and_a_group_as_the_whole_workflow(
    create: Create, broker: SyncBroker, wops: WorkflowOps
) -> None:
    # 0 chain(1 chord(2 group(3 a, 4 b), 5 cb), 6 after)
    wf, step = create(chain(chord([m("a"), m("b")], m("cb")), m("after")))
    assert [s.node for s in step.starts] == ["3", "4"]
    broker.run(wops.step(wf, "3", "succeeded", b"1", "q:1"))
    step = broker.run(wops.step(wf, "4", "succeeded", b"2", "q:2"))
    assert starts(step) == [("5", "cb", [1, 2])]
    step = broker.run(wops.step(wf, "5", "succeeded", b"3", "q:3"))
    assert starts(step) == [("6", "after", 3)]
    wf, step = create(group([m("x"), m("y")]))
    broker.run(wops.step(wf, "1", "succeeded", b'"x"', "q:1"))
    step = broker.run(wops.step(wf, "2", "succeeded", b'"y"', "q:2"))
    assert broker.run(wops.outcome(wf)).result == ["x", "y"]


def test_stop_fails_the_workflow_and_starts_nothing_more(
    create: Create, broker: SyncBroker, wops: WorkflowOps, r: redis.Redis, prefix: str
) -> None:
    wf, _ = create(chain(group([m("a"), m("b")]), m("after")))
    error = b'{"node":"2","error":{"type":"ValueError","message":"no"}}'
    step = broker.run(wops.step(wf, "2", "failed", error, "q:1"))
    assert (step.state, step.fresh, step.starts) == ("failed", True, [])
    outcome = broker.run(wops.outcome(wf))
    assert outcome.error == orjson.loads(error)
    # the other member still ends: recorded, but nothing starts
    step = broker.run(wops.step(wf, "3", "succeeded", b"1", "q:2"))
    assert (step.state, step.starts) == ("failed", [])
    before = dump(r, prefix)
    assert broker.run(wops.step(wf, "2", "failed", error, "q:1")).fresh is False
    assert dump(r, prefix) == before
    assert_expiring(r, wops.keys(wf).all, broker.settings.failed_retention)


def test_continue_passes_the_error_description_to_the_callback(
    create: Create, broker: SyncBroker, wops: WorkflowOps
) -> None:
    wf, _ = create(chord([m("a"), m("b")], m("cb")), "continue")
    error = b'{"node":"2","error":{"type":"ValueError","message":"no"}}'
    step = broker.run(wops.step(wf, "2", "failed", error, "q:1"))
    assert (step.state, step.starts) == ("running", [])
    step = broker.run(wops.step(wf, "3", "succeeded", b"7", "q:2"))
    assert starts(step) == [("4", "cb", [orjson.loads(error), 7])]
    broker.run(wops.step(wf, "4", "succeeded", b'"ok"', "q:3"))
    view = WorkflowOps(broker.ops)
    assert broker.run(view.outcome(wf)).state == "succeeded"


def test_an_unknown_or_expired_workflow_is_left_alone(
    broker: SyncBroker, wops: WorkflowOps, r: redis.Redis, prefix: str
) -> None:
    before = dump(r, prefix)
    step = broker.run(wops.step(new_ulid(), "1", "succeeded", b"1", "q:1"))
    assert (step.state, step.fresh, step.starts) == ("", False, [])
    assert dump(r, prefix) == before


def test_the_app_rejects_bad_workflows(app: Conveyor) -> None:
    with pytest.raises(ConfigurationError):
        chain()
    with pytest.raises(ConfigurationError):
        group([])
    with pytest.raises(ConfigurationError):
        chain("not a message")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        app.enqueue(chain(m("a")), on_failure="maybe")  # type: ignore[call-overload]


def test_the_whole_keyspace_after_a_chord_s_members_ended(
    create: Create, broker: SyncBroker, wops: WorkflowOps, r: redis.Redis, prefix: str
) -> None:
    wf, _ = create(chord([m("a", 1), m("b")], m("cb")))
    broker.run(wops.step(wf, "3", "succeeded", b'"B"', "q:1"))
    broker.run(wops.step(wf, "2", "succeeded", b'"A"', "q:2"))
    k = wops.keys(wf)
    spec: dict[str, Any] = {"args": [], "kwargs": {}, "options": {}}
    specs = {n: {**spec, "name": name} for n, name in (("2", "a"), ("3", "b"), ("4", "cb"))}
    specs["2"]["args"] = [1]
    state = dump(r, prefix)
    assert {key: orjson.loads(v) for key, v in state.pop(k.specs).items()} == specs
    assert state == {
        f"{prefix}:{{workflows}}:index": {wf: 1.0},
        # stored by create, never launched here: a worker would start it (see Relauncher)
        f"{prefix}:{{workflows}}:launching": {wf: 1.0},
        k.meta: {"state": "running", "policy": "stop", "root": "0", "created_at": "1",
                 "size": "5", "begun": "1"},
        k.nodes: {
            "0": '{"k":"chord","i":1,"c":["1","4"]}',
            "1": '{"k":"group","i":1,"c":["2","3"],"p":"0"}',
            "2": '{"k":"task","i":1,"c":[],"p":"1"}',
            "3": '{"k":"task","i":2,"c":[],"p":"1"}',
            "4": '{"k":"task","i":2,"c":[],"p":"0"}',
        },
        k.states: {"0": "started", "1": "succeeded", "2": "succeeded", "3": "succeeded",
                   "4": "started"},
        k.results: {"1": '["A","B"]', "2": '"A"', "3": '"B"'},
        k.counts: {"1": "2", "by:1": "2"},
        k.tasks: {"2": "q:2", "3": "q:1"},
    }  # fmt: skip
    assert all(r.pttl(key) == -1 for key in k.all)  # nothing expires while it runs


def test_the_deepest_nesting_allowed_runs_through_the_script(
    create: Create, broker: SyncBroker, wops: WorkflowOps
) -> None:
    deepest: Workflow = group([m("x")])
    for _ in range(MAX_DEPTH - 1):
        deepest = group([deepest])
    wf, step = create(deepest)
    [start] = step.starts
    step = broker.run(wops.step(wf, start.node, "succeeded", b"1", "q:1"))
    result = broker.run(wops.outcome(wf)).result
    for _ in range(MAX_DEPTH):
        [result] = result
    assert (step.state, result) == ("succeeded", 1)
    with pytest.raises(ConfigurationError, match="nests at most"):
        compile_workflow(group([deepest]))
