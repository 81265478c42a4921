"""`conveyor workflow ID`: the tree and the JSON of a workflow a real worker ran."""

from __future__ import annotations

import json
import re

import pytest

from conveyor import Conveyor, WorkflowFailedError, chain, group
from conveyor.ids import new_ulid
from tests.cli.conftest import Invoke
from tests.support.worker import running_worker


async def test_workflow_prints_the_tree_and_json(invoke: Invoke, app: Conveyor) -> None:
    @app.task(name="c.num")
    def num(n: int) -> int:
        return n

    @app.task(name="c.boom", max_retries=0)
    def boom(values: list[int]) -> None:
        raise RuntimeError("no luck")

    handle = app.enqueue(chain(group([num.message(1), num.message(2)]), boom.message()))
    running = invoke("workflow", handle.id)
    assert running.exit_code == 0, running.output
    assert running.stdout.splitlines()[:2] == [
        f"workflow {handle.id}: running (on failure: stop)",
        "  0 chain  started",
    ]
    async with running_worker(app):
        with pytest.raises(WorkflowFailedError, match="no luck"):
            await handle.result_async(timeout=30)
    result = invoke("workflow", handle.id)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"workflow {handle.id}: failed (on failure: stop, 1 failed)"
    assert lines[1].startswith('error: {"node":"4"')
    # each node under its parent, two spaces deeper
    depths = [re.match(r"( *)(\d+) ", line).groups() for line in lines[2:]]  # type: ignore[union-attr]
    assert depths == [("  ", "0"), ("    ", "1"), ("      ", "2"), ("      ", "3"), ("    ", "4")]
    assert lines[4].startswith("      2 task c.num  succeeded  default:") and lines[4].endswith(
        "-> 1"
    )
    assert lines[6].startswith("    4 task c.boom  failed  default:")
    as_json = invoke("workflow", handle.id, "--json")
    body = json.loads(as_json.stdout)
    assert body["state"] == "failed" and [n["id"] for n in body["nodes"]] == list("01234")
    await app.aclose()


def test_an_unknown_workflow_fails(invoke: Invoke) -> None:
    result = invoke("workflow", new_ulid())
    assert result.exit_code == 1
    assert "no workflow" in result.stderr
