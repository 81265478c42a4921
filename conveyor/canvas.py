"""Workflows as values: `chain`, `group` and `chord` of task messages, nestable, and their
compilation into the node tree that `workflow_step.lua` walks (pure, no I/O).

A step's result reaches what follows it as an extra first positional argument: the next
step of a chain gets it, every member of a group gets it, and a chord's callback gets the
list of its group's results in the group's order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from conveyor import serializers
from conveyor.errors import ConfigurationError
from conveyor.options import TaskOptions
from conveyor.producer import Message

#: What happens when a task of a workflow fails for good (dead, failed or cancelled):
#: "stop" starts nothing more and fails the workflow with that error; "continue" passes an
#: error description on in place of the task's result.
FailurePolicy = Literal["stop", "continue"]
FAILURE_POLICIES: tuple[FailurePolicy, ...] = ("stop", "continue")
#: Most nodes (tasks and the chains, groups and chords around them) of one workflow: the
#: step script's loops are bounded by it.
MAX_NODES = 50_000
#: Deepest nesting of one workflow (the step script recurses along it).
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Chain:
    """Steps run one after another; each result is the next step's first argument."""

    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Group:
    """Members run in parallel; its result is the list of theirs, in order."""

    members: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Chord:
    """A group, then a callback that gets the list of the group's results."""

    header: Group
    callback: Step


#: Anything a workflow is made of.
Step = Message | Chain | Group | Chord
#: What `app.enqueue` accepts as a workflow.
Workflow = Chain | Group | Chord


def chain(*steps: Step) -> Chain:
    """Run `steps` in order, each result passed on as the next step's first argument."""
    if not steps:
        raise ConfigurationError("a chain needs at least one step")
    return Chain(tuple(_checked(step) for step in steps))


def group(members: Iterable[Step]) -> Group:
    """Run `members` in parallel; the result is the list of their results, in order."""
    found = tuple(_checked(member) for member in members)
    if not found:
        raise ConfigurationError("a group needs at least one member")
    return Group(found)


def chord(header: Group | Iterable[Step], callback: Step) -> Chord:
    """Run `header` (a group, or the members of one), then `callback` with the list of
    their results as its first argument."""
    members = header if isinstance(header, Group) else group(header)
    return Chord(members, _checked(callback))


def _checked(step: Any) -> Step:
    if not isinstance(step, Message | Chain | Group | Chord):
        raise ConfigurationError(
            f"a workflow is made of messages (task.message(...)), chains, groups and chords, "
            f"not {type(step).__name__}"
        )
    if isinstance(step, Message) and step.options.idempotency_key is not None:
        raise ConfigurationError("a workflow's tasks get their idempotency keys from it")
    return step


@dataclass(frozen=True, slots=True)
class Node:
    """One node of a compiled workflow: its place in the tree, and (tasks) its message."""

    id: str
    kind: Literal["task", "chain", "group", "chord"]
    parent: str | None
    index: int
    children: tuple[str, ...] = ()
    spec: bytes | None = None

    def shape(self) -> bytes:
        """The node's place in the tree, as the step script reads it."""
        place: dict[str, Any] = {"k": self.kind, "i": self.index, "c": list(self.children)}
        if self.parent is not None:
            place["p"] = self.parent
        return serializers.dumps(place)


def compile_workflow(workflow: Workflow) -> list[Node]:
    """The nodes of `workflow`, the root ("0") first, ids in depth-first order."""
    nodes: list[Node] = []
    _add(workflow, None, 1, 0, nodes)
    if len(nodes) > MAX_NODES:
        raise ConfigurationError(f"a workflow has at most {MAX_NODES} nodes, not {len(nodes)}")
    return nodes


def _add(step: Step, parent: str | None, index: int, depth: int, nodes: list[Node]) -> str:
    if depth > MAX_DEPTH:
        raise ConfigurationError(f"a workflow nests at most {MAX_DEPTH} levels deep")
    node_id = str(len(nodes))
    if isinstance(step, Message):
        nodes.append(Node(node_id, "task", parent, index, spec=encode_spec(step)))
        return node_id
    at = len(nodes)
    nodes.append(Node(node_id, "task", parent, index))  # a placeholder, filled in below
    if isinstance(step, Chain):
        kind: Literal["chain", "group", "chord"] = "chain"
        parts: tuple[Step, ...] = step.steps
    elif isinstance(step, Group):
        kind, parts = "group", step.members
    else:
        kind, parts = "chord", (step.header, step.callback)
    children = tuple(_add(part, node_id, i, depth + 1, nodes) for i, part in enumerate(parts, 1))
    nodes[at] = Node(node_id, kind, parent, index, children)
    return node_id


def encode_spec(message: Message) -> bytes:
    """A task node's message as stored: name, arguments, and the options that are set
    (an `eta` as epoch seconds)."""
    options: dict[str, Any] = {}
    for option in dataclasses.fields(TaskOptions):
        value = getattr(message.options, option.name)
        if value is not None:
            options[option.name] = value.timestamp() if option.name == "eta" else value
    spec = {
        "name": message.name,
        "args": list(message.args),
        "kwargs": message.kwargs,
        "options": options,
    }
    return serializers.dumps(spec)
