"""Sharded queues without Redis: shard names, placement, and the `shards` setting."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from conveyor.errors import ConfigurationError, InvalidNameError
from conveyor.flow import Flow, resolve_flow
from conveyor.names import validate_queue_name
from conveyor.options import TaskOptions
from conveyor.settings import Settings
from conveyor.shards import (
    affinity,
    logical_queue,
    place,
    shard_index,
    shard_name,
    shard_names,
)
from conveyor.worker.selection import QueueSelection


def test_shard_zero_is_the_queue_itself_and_the_others_carry_their_number() -> None:
    assert shard_names("emails", 3) == ("emails", "emails~1", "emails~2")
    assert shard_names("emails", 1) == ("emails",)
    assert [logical_queue(n) for n in shard_names("emails", 3)] == ["emails"] * 3
    assert [shard_index(n) for n in shard_names("emails", 3)] == [0, 1, 2]
    assert validate_queue_name(shard_name("emails", 255)) == "emails~255"


@pytest.mark.parametrize("name", ["emails~0", "emails~", "emails~x", "~1", "a~1~2", "a~1000"])
def test_only_a_queue_name_and_a_shard_number_from_1_make_a_shard_name(name: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_queue_name(name)


def test_tasks_without_a_key_take_the_shards_in_turns() -> None:
    placed = Counter(place("emails", 4, TaskOptions(), None) for _ in range(400))
    assert placed == {name: 100 for name in shard_names("emails", 4)}


def test_an_unsplit_queue_is_its_only_shard() -> None:
    assert place("emails", 1, TaskOptions(idempotency_key="k"), None) == "emails"


def _flow(name: str = "send", **options: Any) -> tuple[TaskOptions, Flow | None]:
    opts = TaskOptions(**options)
    return opts, resolve_flow(name, opts, None, None)


def test_tasks_that_share_a_key_share_a_shard() -> None:
    for options in (
        {"concurrency": 2, "concurrency_key": "smtp"},
        {"rate_limit": "10/s", "rate_limit_key": "smtp"},
        {"unique": True, "unique_key": "user-7"},
        {"idempotency_key": "order-42"},
        {"group_key": "tenant-3"},
    ):
        opts, flow = _flow(**options)
        shards = {place("emails", 8, opts, flow) for _ in range(50)}
        assert len(shards) == 1, options


def test_different_keys_spread_over_the_shards() -> None:
    placed = Counter(place("emails", 4, TaskOptions(idempotency_key=f"k{i}"), None)
                     for i in range(400))  # fmt: skip
    assert set(placed) == set(shard_names("emails", 4))
    assert min(placed.values()) > 60  # 100 expected each


def test_a_limit_decides_the_shard_before_the_other_keys() -> None:
    # the concurrency limit counts every task of "send": whatever their unique or
    # idempotency keys, they meet in the limit's shard
    opts, flow = _flow(concurrency=1, unique=True, idempotency_key="i")
    assert affinity(opts, flow) == "send"
    opts, flow = _flow(rate_limit="1/s", unique=True, unique_key="u")
    assert affinity(opts, flow) == "send"
    opts, flow = _flow(unique=True, unique_key="u", idempotency_key="i", group_key="g")
    assert affinity(opts, flow) == "send:u"
    opts, flow = _flow(idempotency_key="i", group_key="g")
    assert affinity(opts, flow) == "i"
    opts, flow = _flow(group_key="g")
    assert affinity(opts, flow) == "g"


def test_the_shards_setting_from_code_and_from_the_environment() -> None:
    assert Settings(shards={"emails": 8}).shards == {"emails": 8}
    env = {"CONVEYOR_SHARDS": "emails:8, reports:2,"}
    assert Settings.from_env(env).shards == {"emails": 8, "reports": 2}
    assert Settings.from_env({}).shards == {}


@pytest.mark.parametrize(
    ("shards", "match"),
    [
        ({"emails": 0}, "1 to 256"),
        ({"emails": 257}, "1 to 256"),
        ({"emails~1": 2}, "is a shard"),
    ],
)
def test_bad_shards_settings_are_refused(shards: dict[str, int], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Settings(shards=shards)


@pytest.mark.parametrize("text", ["emails", "emails:x", "emails:-1", ":3"])
def test_bad_shards_variables_are_refused(text: str) -> None:
    with pytest.raises((ConfigurationError, InvalidNameError)):
        Settings.from_env({"CONVEYOR_SHARDS": text})


def test_a_worker_serves_every_shard_of_a_split_queue_in_a_fresh_order() -> None:
    selection = QueueSelection.parse("urgent,emails", {"emails": 3})
    assert selection.names == ("urgent", "emails")
    assert selection.served == ("urgent", "emails", "emails~1", "emails~2")
    rng = random.Random(3)
    orders = [selection.order(rng) for _ in range(600)]
    assert all(o[0] == "urgent" and sorted(o[1:]) == ["emails", "emails~1", "emails~2"]
               for o in orders)  # fmt: skip
    firsts = Counter(o[1] for o in orders)  # 200 expected each (sd 11.5)
    assert all(140 < firsts[name] < 260 for name in ("emails", "emails~1", "emails~2"))


def test_a_weighted_split_queue_keeps_its_weight_for_all_its_shards() -> None:
    selection = QueueSelection.parse("a:3,b:1", {"a": 2})
    rng = random.Random(5)
    firsts = Counter(logical_queue(selection.order(rng)[0]) for _ in range(2000))
    assert 1400 < firsts["a"] < 1600  # 1500 expected (sd 19)


def test_a_shard_listed_twice_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        QueueSelection.parse("emails,emails~1", {"emails": 2})


def test_a_worker_takes_on_registered_shards_beyond_its_settings() -> None:
    selection = QueueSelection.parse("emails,other~2", {"emails": 2})
    grown = selection.with_leftovers(["emails", "emails~1", "emails~3", "emails~12", "other~2",
                                      "other~5", "elsewhere~1"])  # fmt: skip
    assert grown.served == ("emails", "emails~1", "emails~3", "emails~12", "other~2")
    assert grown.names == selection.names
