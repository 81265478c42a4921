"""Task ids: `<queue>:<ULID>`, unique and sorted in creation order."""

from __future__ import annotations

import threading
import time

import pytest

from conveyor.errors import InvalidNameError
from conveyor.ids import id_millis, is_task_id, new_task_id, new_ulid, queue_of

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def _millis(ulid: str) -> int:
    """The timestamp of a ULID: its first 10 characters, base 32."""
    value = 0
    for char in ulid[:10]:
        value = value * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(char)
    return value


@pytest.mark.parametrize("queue", ["default", "emails", "a", "q.with-dots_and-dashes"])
def test_an_id_carries_its_queue(queue: str) -> None:
    task_id = new_task_id(queue)
    assert task_id.startswith(queue + ":")
    assert queue_of(task_id) == queue
    ulid = task_id.split(":", 1)[1]
    assert len(ulid) == 26 and set(ulid) <= CROCKFORD


def test_ulids_carry_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    ulid = new_ulid()
    after = time.time_ns() // 1_000_000
    assert before <= _millis(ulid) <= after + 1  # monotonic ids may run a millisecond ahead


def test_ids_are_unique_and_sort_in_creation_order() -> None:
    ids = [new_task_id("q") for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    # many share a millisecond: the random part is incremented, not redrawn
    assert len({i[2:12] for i in ids}) < len(ids)


def test_ids_made_by_many_threads_are_unique() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(out: list[str]) -> None:
        out.extend(new_task_id("t") for _ in range(2_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for out in made for i in out]
    assert len(set(every)) == len(every)
    assert all(sorted(out) == out for out in made)  # each thread's ids in its own order


@pytest.mark.parametrize(
    "task_id", ["", "no-separator", ":01JD0000000000000000000000", "emails:", ":"]
)
def test_queue_of_rejects_malformed_ids(task_id: str) -> None:
    with pytest.raises(InvalidNameError, match=r"malformed task id|invalid queue name"):
        queue_of(task_id)


@pytest.mark.parametrize(
    "task_id",
    ["emails:01JD:extra", "emails:01JD000000000000000000000", "emails:01JD00000000000000000000000",
     "emails:01jd0000000000000000000000", "em{ails}:01JD0000000000000000000000",
     "emails:01JD000000000000000000000I"],
)  # fmt: skip
def test_ids_are_checked_strictly(task_id: str) -> None:
    """Anything but a valid queue, a colon and 26 Crockford characters is refused."""
    with pytest.raises(InvalidNameError):
        queue_of(task_id)
    assert not is_task_id(task_id)


def test_a_well_formed_id_names_its_queue() -> None:
    assert queue_of("emails:01JD0000000000000000000000") == "emails"
    assert is_task_id("emails:01JD0000000000000000000000")


def test_an_id_tells_when_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    task_id = new_task_id("emails")
    after = time.time_ns() // 1_000_000
    assert before <= id_millis(task_id) <= after
    assert id_millis("emails:01JD0000000000000000000000") == 1_731_945_562_112  # 2024-11-18
    assert id_millis("7ZZZZZZZZZ" + "0" * 16) == 2**48 - 1  # the largest a ULID holds


@pytest.mark.parametrize("task_id", ["", "emails", "emails:01JD000000000000000000000I"])
def test_an_id_without_a_ulid_has_no_time(task_id: str) -> None:
    with pytest.raises(InvalidNameError):
        id_millis(task_id)
