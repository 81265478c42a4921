"""find_dead.lua: one page of a scan of a dead-letter queue, newest first, returning only
the letters whose task name and error text match, within a range of times of death. It
reads and never writes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.dead_letters import DeadFilter
from conveyor.broker.keys import QueueKeys
from conveyor.broker.scripts import Arg, Call
from conveyor.broker.sync_broker import SyncBroker
from tests.broker.conftest import TaskIn, Unchanged
from tests.broker.seed import redis_ms, seed_dead

#: Every letter in this range, whenever it died.
ANY_TIME = ("-inf", "+inf")


def error(kind: str, message: str, traceback: str = "") -> bytes:
    """An error as a worker records it."""
    return orjson.dumps({"type": kind, "message": message, "traceback": traceback})


def find_dead(
    broker: SyncBroker,
    keys: QueueKeys,
    *,
    died: tuple[Arg, Arg] = ANY_TIME,
    name: str = "",
    text: str = "",
    rank: int = 0,
    batch: int = 500,
) -> tuple[int, list[tuple[str, int]]]:
    """One call of the script: (next rank, [(id, time of death)]). Any write fails the
    test that wraps it in `unchanged()`."""
    argv: list[Arg] = [died[0], died[1], name, text, rank, batch]
    call = Call.script_call(broker.ops.scripts["find_dead"], [keys.dead, keys.task_prefix], argv)
    [reply] = broker.execute([call])
    pairs = reply[1:]
    found = [(pairs[i].decode(), int(pairs[i + 1])) for i in range(0, len(pairs), 2)]
    return int(reply[0]), found


def set_deaths(r: redis.Redis, keys: QueueKeys, died_at: dict[str, int]) -> None:
    """Seed times of death (ms) for dead letters made through the real transitions."""
    r.zadd(keys.dead, died_at)


def deaths(r: redis.Redis, keys: QueueKeys) -> dict[str, int]:
    client: Any = r
    return {m.decode(): int(s) for m, s in client.zrange(keys.dead, 0, -1, withscores=True)}


def newest_first(r: redis.Redis, keys: QueueKeys, *ids: str) -> list[tuple[str, int]]:
    """`ids` with their times of death, newest first (letters that died in the same ms in
    reverse order of id, as ZREVRANGEBYSCORE gives them)."""
    at = deaths(r, keys)
    return sorted(((i, at[i]) for i in ids), key=lambda pair: (pair[1], pair[0]), reverse=True)


def every_letter(r: redis.Redis, keys: QueueKeys) -> list[tuple[str, int]]:
    """Every dead letter with its time of death, newest first."""
    return newest_first(r, keys, *deaths(r, keys))


def test_no_filter_lists_every_letter_newest_first(
    r: redis.Redis, broker: SyncBroker, keys: QueueKeys, unchanged: Unchanged
) -> None:
    now = redis_ms(r)
    ids = seed_dead(r, keys, [now - 3000, now - 1000, now - 2000])
    with unchanged():
        assert find_dead(broker, keys) == (-1, every_letter(r, keys))
    assert [i for i, _ in every_letter(r, keys)] == [ids[1], ids[2], ids[0]]


def test_the_name_filter_keeps_that_task_name_only(
    task_in: TaskIn, r: redis.Redis, broker: SyncBroker, keys: QueueKeys, unchanged: Unchanged
) -> None:
    mails = [task_in("dead", "send_mail"), task_in("dead", "send_mail")]
    task_in("dead", "send_mail_later")  # a name that starts the same is another name
    task_in("dead", "resize")
    with unchanged():
        assert find_dead(broker, keys, name="send_mail") == (-1, newest_first(r, keys, *mails))
        assert find_dead(broker, keys, name="nothing") == (-1, [])


@pytest.fixture
def errors(task_in: TaskIn) -> dict[str, str]:
    """Dead letters whose errors differ in type, message and traceback, by a name."""
    return {
        "value": task_in("dead", error=error("ValueError", "broken")),
        "customer": task_in("dead", error=error("KeyError", "Missing Customer 42")),
        "traced": task_in(
            "dead", error=error("RuntimeError", "x.y", 'File "app.py", line 3, in Handler')
        ),
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("valueerror", ["value"]),  # the type, whatever its case
        ("missing customer", ["customer"]),  # the message
        ("line 3, in handler", []),  # not the traceback
        ("error", ["value", "customer", "traced"]),
        ("x.y", ["traced"]),
        ("x%.y", []),  # a plain text, not a Lua pattern
        ("[", []),  # which would be a malformed pattern
        ("nowhere", []),
    ],
)
def test_the_text_filter_searches_type_and_message(
    text: str,
    expected: list[str],
    errors: dict[str, str],
    r: redis.Redis,
    broker: SyncBroker,
    keys: QueueKeys,
    unchanged: Unchanged,
) -> None:
    """The script gets the text lowercased (DeadLetterAdmin lowers it) and lowers the
    error, so any case of the error's text matches."""
    with unchanged():
        found = find_dead(broker, keys, text=text)
    assert found == (-1, newest_first(r, keys, *(errors[name] for name in expected)))


