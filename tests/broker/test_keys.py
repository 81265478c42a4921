"""keys.py: every key of a queue under the prefix in its `{queue}` slot, built only from
valid names (the naming rules themselves are tested in tests/test_names.py)."""

from __future__ import annotations

import pytest
import redis
from redis.crc import key_slot

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.errors import InvalidNameError
from tests.broker.seed import claim
from tests.support.keyspace import dump
from tests.support.names import BAD_NAMES, BAD_PREFIXES


def queue_key_names(keys: QueueKeys) -> list[str]:
    """Every key name QueueKeys builds: each property, a task hash and an idempotency key."""
    names = [name for name, value in vars(QueueKeys).items() if isinstance(value, property)]
    return [getattr(keys, name) for name in names] + [
        keys.task(f"{keys.queue}:01JD0000000000000000000000"),
        keys.idempotency("order-1"),
    ]


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the text between the first `{` and the next `}`."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


@pytest.mark.parametrize("name", [*BAD_NAMES, "x" * 65], ids=repr)
def test_no_key_is_built_for_an_invalid_queue_name(name: str) -> None:
    with pytest.raises(InvalidNameError):
        GlobalKeys("conveyor").queue(name)


@pytest.mark.parametrize("name", ["emails", "x" * 64, "a.b-c_D9", "7"])
def test_keys_of_a_valid_queue_name_name_it(name: str) -> None:
    assert GlobalKeys("conveyor").queue(name).queue == name


@pytest.mark.parametrize("prefix", BAD_PREFIXES, ids=repr)
def test_no_key_is_built_under_an_invalid_prefix(prefix: str) -> None:
    with pytest.raises(InvalidNameError):
        GlobalKeys(prefix)


def test_every_queue_key_carries_the_prefix_and_the_queue_hash_tag() -> None:
    names = queue_key_names(GlobalKeys("pfx").queue("emails"))
    assert len(names) == len(set(names)) >= 10  # one distinct key per role
    for name in names:
        assert name.startswith("pfx:{emails}:"), name
        assert hash_tag(name) == "emails", name
        assert key_slot(name.encode()) == key_slot(b"emails"), name


def test_queues_and_prefixes_never_share_a_key() -> None:
    emails = set(queue_key_names(GlobalKeys("pfx").queue("emails")))
    other_queue = set(queue_key_names(GlobalKeys("pfx").queue("reports")))
    other_prefix = set(queue_key_names(GlobalKeys("alt").queue("emails")))
    assert not emails & other_queue and not emails & other_prefix


def test_global_keys_carry_the_prefix() -> None:
    keys = GlobalKeys("pfx")
    assert [keys.queues, keys.workers, keys.worker("w-1")] == [
        "pfx:queues",
        "pfx:{workers}:index",
        "pfx:{workers}:worker:w-1",
    ]


def test_every_key_the_scripts_write_lives_in_its_queue_slot(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str
) -> None:
    first, _, third, fourth = app.enqueue_many(
        [
            app.message("job", 1, queue="emails", idempotency_key="order-1"),
            app.message("job", 2, queue="emails", delay=60),
            app.message("job", 3, queue="emails"),
            app.message("job", 4, queue="emails"),
        ]
    )
    tasks = {t.id: t for t in claim(broker, 3, queue="emails")}
    assert tasks.keys() == {first.id, third.id, fourth.id}
    broker.execute(
        [
            broker.ops.retry(tasks[first.id], 60, b"{}"),
            broker.ops.dead_letter(tasks[third.id], "error", b"{}"),
        ]
    )
    state = dump(r, prefix)
    queue_keys = set(state) - {f"{prefix}:queues"}
    # active, scheduled, retrying, dead, signal, the idempotency key and four task hashes
    assert len(queue_keys) == 10, sorted(state)
    for key in queue_keys:
        assert key.startswith(f"{prefix}:{{emails}}:"), key
        assert key_slot(key.encode()) == key_slot(b"emails"), key
