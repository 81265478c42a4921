"""dead_letters.py through the Inspector: a DeadFilter (task name, error text, age) picks
the dead letters a page lists, `replay_all` requeues and `delete_dead_matching` deletes,
across queues and past one scan batch. (Both faces answer alike: test_inspect.py's CASES.)"""

from __future__ import annotations

import orjson
import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.broker.dead_letters import DeadFilter
from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.broker.ops import MAINTENANCE_BATCH
from tests.broker.conftest import TaskIn
from tests.broker.seed import redis_ms, seed_dead
from tests.support.keyspace import task_keys


def error(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": kind, "message": message, "traceback": ""})


@pytest.fixture
def letters(task_in: TaskIn, r: redis.Redis, prefix: str) -> dict[str, str]:
    """Dead letters of two queues, dead 10 s, 2 min and 2 h ago, by a name."""
    made = {
        "mail_smtp": task_in("dead", "mail", error=error("SMTPError", "Refused")),
        "mail_value": task_in("dead", "mail", error=error("ValueError", "bad address")),
        "resize": task_in("dead", "resize", queue="images", error=error("OSError", "disk full")),
    }
    now = redis_ms(r)
    died = {"mail_smtp": now - 10_000, "mail_value": now - 120_000, "resize": now - 7_200_000}
    keys = GlobalKeys(prefix)
    for name, task_id in made.items():
        queue = "images" if name == "resize" else "default"
        r.zadd(keys.queue(queue).dead, {task_id: died[name]})
    return made


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (DeadFilter(task_name="mail"), ["mail_smtp", "mail_value"]),
        (DeadFilter(text="SMTPERROR"), ["mail_smtp"]),
        (DeadFilter(text="full"), ["resize"]),
        (DeadFilter(max_age=60), ["mail_smtp"]),
        (DeadFilter(min_age=60), ["mail_value", "resize"]),
        (DeadFilter(min_age=60, max_age=3600), ["mail_value"]),
        (DeadFilter(task_name="mail", text="address", max_age=3600), ["mail_value"]),
        (DeadFilter(task_name="nothing"), []),
        (DeadFilter(), ["mail_smtp", "mail_value", "resize"]),
    ],
)
def test_a_filter_picks_the_letters_of_every_queue_newest_first(
    where: DeadFilter, expected: list[str], app: Conveyor, letters: dict[str, str]
) -> None:
    total, page = app.inspector.dead_letters(where=where)
    assert (total, [record.id for record in page]) == (
        len(expected),
        [letters[n] for n in expected],
    )


def test_a_filtered_page_is_cut_from_the_matches(app: Conveyor, letters: dict[str, str]) -> None:
    where = DeadFilter(min_age=1)
    total, page = app.inspector.dead_letters(where=where, offset=1, limit=1)
    assert (total, [record.id for record in page]) == (3, [letters["mail_value"]])
    _, images = app.inspector.dead_letters(["images"], where=where)
    assert [record.id for record in images] == [letters["resize"]]


def test_the_task_name_argument_narrows_a_filter(app: Conveyor, letters: dict[str, str]) -> None:
    total, page = app.inspector.dead_letters(task_name="mail", where=DeadFilter(text="refused"))
    assert (total, [record.id for record in page]) == (1, [letters["mail_smtp"]])


def test_replay_all_requeues_only_the_matching_letters(
    app: Conveyor, letters: dict[str, str]
) -> None:
    assert app.inspector.replay_all(where=DeadFilter(task_name="mail", max_age=60)) == 1
    replayed = app.inspector.task(letters["mail_smtp"])
    assert replayed is not None
    assert replayed.state == TaskState.PENDING
    total, page = app.inspector.dead_letters()
    assert (total, {r.id for r in page}) == (2, {letters["mail_value"], letters["resize"]})


def test_replay_all_with_a_queue_and_a_filter(app: Conveyor, letters: dict[str, str]) -> None:
    assert app.inspector.replay_all(["images"], where=DeadFilter(text="smtp")) == 0
    assert app.inspector.replay_all(["default"], where=DeadFilter(text="error")) == 2
    total, page = app.inspector.dead_letters()
    assert (total, [record.id for record in page]) == (1, [letters["resize"]])


def test_delete_dead_matching_deletes_letters_and_records(
    app: Conveyor, letters: dict[str, str], r: redis.Redis, prefix: str
) -> None:
    assert app.inspector.delete_dead_matching(None, DeadFilter(min_age=60)) == 2
    for name in ("mail_value", "resize"):
        assert task_keys(r, prefix, letters[name]) == []
    total, page = app.inspector.dead_letters()
    assert (total, [record.id for record in page]) == (1, [letters["mail_smtp"]])
    assert app.inspector.delete_dead_matching(["default"], DeadFilter(text="nothing")) == 0


def test_a_filter_scans_past_one_batch(app: Conveyor, r: redis.Redis, keys: QueueKeys) -> None:
    """find_dead.lua looks at MAINTENANCE_BATCH letters per call: the Inspector goes on
    from the rank it returns until the range is exhausted."""
    now = redis_ms(r)
    ids = seed_dead(r, keys, [now - i for i in range(MAINTENANCE_BATCH + 3)])
    where = DeadFilter(task_name="job")
    total, page = app.inspector.dead_letters(
        ["default"], where=where, offset=MAINTENANCE_BATCH, limit=10
    )
    assert (total, [record.id for record in page]) == (len(ids), ids[MAINTENANCE_BATCH:])
    assert app.inspector.delete_dead_matching(["default"], where) == len(ids)
    assert r.zcard(keys.dead) == 0


def test_a_letter_whose_record_is_gone_is_listed_unfiltered_and_missed_by_a_filter(
    app: Conveyor, task_in: TaskIn, r: redis.Redis, keys: QueueKeys
) -> None:
    gone, kept = task_in("dead"), task_in("dead")
    r.delete(keys.task(gone))
    total, page = app.inspector.dead_letters()
    assert total == 2
    reasons = {(record.id, record.reason) for record in page}
    assert reasons == {(gone, "record missing"), (kept, "error")}
    total, page = app.inspector.dead_letters(where=DeadFilter(task_name="job"))
    assert (total, [record.id for record in page]) == (1, [kept])


def test_a_zero_max_age_is_a_filter_too(app: Conveyor, letters: dict[str, str]) -> None:
    """Dead at most 0 s ago: none of letters dead 10 s ago or more. Fails today:
    DeadFilter.is_empty tests the ages by truth, so 0 reads as no filter (see the report)."""
    assert app.inspector.dead_letters(where=DeadFilter(max_age=0)) == (0, [])
