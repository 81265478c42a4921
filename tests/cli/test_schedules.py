"""`conveyor schedules list|add|remove|pause|resume|run-now`: output, exit codes, and
nothing stored on bad input."""

from __future__ import annotations

import json

import redis

from conveyor import Conveyor
from tests.cli.conftest import Invoke
from tests.support.keyspace import dump


def test_add_list_pause_resume_run_now_remove(
    invoke: Invoke, app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    assert invoke("schedules", "list").stdout == "no schedules\n"
    added = invoke("schedules", "add", "nightly", "report", "--cron", "30 2 * * *",
                   "--tz", "Europe/Paris", "--kwargs", '{"a": 1}', "--priority", "3",
                   "--misfire", "once", "--jitter", "5")  # fmt: skip
    assert added.exit_code == 0, added.output
    shown = json.loads(added.stdout)
    assert (shown["id"], shown["cron"], shown["tz"], shown["kwargs"]) == (
        "nightly", "30 2 * * *", "Europe/Paris", {"a": 1}
    )  # fmt: skip
    assert (shown["priority"], shown["misfire"], shown["jitter"]) == (3, "once", 5)
    every = invoke("schedules", "add", "beat", "ping", "--every", "30", "--args", "[1, 2]")
    assert every.exit_code == 0 and json.loads(every.stdout)["args"] == [1, 2]

    table = invoke("schedules", "list").stdout.splitlines()
    assert table[0] == "id\ttiming\ttask\tnext_run\tlast_run\tpaused"
    assert table[1].startswith("beat\tevery 30s\tping\t") and table[1].endswith("\t-\tno")
    assert table[2].startswith("nightly\tcron 30 2 * * * (Europe/Paris)\treport\t")
    lines = invoke("schedules", "list", "--json").stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["beat", "nightly"]

    assert invoke("schedules", "pause", "nightly").stdout == "paused nightly\n"
    assert app.schedules.get("nightly").paused
    assert invoke("schedules", "resume", "nightly").stdout == "resumed nightly\n"
    assert not app.schedules.get("nightly").paused

    ran = invoke("schedules", "run-now", "nightly")
    assert ran.exit_code == 0, ran.output
    record = app.get_record(ran.stdout.strip())
    assert record is not None and (record.name, record.kwargs) == ("report", {"a": 1})

    assert invoke("schedules", "remove", "nightly").stdout == "removed nightly\n"
    assert [i.id for i in app.schedules.list()] == ["beat"]
    actions = [e.action for e in app.inspector.audit_log()[1]]
    assert actions == ["schedule.remove", "schedule.run", "schedule.resume", "schedule.pause",
                       "schedule.upsert", "schedule.upsert"]  # fmt: skip


def test_unknown_schedules_exit_1(invoke: Invoke, r: redis.Redis, prefix: str) -> None:
    for command in ("remove", "pause", "resume", "run-now"):
        result = invoke("schedules", command, "nope")
        assert result.exit_code == 1, result.output
        assert result.stderr == "Error: no schedule 'nope'\n"
    assert dump(r, prefix) == {}


def test_bad_input_exits_non_zero_and_stores_nothing(
    invoke: Invoke, r: redis.Redis, prefix: str
) -> None:
    cases = [
        (["--cron", "bad"], 1, "invalid cron expression"),
        (["--cron", "0 * * * *", "--tz", "Nowhere"], 1, "unknown time zone"),
        (["--cron", "0 * * * *", "--every", "60"], 1, "exactly one of cron= and every="),
        ([], 1, "exactly one of cron= and every="),
        (["--every", "0"], 1, "every must be > 0"),
        (["--every", "60", "--args", "{}"], 2, "must be a JSON list"),
        (["--every", "60", "--kwargs", "[1"], 2, "invalid JSON"),
        (["--every", "60", "--misfire", "never"], 2, "'never' is not one of"),
        (["--every", "60", "--app", "tests.support.periodic_tasks:app"], 1, "unknown task"),
    ]
    for options, code, message in cases:
        result = invoke("schedules", "add", "s", "report", *options)
        assert result.exit_code == code, (options, result.output)
        assert message in result.stderr, (options, result.stderr)
    assert dump(r, prefix) == {}
    known = invoke("schedules", "add", "s", "tick", "--every", "60", "--app",
                   "tests.support.periodic_tasks:app")  # fmt: skip
    assert known.exit_code == 0, known.output


def test_an_unreachable_redis_exits_3(unreachable: Invoke) -> None:
    assert unreachable("schedules", "list").exit_code == 3
