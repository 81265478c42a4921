"""The `conveyor` command line, run in-process by click's CliRunner against a real Redis."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from conveyor import Conveyor, TaskState
from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.cli import cli
from conveyor.producer import TaskHandle
from tests.cli.conftest import Invoke, LiveWorker
from tests.support.keyspace import dump, pending_order
from tests.support.worker import running_worker, wait_all, wait_until

MISSING_ID = "default:01JD0000000000000000000000"


def queue_keys(prefix: str, queue: str = "default") -> QueueKeys:
    return GlobalKeys(prefix).queue(queue)


def enqueued_id(result: Result) -> str:
    """The id `conveyor enqueue` printed, after checking it succeeded."""
    assert result.exit_code == 0, result.output
    return result.stdout.split()[0]


def zset(r: redis.Redis, key: str) -> list[str]:
    client: Any = r
    return [m.decode() for m in client.zrange(key, 0, -1)]


# -- enqueue -------------------------------------------------------------------------


def test_enqueue_prints_an_id_and_stores_a_pending_task(
    invoke: Invoke, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    result = invoke("enqueue", "send-report", "--payload", '{"user": 42, "tags": ["a"]}')
    task_id = enqueued_id(result)
    assert result.stdout == f"{task_id}\n"
    assert task_id.startswith("default:")
    record = app.get_record(task_id)
    assert record is not None
    assert (record.name, record.queue, record.state) == ("send-report", "default", "pending")
    assert record.args == [{"user": 42, "tags": ["a"]}] and record.kwargs == {}
    keys = queue_keys(prefix)
    assert pending_order(r, keys) == [task_id]
    assert r.exists(keys.task(task_id)) == 1
    assert r.smembers(GlobalKeys(prefix).queues) == {b"default"}


def test_enqueue_with_kwargs(invoke: Invoke, app: Conveyor) -> None:
    task_id = enqueued_id(invoke("enqueue", "resize", "--kwargs", '{"path": "a.png", "w": 64}'))
    record = app.get_record(task_id)
    assert record is not None
    assert (record.args, record.kwargs) == ([], {"path": "a.png", "w": 64})


def test_enqueue_on_another_queue(
    invoke: Invoke, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    task_id = enqueued_id(invoke("enqueue", "send", "--queue", "emails", "--payload", '"hi"'))
    assert task_id.startswith("emails:")
    record = app.get_record(task_id)
    assert record is not None and record.queue == "emails" and record.args == ["hi"]
    assert pending_order(r, queue_keys(prefix, "emails")) == [task_id]
    assert r.exists(queue_keys(prefix).pending, queue_keys(prefix).ready) == 0
    assert r.smembers(GlobalKeys(prefix).queues) == {b"emails"}


def test_enqueue_with_a_delay_schedules_it(
    invoke: Invoke, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    before = time.time()
    task_id = enqueued_id(invoke("enqueue", "later", "--delay", "60"))
    record = app.get_record(task_id)
    assert record is not None and record.state is TaskState.SCHEDULED
    assert record.due_at is not None
    assert before + 59 <= record.due_at.timestamp() <= time.time() + 61
    keys = queue_keys(prefix)
    assert zset(r, keys.scheduled) == [task_id]
    assert pending_order(r, keys) == []


def test_enqueue_with_a_priority_runs_it_first(
    invoke: Invoke, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    plain = enqueued_id(invoke("enqueue", "job"))
    urgent = enqueued_id(invoke("enqueue", "job", "--priority", "5"))
    record = app.get_record(urgent)
    assert record is not None and record.priority == 5
    assert pending_order(r, queue_keys(prefix)) == [urgent, plain]


def test_enqueue_with_an_idempotency_key_stores_it_once(
    invoke: Invoke, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    first = invoke("enqueue", "charge", "--payload", "10", "--idempotency-key", "order-7")
    task_id = enqueued_id(first)
    assert "replayed" not in first.stdout
    second = invoke("enqueue", "charge", "--payload", "10", "--idempotency-key", "order-7")
    assert second.exit_code == 0, second.output
    assert second.stdout.split()[0] == task_id
    assert "replayed" in second.stdout
    record = app.get_record(task_id)
    assert record is not None and record.idempotency_key == "order-7"
    assert pending_order(r, queue_keys(prefix)) == [task_id]
    tasks = [k for k in dump(r, prefix) if ":task:" in k]
    assert tasks == [queue_keys(prefix).task(task_id)]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--payload", '{"user": 42', "--payload: invalid JSON"),
        ("--kwargs", "{not json}", "--kwargs: invalid JSON"),
        ("--kwargs", "[1, 2]", "--kwargs: must be a JSON object"),
    ],
)
def test_enqueue_rejects_bad_json_as_a_usage_error(
    invoke: Invoke, r: redis.Redis, prefix: str, option: str, value: str, message: str
) -> None:
    result = invoke("enqueue", "send", option, value)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert dump(r, prefix) == {}


@pytest.mark.parametrize(
    ("args", "queue", "key"),
    [
        (["--kwargs", '{"queue": "emails", "to": "a"}'], "default", "queue"),
        (["--kwargs", '{"queue": "x"}', "--queue", "other"], "other", "queue"),
        (["--kwargs", '{"payload": 1}', "--payload", "2"], "default", "payload"),
    ],
    ids=["option-name", "clash-with-queue", "clash-with-payload"],
)
def test_enqueue_keeps_kwargs_apart_from_options(
    invoke: Invoke,
    app: Conveyor,
    r: redis.Redis,
    prefix: str,
    args: list[str],
    queue: str,
    key: str,
) -> None:
    """--kwargs are the handler's arguments: they reach it verbatim, or are refused
    clearly with nothing stored; never silently read as options, never a crash."""
    result = invoke("enqueue", "send", *args)
    assert not isinstance(result.exception, Exception), repr(result.exception)  # not SystemExit
    if result.exit_code != 0:
        assert result.exit_code in (1, 2) and key in result.stderr
        assert dump(r, prefix) == {}
        return
    record = app.get_record(enqueued_id(result))
    assert record is not None
    assert record.queue == queue
    assert record.kwargs == json.loads(args[1])


def test_enqueue_rejects_an_invalid_queue_name(invoke: Invoke, r: redis.Redis, prefix: str) -> None:
    result = invoke("enqueue", "send", "--queue", "a:b")
    assert result.exit_code == 1
    assert "invalid queue name 'a:b'" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert dump(r, prefix) == {}


# -- status and cancel -----------------------------------------------------------------


def test_status_prints_the_record_as_json(invoke: Invoke) -> None:
    task_id = enqueued_id(invoke("enqueue", "send", "--payload", "[1, 2]", "--priority", "3"))
    result = invoke("status", task_id)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["id"] == task_id and record["state"] == "pending"
    assert (record["name"], record["args"], record["priority"]) == ("send", [[1, 2]], 3)


def test_status_of_an_unknown_task_fails(invoke: Invoke) -> None:
    result = invoke("status", MISSING_ID)
    assert result.exit_code == 1
    assert f"no task {MISSING_ID}" in result.stderr
    assert result.stdout == ""


def test_status_of_a_malformed_id_fails_clearly(invoke: Invoke) -> None:
    result = invoke("status", "not-an-id")
    assert result.exit_code == 1
    assert "malformed task id" in result.stderr
    assert "Traceback" not in result.output


def test_cancel_a_pending_task_then_again(
    invoke: Invoke, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    task_id = enqueued_id(invoke("enqueue", "send"))
    result = invoke("cancel", task_id)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"cancelled {task_id}\n"
    record = app.get_record(task_id)
    assert record is not None and record.state is TaskState.CANCELLED
    assert pending_order(r, queue_keys(prefix)) == []

    again = invoke("cancel", task_id)
    assert again.exit_code == 1
    assert "cancelled" in again.stderr and task_id in again.stderr
    assert again.stdout == ""


async def test_cancel_a_running_task_prints_cancelling_then_cancelled(
    invoke: Invoke, aapp: Conveyor
) -> None:
    @aapp.task(name="slow")
    async def slow() -> None:
        await asyncio.sleep(60)

    handle = await slow.enqueue_async()
    async with running_worker(aapp):

        async def running() -> bool:
            record = await handle.record_async()
            return record is not None and record.state is TaskState.ACTIVE

        await wait_until(running, 10, "the task to start")
        # the CLI blocks while it waits: the worker's loop must go on meanwhile
        result = await asyncio.to_thread(invoke, "cancel", handle.id, "--wait", "5")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"cancelling {handle.id}: it is running, its worker is told to stop it\n"
        f"cancelled {handle.id}\n"
    )


def test_cancel_a_running_task_whose_worker_does_not_answer_in_time(
    invoke: Invoke, app: Conveyor
) -> None:
    handle = app.enqueue("send")
    broker = app.sync_broker()
    [claimed] = broker.run(broker.ops.claim("default", 1, "silent-worker")).tasks
    assert claimed.id == handle.id
    result = invoke("cancel", handle.id)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"cancelling {handle.id}:")
    waited = invoke("cancel", handle.id, "--wait", "0.2")
    assert waited.exit_code == 1
    assert f"task {handle.id} is still cancelling after 0.2s" in waited.stderr
    assert handle.status() is TaskState.CANCELLING


def test_cancel_an_unknown_task_fails(invoke: Invoke) -> None:
    result = invoke("cancel", MISSING_ID)
    assert result.exit_code == 1
    assert f"no task {MISSING_ID}" in result.stderr


# -- queues, pause and resume ----------------------------------------------------------


def queues_json(invoke: Invoke) -> dict[str, dict[str, Any]]:
    result = invoke("queues", "--json")
    assert result.exit_code == 0, result.output
    return {q["name"]: q for q in json.loads(result.stdout)}


def test_queues_before_any_enqueue(invoke: Invoke) -> None:
    assert invoke("queues").stdout == "no queues yet\n"
    assert queues_json(invoke) == {}


def test_queues_table_and_json_match_the_keyspace(invoke: Invoke) -> None:
    for args in (
        ["--payload", "1"],
        ["--payload", "2"],
        ["--queue", "emails"],
        ["--queue", "emails", "--delay", "30"],
    ):
        enqueued_id(invoke("enqueue", "job", *args))
    stats = queues_json(invoke)
    lags = {name: queue.pop("lag_seconds") for name, queue in stats.items()}
    assert all(0 <= lag < 30 for lag in lags.values()), lags  # the head task's wait so far
    assert stats == {
        "default": {"name": "default", "pending": 2, "active": 0, "scheduled": 0, "dead": 0,
                    "paused": False, "retrying": 0},
        "emails": {"name": "emails", "pending": 1, "active": 0, "scheduled": 1, "dead": 0,
                   "paused": False, "retrying": 0},
    }  # fmt: skip
    table = invoke("queues")
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["queue", "pending", "active", "scheduled", "dead", "paused"]
    assert [row.split() for row in rows] == [
        ["default", "2", "0", "0", "0", "no"],
        ["emails", "1", "0", "1", "0", "no"],
    ]


def test_pause_and_resume_a_queue(invoke: Invoke, r: redis.Redis, prefix: str) -> None:
    enqueued_id(invoke("enqueue", "job", "--queue", "emails"))
    enqueued_id(invoke("enqueue", "job"))
    paused = invoke("pause", "emails")
    assert (paused.exit_code, paused.stdout) == (0, "paused emails\n")
    stats = queues_json(invoke)
    assert (stats["emails"]["paused"], stats["default"]["paused"]) == (True, False)
    assert r.exists(queue_keys(prefix, "emails").paused) == 1
    table_rows = {row.split()[0]: row.split()[-1] for row in invoke("queues").stdout.splitlines()}
    assert table_rows["emails"] == "yes"

    resumed = invoke("resume", "emails")
    assert (resumed.exit_code, resumed.stdout) == (0, "resumed emails\n")
    assert queues_json(invoke)["emails"]["paused"] is False
    assert r.exists(queue_keys(prefix, "emails").paused) == 0


def test_the_cli_actions_are_in_the_audit_log_under_its_user(invoke: Invoke, app: Conveyor) -> None:
    later = enqueued_id(invoke("enqueue", "job", "--delay", "600"))
    enqueued_id(invoke("enqueue", "job", "--queue", "emails"))
    assert invoke("pause", "emails").exit_code == 0
    assert invoke("cancel", later).exit_code == 0
    total, entries = app.inspector.audit_log()
    assert total == 2
    assert [(e.action, e.target, e.via) for e in entries] == [
        ("cancel", later, "cli"), ("pause", "emails", "cli")
    ]  # fmt: skip
    user = f"{getpass.getuser()}@{socket.gethostname()}"
    assert {e.actor for e in entries} == {f"cli:{user}"}


def test_pause_rejects_an_invalid_queue_name(invoke: Invoke, r: redis.Redis, prefix: str) -> None:
    result = invoke("pause", "{bad}")
    assert result.exit_code == 1
    assert "invalid queue name" in result.stderr
    assert dump(r, prefix) == {}


# -- dead letters ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetters:
    """Dead letters a real worker produced: two failures, one in emails, one unknown task."""

    exploded: tuple[str, str]
    fizzled: str
    unknown: str

    @property
    def all(self) -> list[str]:
        return [*self.exploded, self.fizzled, self.unknown]


async def _work_until_dead(app: Conveyor, handles: list[TaskHandle]) -> None:
    try:
        async with running_worker(app, "default,emails", processes=1):
            await wait_all(handles, TaskState.DEAD, 15, "every task to be dead-lettered")
    finally:
        await app.aclose()


@pytest.fixture
def dead(app: Conveyor) -> DeadLetters:
    @app.task(name="explode", max_retries=0)
    def explode(n: int) -> None:
        raise ValueError(f"broken input {n}")

    @app.task(name="fizzle", queue="emails", max_retries=0)
    async def fizzle() -> None:
        raise RuntimeError("fizzled")

    handles = [explode.enqueue(1), explode.enqueue(2), fizzle.enqueue(), app.enqueue("ghost")]
    asyncio.run(_work_until_dead(app, handles))
    first, second, fizzled, unknown = (h.id for h in handles)
    return DeadLetters((first, second), fizzled, unknown)


def listed(result: Result) -> dict[str, list[str]]:
    """`dlq list` output as id -> [task, reason, error]."""
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    return {row[0]: row[1:] for row in rows}


def test_dlq_list_shows_id_task_reason_and_error(invoke: Invoke, dead: DeadLetters) -> None:
    rows = listed(invoke("dlq", "list"))
    first, second = dead.exploded
    assert rows == {
        first: ["explode", "error", "ValueError: broken input 1"],
        second: ["explode", "error", "ValueError: broken input 2"],
        dead.fizzled: ["fizzle", "error", "RuntimeError: fizzled"],
        dead.unknown: ["ghost", "unknown task", rows[dead.unknown][2]],
    }
    assert rows[dead.unknown][2].endswith("no handler registered for 'ghost'")


def test_dlq_list_filters(invoke: Invoke, dead: DeadLetters) -> None:
    assert set(listed(invoke("dlq", "list", "--task", "explode"))) == set(dead.exploded)
    assert set(listed(invoke("dlq", "list", "--task", "ghost"))) == {dead.unknown}
    assert listed(invoke("dlq", "list", "--task", "nothing")) == {}
    assert set(listed(invoke("dlq", "list", "--queue", "emails"))) == {dead.fizzled}


def test_dlq_list_pages_and_says_how_many_more(invoke: Invoke, dead: DeadLetters) -> None:
    result = invoke("dlq", "list", "--queue", "default", "--limit", "1")
    assert len(listed(result)) == 1
    assert "... 2 more" in result.stderr


def test_dlq_show_prints_the_record_with_its_traceback(invoke: Invoke, dead: DeadLetters) -> None:
    result = invoke("dlq", "show", dead.exploded[0])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["id"], record["name"], record["state"]) == (dead.exploded[0], "explode", "dead")
    assert (record["reason"], record["args"], record["attempts"]) == ("error", [1], 1)
    assert record["error"]["type"] == "ValueError"
    assert "Traceback" in record["error"]["traceback"]
    assert "raise ValueError" in record["error"]["traceback"]


def test_dlq_show_of_a_task_that_is_not_dead_fails(invoke: Invoke) -> None:
    task_id = enqueued_id(invoke("enqueue", "job"))
    for unknown in (task_id, MISSING_ID):
        result = invoke("dlq", "show", unknown)
        assert result.exit_code == 1
        assert f"no dead letter {unknown}" in result.stderr
        assert result.stdout == ""


def test_dlq_retry_one_requeues_it(
    invoke: Invoke, dead: DeadLetters, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    target = dead.exploded[0]
    result = invoke("dlq", "retry", target)
    assert (result.exit_code, result.stdout) == (0, "requeued 1 dead letters\n")
    record = app.get_record(target)
    assert record is not None and record.state is TaskState.PENDING
    keys = queue_keys(prefix)
    assert pending_order(r, keys) == [target]
    assert target not in zset(r, keys.dead)
    assert set(listed(invoke("dlq", "list"))) == {dead.exploded[1], dead.fizzled, dead.unknown}


def test_dlq_retry_all_of_one_task(
    invoke: Invoke, dead: DeadLetters, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    result = invoke("dlq", "retry", "--all", "--task", "explode")
    assert (result.exit_code, result.stdout) == (0, "requeued 2 dead letters\n")
    states = {i: getattr(app.get_record(i), "state", None) for i in dead.all}
    assert states == {
        dead.exploded[0]: TaskState.PENDING,
        dead.exploded[1]: TaskState.PENDING,
        dead.fizzled: TaskState.DEAD,
        dead.unknown: TaskState.DEAD,
    }
    assert sorted(pending_order(r, queue_keys(prefix))) == sorted(dead.exploded)
    assert zset(r, queue_keys(prefix).dead) == [dead.unknown]
    assert zset(r, queue_keys(prefix, "emails").dead) == [dead.fizzled]


def test_dlq_retry_of_an_id_that_is_not_dead_fails(
    invoke: Invoke, dead: DeadLetters, app: Conveyor
) -> None:
    result = invoke("dlq", "retry", dead.fizzled, MISSING_ID)
    assert result.exit_code == 1
    assert "requeued 1 dead letters" in result.stdout
    assert "1 of the ids were not dead letters" in result.stderr
    record = app.get_record(dead.fizzled)
    assert record is not None and record.state is TaskState.PENDING


@pytest.mark.parametrize("args", [[], ["--all", MISSING_ID]], ids=["neither", "both"])
def test_dlq_retry_needs_ids_or_all(
    invoke: Invoke, r: redis.Redis, prefix: str, args: list[str]
) -> None:
    result = invoke("dlq", "retry", *args)
    assert result.exit_code == 2
    assert "give task ids, or --all" in result.stderr
    assert dump(r, prefix) == {}


def test_dlq_delete_removes_record_and_entry(
    invoke: Invoke, dead: DeadLetters, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    target = dead.unknown
    result = invoke("dlq", "delete", target)
    assert (result.exit_code, result.stdout) == (0, "deleted 1 dead letters\n")
    assert app.get_record(target) is None
    assert r.exists(queue_keys(prefix).task(target)) == 0
    assert sorted(zset(r, queue_keys(prefix).dead)) == sorted(dead.exploded)
    assert not any(target in key for key in dump(r, prefix))
    assert target not in listed(invoke("dlq", "list"))

    again = invoke("dlq", "delete", target)
    assert again.exit_code == 1
    assert "1 of the ids were not dead letters" in again.stderr


def test_dlq_purge_with_yes_empties_every_queue(
    invoke: Invoke, dead: DeadLetters, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    result = invoke("dlq", "purge", "--yes")
    assert (result.exit_code, result.stdout) == (0, "purged 4 dead letters\n")
    assert listed(invoke("dlq", "list")) == {}
    assert all(app.get_record(i) is None for i in dead.all)
    assert [q["dead"] for q in queues_json(invoke).values()] == [0, 0]
    assert not any(":task:" in key for key in dump(r, prefix))


def test_dlq_purge_asks_first_and_aborts_on_no(
    invoke: Invoke, dead: DeadLetters, r: redis.Redis, prefix: str
) -> None:
    before = dump(r, prefix)
    result = invoke("dlq", "purge", input="n\n")
    assert result.exit_code == 1
    assert "Delete every dead letter of every queue?" in result.output
    assert "Aborted" in result.output
    assert dump(r, prefix) == before
    assert set(listed(invoke("dlq", "list"))) == set(dead.all)


# -- workers ---------------------------------------------------------------------------


async def test_workers_lists_a_running_worker(invoke: Invoke, live_worker: LiveWorker) -> None:
    async with live_worker("cli-test-worker"):
        result = await asyncio.to_thread(invoke, "workers")
        assert result.exit_code == 0, result.output
        infos = [json.loads(line) for line in result.stdout.splitlines()]
        assert [i["id"] for i in infos] == ["cli-test-worker"]
        assert infos[0]["queues"] == ["default", "emails"]
    after = await asyncio.to_thread(invoke, "workers")
    assert (after.exit_code, after.stdout) == (0, "")


# -- Redis unavailable ------------------------------------------------------------------


@pytest.mark.parametrize("args", [["enqueue", "send", "--payload", "1"], ["queues"]])
def test_unreachable_redis_exits_3(unreachable: Invoke, args: list[str]) -> None:
    result = unreachable(*args)
    assert result.exit_code == 3
    assert "unavailable" in result.stderr
    assert "Traceback" not in result.output


# -- help ------------------------------------------------------------------------------

COMMANDS = ["worker", "api", "dashboard", "enqueue", "status", "cancel", "queues", "pause",
            "resume", "workers", "flow", "schedules", "dlq", "fsck", "doctor", "demo", "up",
            "load", "events", "workflow"]  # fmt: skip


def test_root_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="conveyor")
    assert result.exit_code == 0
    assert "Conveyor: a reliable, fast distributed task queue on Redis." in result.stdout
    assert "--redis-url" in result.stdout and "--prefix" in result.stdout
    commands = result.stdout.split("Commands:")[1]
    listed_names = [line.split()[0] for line in commands.splitlines() if line.strip()]
    assert sorted(listed_names) == sorted(COMMANDS)


@pytest.mark.parametrize(
    ("command", "summary"),
    [
        ("worker", "Process tasks of MODULE:APP"),
        ("api", "Serve the HTTP API: /v1, and the simple API (POST /task, GET /stats)"),
        ("dashboard", "Serve the web dashboard: queues, workers, tasks, dead letters"),
        ("enqueue", "Enqueue task NAME and print its id."),
        ("status", "Print the record of task TASK_ID as JSON."),
        ("cancel", "Cancel task TASK_ID. One not yet started is cancelled at once"),
        ("workflow", "Print workflow WORKFLOW_ID: its state, result or error, and each node's."),
        ("queues", "Show every queue's depth per state."),
        ("pause", "Stop workers from claiming tasks of QUEUE"),
        ("resume", "Let workers claim tasks of QUEUE again."),
        ("workers", "List the workers alive by heartbeat"),
        ("dlq", "Inspect and replay the dead-letter queues."),
        ("dlq list", "List dead letters, newest first"),
        ("dlq show", "Print one dead letter's record"),
        ("dlq retry", "Requeue dead letters"),
        ("dlq delete", "Delete dead letters by id."),
        ("dlq purge", "Delete every dead letter"),
        ("demo", "Enqueue tasks of every kind and process them"),
        ("up", "Run the whole system on this machine: Redis, the API (:8085), the dashboard"),
        ("load", "Send tasks and measure: enqueue throughput"),
    ],
)
def test_subcommand_help(command: str, summary: str) -> None:
    result = CliRunner().invoke(cli, [*command.split(), "--help"], prog_name="conveyor")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: conveyor {command} ")
    assert summary in " ".join(result.stdout.split())


def test_flow_reports_slots_and_buckets_as_text_and_json(invoke: Invoke, app: Conveyor) -> None:
    assert invoke("flow", "default").stdout == "queue default: no flow control in use\n"
    for _ in range(3):
        app.enqueue("job", concurrency=1, concurrency_key="crm", rate_limit="1/m")
    broker = app.sync_broker()
    broker.run(broker.ops.claim("default", 10, "w1"))
    lines = invoke("flow", "default").stdout.splitlines()
    assert lines[0] == "concurrency crm: 1 running, 2 waiting for a slot"
    assert lines[1].startswith("rate limit job: booked ") and lines[2].endswith(": 0")
    state = json.loads(invoke("flow", "default", "--json").stdout)
    assert state["concurrency"] == [{"key": "crm", "in_use": 1, "waiting": 2}]
    bad = invoke("flow", "no:such")
    assert bad.exit_code != 0 and "queue" in bad.output
