"""Every time the CLI prints is ISO 8601 UTC with milliseconds and a Z."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

from conveyor import Conveyor
from conveyor.model import utc_iso as utc
from tests.cli.conftest import Invoke, LiveWorker

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def printed(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_format() -> None:
    moment = datetime(2026, 12, 6, 23, 42, 58, 123456, tzinfo=UTC)
    assert utc(moment) == "2026-12-06T23:42:58.123Z"
    assert utc(moment.timestamp()) == "2026-12-06T23:42:58.123Z"
    assert utc(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"


def test_status_prints_times_with_z_and_leaves_arguments_alone(
    invoke: Invoke, app: Conveyor
) -> None:
    looks_like_a_time = "2026-12-06T23:42:58.026000+00:00"
    result = invoke("enqueue", "later", "--delay", "60", "--payload", json.dumps(looks_like_a_time))
    task_id = result.stdout.split()[0]
    record = app.get_record(task_id)
    assert record is not None and record.enqueued_at and record.due_at
    shown = printed(invoke("status", task_id))
    assert shown["enqueued_at"] == utc(record.enqueued_at)
    assert shown["due_at"] == utc(record.due_at)
    assert TIME.fullmatch(shown["due_at"]) and shown["started_at"] is None
    assert shown["args"] == [looks_like_a_time]


def test_dlq_show_prints_times_with_z_in_the_history_too(
    invoke: Invoke, app: Conveyor, retried_dead_letter: str
) -> None:
    shown = printed(invoke("dlq", "show", retried_dead_letter))
    for field in ("enqueued_at", "started_at", "finished_at"):
        assert TIME.fullmatch(shown[field]), shown[field]
    assert [a["outcome"] for a in shown["history"]] == ["retried", "dead"]
    for attempt in shown["history"]:
        assert TIME.fullmatch(attempt["started_at"]) and TIME.fullmatch(attempt["finished_at"])
    first = shown["history"][0]
    record = app.get_record(retried_dead_letter)
    assert record is not None and record.history[0].started_at is not None
    assert first["started_at"] == utc(record.history[0].started_at)


async def test_workers_prints_times_not_epoch_numbers(
    invoke: Invoke, live_worker: LiveWorker
) -> None:
    before = datetime.now(UTC)
    async with live_worker("timed-worker"):
        [info] = [
            json.loads(line)
            for line in (await asyncio.to_thread(invoke, "workers")).stdout.splitlines()
        ]
    assert TIME.fullmatch(info["started_at"]), info
    started = datetime.fromisoformat(info["started_at"])
    assert abs((started - before).total_seconds()) < 10
    stamped = [key for key, value in info.items() if key.endswith("_at")]
    assert stamped and all(TIME.fullmatch(info[key]) for key in stamped)


def test_queues_json_holds_no_raw_time(invoke: Invoke) -> None:
    invoke("enqueue", "job")
    [stats] = printed(invoke("queues", "--json"))
    assert stats["name"] == "default"
    assert all(
        isinstance(v, str) and TIME.fullmatch(v) for k, v in stats.items() if k.endswith("_at")
    )
