"""The figures of a `benchmarks.cluster` run (per task, per master, shares) and its tables."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

from benchmarks import costs
from benchmarks.cluster_nodes import Deployment

#: The measured phases, and the key of the run holding how many tasks each handled.
PHASES = {"one": "singles", "async": "concurrent", "bulk": "bulk", "process": "n"}
ENQUEUES = ("one", "async", "bulk")
#: (key in the INFO deltas, name of the per-task figure)
PER_TASK = (("cpu_us", "cpu_us"), ("reads", "round_trips"), ("net_in", "bytes_in"),
            ("net_out", "bytes_out"), ("repl_out", "repl_bytes"))  # fmt: skip


def figures(run: dict[str, Any], deployment: Deployment) -> dict[str, float]:
    """One run as flat figures, each a number `costs.summarize` takes medians of."""
    phases = run["phases"]
    masters = [n.label for n in deployment.masters]
    replicas = [n.label for n in deployment.nodes if not n.is_master]
    found: dict[str, float] = {
        "rate": run["n"] / phases["process"]["seconds"],
        **{f"{p}_rate": run[PHASES[p]] / phases[p]["seconds"] for p in ENQUEUES},
        "worker_cpu_us_per_task": phases["process"]["worker_cpu_us_per_task"],
        "pending_bytes_per_task": sum(
            _memory(phases[p]["nodes"][m]) for p in ("one", "bulk") for m in masters
        )
        / (run["singles"] + run["bulk"]),
    }
    for phase, size in PHASES.items():
        nodes, count = phases[phase]["nodes"], max(1, run[size])
        for key, name in PER_TASK:
            found[f"{phase}.{name}_per_task"] = sum(nodes[m][key] for m in masters) / count
        commands = sum(costs.commands(nodes[m]) for m in masters)
        found[f"{phase}.commands_per_task"] = commands / count
        replicated = sum(nodes[r]["cpu_us"] for r in replicas)
        found[f"{phase}.replica_cpu_us_per_task"] = replicated / count
        if phase != "process":  # the producer is this process
            found[f"{phase}.producer_cpu_us_per_task"] = phases[phase]["cpu_seconds"] * 1e6 / count
    idle = phases["idle"]
    found["idle.cpu_us_per_s"] = sum(idle["nodes"][m]["cpu_us"] for m in masters) / idle["seconds"]
    found["idle.replica_cpu_us_per_s"] = (
        sum(idle["nodes"][r]["cpu_us"] for r in replicas) / idle["seconds"]
    )
    found.update(_split(run, deployment, masters))
    return found


def _memory(node: dict[str, int]) -> int:
    """used_memory's growth, less the replication buffers' (the replica's backlog of
    writes not yet sent is not what a pending task holds)."""
    return node["used_memory"] - node["repl_buffers"]


def _split(run: dict[str, Any], deployment: Deployment, masters: list[str]) -> dict[str, float]:
    """Per master: its share of the tasks and of the masters' CPU, and its CPU per task."""
    phases, found = run["phases"], {}
    tasks = dict.fromkeys(masters, 0)
    for queue, count in run["tasks"].items():
        tasks[deployment.master_of(queue)] += count
    cpu = {m: sum(phases[p]["nodes"][m]["cpu_us"] for p in PHASES) for m in masters}
    processing = {m: phases["process"]["nodes"][m]["cpu_us"] for m in masters}
    for m in (m for m in masters if tasks[m]):  # a master without queues has no split
        found[f"{m}.tasks_share"] = tasks[m] / run["n"]
        found[f"{m}.cpu_share"] = cpu[m] / max(1, sum(cpu.values()))
        found[f"{m}.process_cpu_share"] = processing[m] / max(1, sum(processing.values()))
        found[f"{m}.process.cpu_us_per_task"] = processing[m] / max(1, tasks[m])
        found[f"{m}.cpu_us_per_task"] = cpu[m] / max(1, tasks[m])
    return found