def test_the_name_and_the_text_must_both_match(
    task_in: TaskIn, r: redis.Redis, broker: SyncBroker, keys: QueueKeys
) -> None:
    both = task_in("dead", "mail", error=error("SMTPError", "refused"))
    task_in("dead", "mail", error=error("ValueError", "broken"))
    task_in("dead", "resize", error=error("SMTPError", "refused"))
    found = find_dead(broker, keys, name="mail", text="smtp")
    assert found == (-1, newest_first(r, keys, both))


def test_the_time_range_bounds_the_times_of_death_inclusively(
    task_in: TaskIn, r: redis.Redis, broker: SyncBroker, keys: QueueKeys, unchanged: Unchanged
) -> None:
    now = redis_ms(r)
    old, middle, recent = (task_in("dead") for _ in range(3))
    set_deaths(r, keys, {old: now - 600_000, middle: now - 300_000, recent: now - 60_000})
    with unchanged():
        assert find_dead(broker, keys, died=(now - 300_000, now - 60_000)) == (
            -1,
            newest_first(r, keys, recent, middle),
        )
        assert find_dead(broker, keys, died=("-inf", now - 300_001)) == (
            -1,
            newest_first(r, keys, old),
        )
        assert find_dead(broker, keys, died=(now - 59_999, "+inf")) == (-1, [])


def test_a_scan_pages_by_rank_until_the_range_is_exhausted(
    r: redis.Redis, broker: SyncBroker, keys: QueueKeys, unchanged: Unchanged
) -> None:
    now = redis_ms(r)
    seed_dead(r, keys, [now - 1000 * i for i in range(5)])
    every = every_letter(r, keys)
    with unchanged():
        assert find_dead(broker, keys, batch=2) == (2, every[0:2])
        assert find_dead(broker, keys, rank=2, batch=2) == (4, every[2:4])
        assert find_dead(broker, keys, rank=4, batch=2) == (-1, every[4:])


def test_a_full_last_page_takes_one_more_call_to_end(
    r: redis.Redis, broker: SyncBroker, keys: QueueKeys
) -> None:
    now = redis_ms(r)
    seed_dead(r, keys, [now - 1000 * i for i in range(4)])
    every = every_letter(r, keys)
    assert find_dead(broker, keys, rank=2, batch=2) == (4, every[2:4])
    assert find_dead(broker, keys, rank=4, batch=2) == (-1, [])


def test_the_rank_counts_letters_looked_at_not_matches(
    task_in: TaskIn, r: redis.Redis, broker: SyncBroker, keys: QueueKeys
) -> None:
    """A page may match nothing and still send the caller on: the next rank is past every
    letter the call looked at, matching or not."""
    wanted = task_in("dead", "wanted")
    others = [task_in("dead", "other") for _ in range(2)]
    now = redis_ms(r)
    set_deaths(r, keys, {others[0]: now, others[1]: now - 1, wanted: now - 2})
    assert find_dead(broker, keys, name="wanted", batch=2) == (2, [])
    assert find_dead(broker, keys, name="wanted", rank=2, batch=2) == (
        -1,
        newest_first(r, keys, wanted),
    )


def test_a_letter_whose_record_is_gone_matches_no_filter_but_is_listed_without_one(
    task_in: TaskIn, r: redis.Redis, broker: SyncBroker, keys: QueueKeys, unchanged: Unchanged
) -> None:
    gone, kept = task_in("dead"), task_in("dead")
    r.delete(keys.task(gone))
    with unchanged():
        assert find_dead(broker, keys) == (-1, newest_first(r, keys, gone, kept))
        assert find_dead(broker, keys, name="job") == (-1, newest_first(r, keys, kept))
        assert find_dead(broker, keys, text="broken") == (-1, newest_first(r, keys, kept))


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ('no key "id"', '"id"'),  # JSON escapes the quotes of the stored error
        ("Échec du paiement", "Échec DU"),  # ASCII letters compare without case
        ("Échec du paiement", "paiement"),
    ],
)
def test_the_text_filter_finds_what_the_message_says(
    message: str, text: str, task_in: TaskIn, app: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    """The filter matches the message as the operator reads it, not its JSON encoding;
    ASCII letters compare without case."""
    wanted = task_in("dead", error=error("PaymentError", message))
    total, letters = app.inspector.dead_letters(where=DeadFilter(text=text))
    assert (total, [letter.id for letter in letters]) == (1, [wanted])


def test_letters_beyond_ascii_compare_with_their_case(task_in: TaskIn, app: Conveyor) -> None:
    """Lua lowers ASCII letters only (documented): `é` does not find `É`."""
    task_in("dead", error=error("PaymentError", "Échec du paiement"))
    assert app.inspector.dead_letters(where=DeadFilter(text="échec"))[0] == 0
    assert app.inspector.dead_letters(where=DeadFilter(text="Échec"))[0] == 1


@pytest.mark.parametrize("text", ["type", "message", "traceback"])
def test_the_text_filter_does_not_match_the_error_fields_names(
    text: str, task_in: TaskIn, app: Conveyor
) -> None:
    """A letter whose type, message and traceback never say `text` is not a match, though
    its stored JSON holds the field names."""
    task_in("dead", error=error("ValueError", "broken", "line 1"))
    assert app.inspector.dead_letters(where=DeadFilter(text=text)) == (0, [])
