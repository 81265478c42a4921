"""The proofs' judges on made-up ledgers: they must see what a broken run would leave."""

from __future__ import annotations

from tests.flow import concurrency, rate
from tests.flow.ledger import Entry, max_in_window, max_overlap, runs


def start(task: str, at: float, pid: int = 1, token: int = 1) -> Entry:
    return Entry("start", pid, at, task, "k", token)


def end(task: str, at: float, pid: int = 1, token: int = 1) -> Entry:
    return Entry("end", pid, at, task, "k", token)


def test_overlap_counts_runs_live_at_once_and_a_handover_is_not_an_overlap() -> None:
    done, open_ = runs([start("a", 0), start("b", 1), end("a", 2), start("c", 2), end("b", 3),
                        end("c", 4)])  # fmt: skip
    assert not open_ and max_overlap(done) == 2
    done, _ = runs([start("a", 0), start("b", 1), start("c", 1.5), end("a", 2), end("b", 3),
                    end("c", 4)])  # fmt: skip
    assert max_overlap(done) == 3


def test_a_kill_ends_the_runs_of_its_process_and_an_end_that_beat_it_wins() -> None:
    kill = Entry("kill", 7, 5.0)
    entries = [start("a", 0, pid=7), start("b", 1, pid=7), start("c", 2, pid=8), kill,
               end("b", 5.1, pid=7), start("a", 9, pid=8, token=2)]  # fmt: skip
    done, open_ = runs(entries)
    by_task = {(r.task_id, r.token): r for r in done}
    assert by_task["a", 1].killed and by_task["a", 1].end == 5.0
    assert not by_task["b", 1].killed and by_task["b", 1].end == 5.1  # it ended before dying
    assert [e.task_id for e in open_] == ["c", "a"]


def test_a_run_that_starts_between_the_kill_mark_and_the_signal_was_killed() -> None:
    kill = Entry("kill", 7, 5.0)
    done, open_ = runs([kill, start("late", 5.05, pid=7), start("other", 5.1, pid=8)])
    assert [(r.task_id, r.killed, r.end) for r in done] == [("late", True, 5.05)]
    assert [e.task_id for e in open_] == ["other"]
    done, _ = runs([kill, start("quick", 5.05, pid=7), end("quick", 5.06, pid=7)])
    assert [(r.task_id, r.killed, r.end) for r in done] == [("quick", False, 5.06)]


def test_the_window_is_closed_at_both_ends() -> None:
    assert max_in_window([0, 1000, 2000], 1000) == 2
    assert max_in_window([0, 999, 1001, 1002], 1000) == 3
    assert max_in_window([], 1000) == 0


def test_the_concurrency_judge_fails_an_overlap_above_or_below_the_limit() -> None:
    size = concurrency.Size(kills=0)
    good = concurrency.Figures(tasks=1, runs=1)
    good.overlap = dict(good.limits())
    assert good.violations(size) == []
    for key, wrong in (("limited", 4), ("premium", 9), ("basic-1", 2)):
        bad = concurrency.Figures(tasks=1, runs=1, overlap=good.limits() | {key: wrong})
        assert len(bad.violations(size)) == 1


def test_the_rate_bounds() -> None:
    size = rate.Size(tasks=1000, rate=50, burst=1)
    assert size.expected == 19.98
    low, high = size.span_range
    assert round(low, 6) == 18.981 and round(high, 6) == 20.979  # the issue's ±5 %
    assert size.window_bound == 52  # 50 + 1, and one start slipping in (25 ms slip)
    short = rate.Size(tasks=200, rate=50)
    assert round(short.span_range[1], 6) == 4.73  # 3.98 s + the first promotion's 0.75 s
