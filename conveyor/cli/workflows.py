"""`conveyor workflow ID`: a workflow's state and its nodes as a tree (or JSON)."""

from __future__ import annotations

import click

from conveyor import serializers
from conveyor.broker.workflows import NodeView, WorkflowView
from conveyor.cli.output import dumps
from conveyor.cli.root import Context, inspect, pass_context, run_operation
from conveyor.errors import ConveyorError

#: Most characters of a node's result shown in the tree (--json shows them whole).
RESULT_WIDTH = 60


@click.command()
@click.argument("workflow_id")
@click.option("--json", "as_json", is_flag=True, help="Print the workflow as one JSON line.")
@pass_context
def workflow(ctx: Context, workflow_id: str, as_json: bool) -> None:
    """Print workflow WORKFLOW_ID: its state, result or error, and each node's."""
    view = inspect(ctx, lambda i: i.workflow(workflow_id))
    if view is None:

        def missing() -> None:
            raise ConveyorError(f"no workflow {workflow_id} (never enqueued, or expired)")

        run_operation(missing)
        return
    click.echo(dumps(view.to_json()) if as_json else "\n".join(tree(view)))


def tree(view: WorkflowView) -> list[str]:
    """The workflow as lines: a header, then each node under its parent."""
    header = f"workflow {view.id}: {view.state} (on failure: {view.policy}"
    lines = [header + (f", {view.failures} failed)" if view.failures else ")")]
    if view.state == "succeeded":
        lines.append(f"result: {_short(view.result)}")
    elif view.state == "failed":
        lines.append(f"error: {_short(view.error)}")
    by_id = {node.id: node for node in view.nodes}
    todo = [(view.nodes[0], 1)] if view.nodes else []
    while todo:
        node, depth = todo.pop()
        lines.append("  " * depth + _line(node))
        todo.extend((by_id[c], depth + 1) for c in reversed(node.children) if c in by_id)
    return lines


def _line(node: NodeView) -> str:
    what = f"{node.id} {node.kind}" + (f" {node.name}" if node.name else "")
    parts = [what, node.state]
    if node.task_id:
        parts.append(node.task_id)
    if node.result is not None and node.kind == "task":
        parts.append(f"-> {_short(node.result)}")
    return "  ".join(parts)


def _short(value: object) -> str:
    text = serializers.dumps(value).decode()
    return text if len(text) <= RESULT_WIDTH else text[: RESULT_WIDTH - 3] + "..."
