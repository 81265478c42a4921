"""`conveyor events`: the state changes, filtered, as lines or JSON, and followed live."""

from __future__ import annotations

import select
import subprocess
import sys

import orjson

from conveyor import Conveyor
from conveyor.tools.embedded import RedisServer
from tests.cli.conftest import Invoke
from tests.support.processes import ROOT


def test_since_start_prints_every_kept_event_then_stops(app: Conveyor, invoke: Invoke) -> None:
    first, second = app.enqueue("emails.send"), app.enqueue("report", queue="reports")
    result = invoke("events", "--since", "start", "--no-follow")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "enqueued" in lines[0] and first.id in lines[0] and "emails.send" in lines[0]
    assert "reports" in lines[1] and second.id in lines[1]


def test_filters_by_queue_and_by_task_name(app: Conveyor, invoke: Invoke) -> None:
    app.enqueue("a", queue="one")
    kept = app.enqueue("b", queue="one")
    app.enqueue("b", queue="two")
    result = invoke("events", "--since", "start", "--no-follow", "--queue", "one", "--task", "b")
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert kept.id in line


def test_json_lines_resume_after_the_id_they_carry(app: Conveyor, invoke: Invoke) -> None:
    first = app.enqueue("job", delay=60)
    result = invoke("events", "--since", "start", "--no-follow", "--json")
    [event] = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert event["event"] == "scheduled" and event["task_id"] == first.id
    assert event["due_at"].isdigit() and event["queue"] == "default"
    later = app.enqueue("job")
    resumed = invoke("events", "--since", event["id"], "--no-follow", "--json")
    assert [orjson.loads(line)["task_id"] for line in resumed.stdout.splitlines()] == [later.id]


def test_by_default_only_what_happens_from_now(app: Conveyor, invoke: Invoke) -> None:
    app.enqueue("job")
    result = invoke("events", "--no-follow")
    assert result.exit_code == 0 and result.stdout == ""


def test_a_bad_since_is_a_usage_error(invoke: Invoke) -> None:
    result = invoke("events", "--since", "yesterday", "--no-follow")
    assert result.exit_code == 2
    assert "not an event id" in result.stderr


def test_follow_prints_events_as_they_happen(
    app: Conveyor, redis_server: RedisServer, prefix: str
) -> None:
    connection = ["--redis-url", redis_server.url, "--prefix", prefix]
    command = [sys.executable, "-m", "conveyor", "events", "--json", "--since", "start",
               "--queue", "default", *connection]  # fmt: skip
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as tail:
        try:
            handle = app.enqueue("job")
            assert tail.stdout is not None
            readable, _, _ = select.select([tail.stdout], [], [], 30)
            assert readable, "no event printed within 30 s"
            event = orjson.loads(tail.stdout.readline())
            assert (event["event"], event["task_id"]) == ("enqueued", handle.id)
            assert tail.poll() is None, "it should still be following"
        finally:
            tail.terminate()
