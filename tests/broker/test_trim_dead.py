"""trim_dead.lua: the dead-letter queue stays within its age and size, in bounded batches."""

from __future__ import annotations

from collections.abc import Callable

import redis

from conveyor.broker.keys import QueueKeys
from conveyor.broker.ops import MAINTENANCE_BATCH
from conveyor.broker.sync_broker import SyncBroker
from tests.broker.seed import redis_ms, seed_dead
from tests.support.keyspace import dump

MINUTE_MS = 60_000


def trim(broker: SyncBroker) -> int:
    return broker.run(broker.ops.trim_dead("default"))


def remaining(r: redis.Redis, prefix: str, keys: QueueKeys) -> list[str]:
    """Ids of the dead letters left, oldest first; fails if index and records disagree."""
    state = dump(r, prefix)
    ids = list(state.get(keys.dead, {}))
    assert sorted(k for k in state if k != keys.dead) == sorted(keys.task(i) for i in ids)
    return ids


def test_nothing_to_trim_changes_nothing(
    broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    seed_dead(r, keys, [redis_ms(r) - 1000] * 3)
    before = dump(r, prefix)
    assert trim(broker) == 0
    assert dump(r, prefix) == before


def test_dead_letters_past_their_age_are_dropped_with_their_records(
    broker_with: Callable[..., SyncBroker], r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    broker = broker_with(dead_retention=60.0)
    now = redis_ms(r)
    old = seed_dead(r, keys, [now - 3 * MINUTE_MS, now - 2 * MINUTE_MS, now - MINUTE_MS - 500])
    young = seed_dead(r, keys, [now - MINUTE_MS + 5000, now - 1000])
    assert trim(broker) == len(old)
    assert remaining(r, prefix, keys) == young


def test_the_oldest_dead_letters_beyond_the_size_are_dropped(
    broker_with: Callable[..., SyncBroker], r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    broker = broker_with(dead_letter_max_size=3)
    now = redis_ms(r)
    ids = seed_dead(r, keys, [now - 5000 + 1000 * i for i in range(5)])
    assert trim(broker) == 2
    assert remaining(r, prefix, keys) == ids[2:]
    assert trim(broker) == 0


def test_age_and_size_together_drop_at_most_one_batch_per_call(
    broker_with: Callable[..., SyncBroker], r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    broker = broker_with(dead_retention=60.0, dead_letter_max_size=100)
    now = redis_ms(r)
    seed_dead(r, keys, [now - 2 * MINUTE_MS + i for i in range(300)])  # old
    young = seed_dead(r, keys, [now - 30_000 + i for i in range(400)])
    assert trim(broker) == MAINTENANCE_BATCH  # all 300 old, then the 200 oldest young
    assert remaining(r, prefix, keys) == young[200:]
    assert trim(broker) == 100
    assert remaining(r, prefix, keys) == young[300:]
    assert trim(broker) == 0


def test_aged_dead_letters_beyond_one_batch_take_several_calls(
    broker_with: Callable[..., SyncBroker], r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    broker = broker_with(dead_retention=60.0)
    now = redis_ms(r)
    old = seed_dead(r, keys, [now - 2 * MINUTE_MS + i for i in range(MAINTENANCE_BATCH + 100)])
    young = seed_dead(r, keys, [now - 1000])
    assert trim(broker) == MAINTENANCE_BATCH
    assert remaining(r, prefix, keys) == old[MAINTENANCE_BATCH:] + young
    assert trim(broker) == 100
    assert remaining(r, prefix, keys) == young
