"""Reading the whole keyspace of a test's prefix, to assert on every key a script touched."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import redis

from conveyor.broker.keys import DEFAULT_BAND_END, GlobalKeys, QueueKeys
from conveyor.model import ATTEMPT_FIELD

#: The states whose depth a queue reports, with the ZSET holding each.
DEPTHS = ("pending", "active", "scheduled", "dead")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def dump(
    r: redis.Redis, prefix: str, *, claim_requests: bool = False, events: bool = False
) -> dict[str, Any]:
    """Every key under `prefix` with its decoded value (zsets as {member: score}).

    Claim-request keys (which ids one claim call leased, kept for one lease so a client
    retry gets the same tasks back) are left out unless asked for: tests/broker/
    test_claim.py checks them on their own. So are the event streams (their entries as
    field dicts when asked for): a script test checks the events its run added with
    `events_after`.
    """
    client: Any = r  # redis-py's return types are unions of every decoding mode
    out: dict[str, Any] = {}
    for raw_key in client.scan_iter(match=f"{prefix}:*", count=1000):
        key, kind = _text(raw_key), _text(client.type(raw_key))
        if (":claim:" in key and not claim_requests) or (kind == "stream" and not events):
            continue
        if kind == "stream":
            out[key] = [_fields(f) for _, f in client.xrange(raw_key)]
        elif kind == "hash":
            out[key] = {_text(k): _text(v) for k, v in client.hgetall(raw_key).items()}
        elif kind == "zset":
            pairs = client.zrange(raw_key, 0, -1, withscores=True)
            out[key] = {_text(m): s for m, s in pairs}
        elif kind == "list":
            out[key] = [_text(v) for v in client.lrange(raw_key, 0, -1)]
        elif kind == "set":
            out[key] = sorted(_text(v) for v in client.smembers(raw_key))
        else:
            value = client.get(raw_key)
            out[key] = None if value is None else _text(value)
    return out


def events_after(r: redis.Redis, stream: str, after: str = "0") -> list[dict[str, str]]:
    """The entries of event stream `stream` after id `after`, as field dicts."""
    client: Any = r
    return [_fields(fields) for _, fields in client.xrange(stream, f"({after}", "+")]


def last_event_id(r: redis.Redis, stream: str) -> str:
    """The id of the newest entry of `stream`, or "0-0" when it has none."""
    client: Any = r
    newest = client.xrevrange(stream, "+", "-", count=1)
    return _text(newest[0][0]) if newest else "0-0"


def _fields(fields: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}


def task_keys(r: redis.Redis, prefix: str, task_id: str) -> list[str]:
    """Keys that mention `task_id`: its hash, and index entries holding it."""
    found = []
    for key, value in dump(r, prefix).items():
        if task_id in key or (isinstance(value, dict | list) and task_id in value):
            found.append(key)
    return sorted(found)


def depths(r: redis.Redis, prefix: str, queue: str) -> dict[str, int]:
    """The size of each state's index of `queue`, read straight from Redis (pending: its
    ZSET and its ready list)."""
    keys = GlobalKeys(prefix).queue(queue)
    found = {state: int(r.zcard(getattr(keys, state))) for state in DEPTHS}
    found["pending"] += int(r.llen(keys.ready))
    return found


def entry(task_id: str) -> str:
    """A task's entry in its queue's ready list: the ULID of its id (the queue is the
    list's)."""
    return task_id.rpartition(":")[2]


def pending_order(r: redis.Redis, keys: QueueKeys) -> list[str]:
    """The pending ids of a queue in claim order: the ZSET down to the default priority,
    the ready list, then the rest of the ZSET."""
    client: Any = r  # redis-py's return types are unions of every decoding mode
    banded = [(_text(m), float(s)) for m, s in client.zrange(keys.pending, 0, -1, withscores=True)]
    listed = [f"{keys.queue}:{_text(i)}" for i in client.lrange(keys.ready, 0, -1)]
    above = [m for m, s in banded if s < DEFAULT_BAND_END]
    return above + listed + [m for m, s in banded if s >= DEFAULT_BAND_END]


def moved(
    before: dict[str, Any],
    keys: QueueKeys,
    task_id: str,
    *,
    source: str | None = None,
    target: str | None = None,
    score: Any = None,
    wake: bool = False,
    drop: Sequence[str] = (),
    **fields: Any,
) -> dict[str, Any]:
    """The keyspace `before` (a `dump`) as a script that moves one task leaves it: out of
    the `source` index (a QueueKeys name, e.g. "active"; "pending" is whichever of its two
    indexes holds the task; Redis deletes a key left empty),
    into the `target` set at `score`, its record without the `drop` fields and with
    `fields` set, and with `wake`, a worker's wake-up token pushed."""
    expected = copy.deepcopy(before)
    if source == "pending" and task_id not in expected.get(keys.pending, {}):
        source = "ready"  # a pending task is in one of two indexes
    if source is not None:
        members = expected[getattr(keys, source)]
        if isinstance(members, list):  # the ready list
            members.remove(entry(task_id))
        else:
            del members[task_id]
        if not members:
            del expected[getattr(keys, source)]
    if target is not None:
        expected.setdefault(getattr(keys, target), {})[task_id] = score
    record = expected[keys.task(task_id)]
    for name in drop:
        del record[name]
    record |= fields
    if wake:
        expected[keys.signal] = ["1"]
    return expected


def pop_history(state: dict[str, Any], key: str) -> dict[int, dict[str, Any]]:
    """The attempt history (`attempt:<n>` fields) of the record `key` in a `dump`, parsed
    and removed from it: the order of the keys in its JSON is not part of the contract."""
    record = state[key]
    fields = [name for name in record if name.startswith(ATTEMPT_FIELD)]
    return {int(name.removeprefix(ATTEMPT_FIELD)): json.loads(record.pop(name)) for name in fields}


def archived(
    before: dict[str, Any], key: str, finished_at: Any, outcome: str, error: bytes | None = None
) -> dict[str, Any]:
    """The history entry a script writes for the attempt the record `key` was in `before`
    (a `dump`): when and where it started, when and how it ended, and its error."""
    record = before[key]
    entry: dict[str, Any] = {
        "attempt": int(record["attempts"]),
        "started_at": int(record["started_at"]),
        "worker": record["worker"],
        "finished_at": finished_at,
        "outcome": outcome,
    }
    if error is not None:
        entry["error"] = json.loads(error)
    return entry
