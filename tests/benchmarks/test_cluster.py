"""`python -m benchmarks.cluster --quick`: both deployments ran, every node was read, the
per-master figures add up to the whole, and the split queue's shards spread evenly."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from benchmarks.cluster import Target, counted
from benchmarks.cluster_nodes import PREFIX, Deployment, Node, split_queue
from conveyor import Conveyor
from conveyor.shards import shard_names
from conveyor.tools.embedded import RedisServer
from tests.cluster.conftest import CLUSTER_BINARY

ROOT = Path(__file__).resolve().parents[2]
MASTERS = ("m1", "m2", "m3")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CLUSTER_BINARY is None, reason="no redis-server for a Cluster"),
]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One quick run: its results document and its printed tables."""
    out = tmp_path_factory.mktemp("cluster") / "cluster.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster", "--quick", "--json", str(out),
         "--redis-server", str(CLUSTER_BINARY)],
        cwd=ROOT, capture_output=True, text=True, timeout=85,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout


@pytest.mark.timeout(90)
def test_every_task_enqueued_and_processed_on_both(quick: tuple[dict[str, Any], str]) -> None:
    results, _ = quick
    sizes = results["sizes"]
    assert list(results["runs"]) == ["single", "cluster", "one_master", "split"]
    assert list(results["summary"]) == list(results["runs"])
    for runs in results["runs"].values():
        [run] = runs
        enqueued = sizes["singles"] + sizes["concurrent"] + sizes["bulk"]
        assert run["n"] == enqueued == sum(run["tasks"].values())
        assert len(run["tasks"]) == sizes["queues"]
        # keyless tasks go in turns, to queues or to shards: ±1 of an even share per phase
        even = enqueued / sizes["queues"]
        assert all(abs(count - even) <= 3 for count in run["tasks"].values()), run["tasks"]
        process = run["phases"]["process"]["nodes"]
        # every task was claimed and acked by a script: at least two calls inside each
        assert sum(n.get("cmd:evalsha", 0) + n.get("cmd:eval", 0) for n in process.values()) > 0
        figures = run["figures"]
        assert figures["rate"] > 0 and figures["worker_cpu_us_per_task"] > 0
        assert figures["process.commands_per_task"] > 2
        for phase in ("one", "async", "bulk", "process"):
            assert figures[f"{phase}.cpu_us_per_task"] > 0, phase


@pytest.mark.timeout(90)
def test_the_cluster_split_adds_up(quick: tuple[dict[str, Any], str]) -> None:
    results, table = quick
    assert sorted(set(results["queues"].values())) == list(MASTERS)
    # as many queues on each master, so as many tasks
    per_master = [list(results["queues"].values()).count(m) for m in MASTERS]
    assert per_master == [results["sizes"]["queues"] // 3] * 3
    [run] = results["runs"]["cluster"]
    figures = run["figures"]
    for share in ("tasks_share", "cpu_share", "process_cpu_share"):
        assert sum(figures[f"{m}.{share}"] for m in MASTERS) == pytest.approx(1.0), share
        assert all(figures[f"{m}.{share}"] > 0 for m in MASTERS), share
    # the masters' CPU per task, weighted by their tasks, is the whole's
    whole = sum(figures[f"{m}.process.cpu_us_per_task"] * figures[f"{m}.tasks_share"]
                for m in MASTERS)  # fmt: skip
    assert whole == pytest.approx(figures["process.cpu_us_per_task"])
    labels = [node["label"] for node in results["nodes"]["cluster"]]
    assert sorted(labels) == sorted([*MASTERS, *(f"{m} replica" for m in MASTERS)])
    # the one-master variant put every queue, so every task, on m1
    assert set(results["one_master_queues"].values()) == {"m1"}
    assert len(results["one_master_queues"]) == results["sizes"]["queues"]
    [one] = results["runs"]["one_master"]
    assert one["figures"]["m1.tasks_share"] == 1.0 and "m2.tasks_share" not in one["figures"]
    for master in MASTERS:  # one row in the Cluster's table, one in the split's
        rows = [line for line in table.splitlines() if line.startswith(f"| {master} |")]
        assert [row.count("|") for row in rows] == [9, 9], rows
    [row] = [line for line in table.splitlines() if line.startswith("| end to end, tasks/s")]
    assert row.count("|") == 9 and float(row.strip("|").split("|")[-1]) > 0, row


@pytest.mark.timeout(90)
def test_the_split_queue_spreads_its_shards_evenly(quick: tuple[dict[str, Any], str]) -> None:
    results, table = quick
    shards, hot = results["sizes"]["queues"], results["split_queue"]
    # one queue, split into every shard, as many on each master (2/2/2 with --quick's 6)
    assert list(results["split_queues"]) == list(shard_names(hot, shards))
    placed = list(results["split_queues"].values())
    assert [placed.count(m) for m in MASTERS] == [shards // 3] * 3
    [run] = results["runs"]["split"]
    assert list(run["tasks"]) == list(results["split_queues"])
    figures = run["figures"]
    for share in ("tasks_share", "cpu_share", "process_cpu_share"):
        assert sum(figures[f"{m}.{share}"] for m in MASTERS) == pytest.approx(1.0), share
        assert all(figures[f"{m}.{share}"] > 0 for m in MASTERS), share
    # the tasks split in turns: a third each, within a task per shard and phase
    assert all(abs(figures[f"{m}.tasks_share"] - 1 / 3) < 0.02 for m in MASTERS)
    assert f"`{hot}`" in table


def test_queues_that_do_not_spread_evenly_are_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster", "--quick", "--queues", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "a multiple of 3" in done.stderr


def test_the_split_queue_name_is_searched_for_an_even_spread() -> None:
    # the local Cluster's slot ranges; the search reads only them, never a node
    slots = [(0, 5460, "m1"), (5461, 10922, "m2"), (10923, 16383, "m3")]
    nodes = [Node(m, m, 0, redis.Redis(port=1)) for m in MASTERS]
    deployment = Deployment("cluster", "redis://127.0.0.1:1", nodes, slots)
    for shards in (6, 12, 24):
        hot = split_queue(deployment, shards)
        placed = [deployment.master_of(shard) for shard in shard_names(hot, shards)]
        assert [placed.count(m) for m in MASTERS] == [shards // 3] * 3, (shards, hot)
    with pytest.raises(ValueError, match="do not spread evenly"):
        split_queue(deployment, 4)


def test_every_shards_tasks_are_counted_and_a_missing_shard_is_refused(
    redis_server: RedisServer, r: redis.Redis
) -> None:
    hot = f"hot{uuid.uuid4().hex[:12]}"
    node = Node("single", "single", redis_server.port, r)
    deployment = Deployment("single", redis_server.url, [node])
    app = Conveyor(redis_url=redis_server.url, prefix=PREFIX, shards={hot: 3})
    try:
        app.enqueue_many(app.message("noop", payload=i, queue=hot) for i in range(7))
        tasks = counted(deployment, Target([hot], {hot: 3}), 7)
        assert list(tasks) == list(shard_names(hot, 3))
        assert sorted(tasks.values()) == [2, 2, 3]  # in turns
        # workers told of 2 shards would leave the third's tasks unserved: refused
        with pytest.raises(RuntimeError, match=r"7 tasks enqueued, [45] waiting"):
            counted(deployment, Target([hot], {hot: 2}), 7)
    finally:
        app.close()
        r.delete(*r.keys(f"{PREFIX}:{{{hot}*"))
