"""The suite's report from made-up runs: the sync handlers' column and its target."""

from __future__ import annotations

from typing import Any

from benchmarks.report import Judge, throughput_table


def runs(*rates: float) -> list[dict[str, Any]]:
    return [{"n": 1000, "seconds": 1000 / r, "rate": r} for r in rates]


def _results() -> dict[str, Any]:
    def system(name: str) -> dict[str, str]:
        return {"name": name, "version": "1", "one_process": "-", "two_processes": "-",
                "bulk_api": "-"}  # fmt: skip

    return {
        "systems": {
            "conveyor": system("Conveyor"),
            "conveyor_sync": system("Conveyor (sync handlers)"),
            "huey": system("Huey"),
            "taskiq": system("Taskiq"),
        },
        "runs": {
            "conveyor": {"e2e_1": runs(10_000, 11_000, 12_000), "e2e_2": runs(15_000)},
            "conveyor_sync": {"e2e_1": runs(7_000, 8_000, 9_000), "e2e_2": runs(12_000)},
            "huey": {"e2e_1": runs(2_500, 2_580, 2_600)},
            "taskiq": {"e2e_1": runs(2_600, 2_650, 2_700)},
        },
        "ceilings": {},
    }


def test_sync_handlers_are_judged_against_the_fastest_peer_not_against_conveyor() -> None:
    judge = Judge(_results())
    assert judge.peers == ["huey", "taskiq"]
    [target] = [t for t in judge.targets() if t.name.startswith("sync handlers end to end")]
    assert target.ratio is not None
    assert round(target.ratio, 3) == round(8_000 / 2_650, 3)
    assert target.detail == "8,000 vs Taskiq 2,650" and target.met is True
    [async_target] = [t for t in judge.targets() if t.name.startswith("end to end, 1 process")]
    assert async_target.detail == "11,000 vs Taskiq 2,650"


def test_the_sync_column_sits_after_conveyors_own() -> None:
    rows = throughput_table(_results())[2:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| Conveyor", "| Conveyor (sync handlers)", "| Huey", "| Taskiq",
    ]  # fmt: skip