def brief(found: dict[str, float]) -> str:
    """One line of a run's figures, for the log."""
    return (f"{found['rate']:,.0f} tasks/s end to end, {found['one_rate']:,.0f}/s one at a "
            f"time, {found['async_rate']:,.0f}/s async, {found['bulk_rate']:,.0f}/s in bulk; "
            f"Redis µs/task: one "
            f"{found['one.cpu_us_per_task']:.1f}, bulk {found['bulk.cpu_us_per_task']:.1f}, "
            f"process {found['process.cpu_us_per_task']:.1f}; workers "
            f"{found['worker_cpu_us_per_task']:.0f} µs/task")  # fmt: skip


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how loaded it was as the run began."""
    with open("/proc/cpuinfo") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return {
        "cpu": names[0] if names else platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": os.getloadavg(),
    }


#: The comparison's rows: (label, figure, digits).
ROWS = (
    ("end to end, tasks/s", "rate", 0),
    ("enqueue one at a time, tasks/s", "one_rate", 0),
    ("enqueue from 64 coroutines (async), tasks/s", "async_rate", 0),
    ("bulk enqueue, tasks/s", "bulk_rate", 0),
    ("Redis CPU µs/task (masters): enqueue one at a time", "one.cpu_us_per_task", 1),
    ("Redis CPU µs/task (masters): enqueue from 64 coroutines", "async.cpu_us_per_task", 1),
    ("Redis CPU µs/task (masters): enqueue in bulk", "bulk.cpu_us_per_task", 1),
    ("Redis CPU µs/task (masters): claim, run, ack", "process.cpu_us_per_task", 1),
    ("replicas' CPU µs/task: enqueue one at a time", "one.replica_cpu_us_per_task", 1),
    ("replicas' CPU µs/task: claim, run, ack", "process.replica_cpu_us_per_task", 1),
    ("commands/task: enqueue one at a time", "one.commands_per_task", 2),
    ("commands/task: enqueue in bulk", "bulk.commands_per_task", 3),
    ("commands/task: claim, run, ack", "process.commands_per_task", 2),
    ("round trips/task: enqueue one at a time", "one.round_trips_per_task", 2),
    ("round trips/task: enqueue from 64 coroutines", "async.round_trips_per_task", 3),
    ("round trips/task: enqueue in bulk", "bulk.round_trips_per_task", 4),
    ("round trips/task: claim, run, ack", "process.round_trips_per_task", 3),
    ("bytes in/task: enqueue one at a time", "one.bytes_in_per_task", 0),
    ("bytes in/task: enqueue in bulk", "bulk.bytes_in_per_task", 0),
    ("bytes in/task: claim, run, ack", "process.bytes_in_per_task", 0),
    ("bytes out/task: enqueue one at a time", "one.bytes_out_per_task", 0),
    ("bytes out/task: enqueue in bulk", "bulk.bytes_out_per_task", 0),
    ("bytes out/task: claim, run, ack", "process.bytes_out_per_task", 0),
    ("bytes to replicas/task: enqueue one at a time", "one.repl_bytes_per_task", 0),
    ("bytes to replicas/task: enqueue in bulk", "bulk.repl_bytes_per_task", 0),
    ("bytes to replicas/task: claim, run, ack", "process.repl_bytes_per_task", 0),
    ("bytes of memory per pending task", "pending_bytes_per_task", 0),
    ("worker CPU µs/task", "worker_cpu_us_per_task", 0),
    ("Redis CPU while idle, µs per second (masters)", "idle.cpu_us_per_s", 0),
    ("Redis CPU while idle, µs per second (replicas)", "idle.replica_cpu_us_per_s", 0),
    ("producer CPU µs/task: enqueue one at a time", "one.producer_cpu_us_per_task", 0),
    ("producer CPU µs/task: enqueue from 64 coroutines", "async.producer_cpu_us_per_task", 1),
    ("producer CPU µs/task: enqueue in bulk", "bulk.producer_cpu_us_per_task", 1),
)


def markdown(results: dict[str, Any]) -> str:
    """The single Redis and the Cluster's variants side by side, then how the Cluster's
    queues and the split queue's shards divide between the masters."""
    s, m, summary = results["sizes"], results["machine"], results["summary"]
    single, cluster, one = summary["single"], summary["cluster"], summary["one_master"]
    split = summary["split"]
    lines = [
        f"Measured {m['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
        f"Redis {results['redis']}, load average {m['load_average'][0]:.2f} at the start "
        f"and {m['load_average_after'][0]:.2f} at the end. "
        f"Per run: {s['singles']:,} tasks enqueued one at a time, {s['concurrent']:,} from 64 "
        f"coroutines and {s['bulk']:,} in bulk "
        f"over {s['queues']} queues, then processed by {s['processes']} worker process(es) "
        f"(async handlers, concurrency {results['concurrency']}). Single: a master and a "
        "replica; Cluster: 3 masters, a replica each; one master: the Cluster with every "
        f"queue on its first master; split: the Cluster with ONE queue "
        f"(`{results['split_queue']}`) split into {s['queues']} shards, as many on each "
        f"master, every task sent to it. Medians of {s['repeats']} alternating runs (min-max).",
        "",
        "| figure | single Redis | Cluster, 3 masters | Cluster/single "
        "| Cluster, queues on one master | one master/single "
        f"| Cluster, one queue in {s['queues']} shards | split/one master |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, key, digits in ROWS:
        a, b, c, d = single[key], cluster[key], one[key], split[key]
        cells = [costs.cell(a, digits), costs.cell(b, digits), _ratio(b, a),
                 costs.cell(c, digits), _ratio(c, a),
                 costs.cell(d, digits), _ratio(d, c)]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join([
        *lines, "", f"The Cluster's {s['queues']} queues, by master:", "",
        *split_table(results, "cluster", results["queues"]), "",
        f"The split queue `{results['split_queue']}`'s {s['queues']} shards, by master:", "",
        *split_table(results, "split", results["split_queues"]),
    ]) + "\n"  # fmt: skip


def _ratio(value: dict[str, float], base: dict[str, float]) -> str:
    return f"{value['median'] / base['median']:.2f}" if base["median"] else "-"


def split_table(results: dict[str, Any], variant: str, queues: dict[str, str]) -> list[str]:
    """A Cluster variant's masters: slots, queues (`queues` maps each to its master), share
    of tasks and of Redis CPU, CPU per task."""
    cluster = results["summary"][variant]
    lines = [
        "| master | slots | queues | share of tasks | share of Redis CPU, all phases "
        "| share, claim-run-ack | µs/task, all phases | µs/task, claim-run-ack |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for node in results["nodes"]["cluster"]:
        label = node["label"]
        if label != node["master"]:
            continue
        held = sum(1 for master in queues.values() if master == label)
        cells = [costs.cell(cluster[f"{label}.{k}"], digits) for k, digits in (
            ("tasks_share", 3), ("cpu_share", 3), ("process_cpu_share", 3),
            ("cpu_us_per_task", 1), ("process.cpu_us_per_task", 1))]  # fmt: skip
        lines.append(f"| {label} | {node['slots']} | {held} | " + " | ".join(cells) + " |")
    return lines
