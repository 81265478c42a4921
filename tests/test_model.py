"""TaskRecord: decoding the task hash, and refusing a corrupt one."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from conveyor.errors import CorruptRecordError, InvalidNameError, SerializationError
from conveyor.ids import id_millis
from conveyor.model import RECORD_FIELDS, TaskRecord, TaskState, to_millis


def _hash(**fields: object) -> dict[bytes, bytes]:
    """A task hash as redis-py returns it: bytes to bytes."""
    return {k.encode(): str(v).encode() for k, v in fields.items()}


FULL = _hash(
    name="send_email",
    args=orjson.dumps(["a@b.c", 3]).decode(),
    kwargs=orjson.dumps({"subject": "hé", "tags": [1, None]}).decode(),
    state="dead",
    priority=-5,
    attempts=4,
    failures=3,
    crashes=1,
    token=4,
    enqueued_at=1_700_000_000_000,
    due_at=1_700_000_001_500,
    started_at=1_700_000_002_250,
    finished_at=1_700_000_003_999,
    worker="host-1-abc123",
    error=orjson.dumps({"type": "ValueError", "message": "bad", "traceback": "tb"}).decode(),
    result=orjson.dumps({"ok": True}).decode(),
    max_retries=3,
    timeout=2.5,
    idempotency_key="order-1",
    reason="error",
    progress=orjson.dumps({"value": 0.5, "message": "half"}).decode(),
    checkpoint=orjson.dumps({"page": 7}).decode(),
    workflow="01JD0000000000000000000009:3",
    trace="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
)


#: Two attempts of the history that the scripts write, out of order.
HISTORY = {
    b"attempt:3": orjson.dumps({"attempt": 3, "outcome": "crashed", "started_at": 1_700_000_001_600,
        "finished_at": 1_700_000_002_000, "error": {"type": "WorkerLostError", "message": "m"}}),
    b"attempt:2": orjson.dumps({"attempt": 2, "outcome": "retried", "worker": "w",
        "started_at": 1_700_000_001_000, "finished_at": 1_700_000_001_100}),
}  # fmt: skip


def test_the_attempt_history_decodes_oldest_first() -> None:
    record = TaskRecord.from_hash("emails:01JD0000000000000000000000", {**FULL, **HISTORY})
    assert [(a.number, a.outcome, a.worker) for a in record.history] == [
        (2, "retried", "w"),
        (3, "crashed", None),
    ]
    assert record.history[1].error == {"type": "WorkerLostError", "message": "m"}
    assert record.history[0].finished_at == datetime(2023, 11, 14, 22, 13, 21, 100_000, UTC)
    assert record.to_json()["history"][0]["started_at"] == "2023-11-14T22:13:21.000Z"


def test_a_corrupt_attempt_entry_is_a_corrupt_record() -> None:
    with pytest.raises(CorruptRecordError):
        TaskRecord.from_hash("emails:01JD0000000000000000000000", {**FULL, b"attempt:1": b"{}"})


def test_a_full_hash_decodes_every_field() -> None:
    assert set(RECORD_FIELDS) == {k.decode() for k in FULL}
    record = TaskRecord.from_hash("emails:01JD0000000000000000000000", FULL)
    assert (record.id, record.queue, record.name) == (
        "emails:01JD0000000000000000000000",
        "emails",
        "send_email",
    )
    assert record.state is TaskState.DEAD
    assert (record.args, record.kwargs) == (["a@b.c", 3], {"subject": "hé", "tags": [1, None]})
    assert (record.priority, record.attempts, record.failures, record.crashes, record.token) == (
        -5, 4, 3, 1, 4,
    )  # fmt: skip
    assert record.enqueued_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert record.due_at == datetime(2023, 11, 14, 22, 13, 21, 500_000, tzinfo=UTC)
    assert record.started_at == datetime(2023, 11, 14, 22, 13, 22, 250_000, tzinfo=UTC)
    assert record.finished_at == datetime(2023, 11, 14, 22, 13, 23, 999_000, tzinfo=UTC)
    assert record.worker == "host-1-abc123"
    assert record.error == {"type": "ValueError", "message": "bad", "traceback": "tb"}
    assert record.result == {"ok": True}
    assert (record.max_retries, record.timeout) == (3, 2.5)
    assert (record.idempotency_key, record.reason) == ("order-1", "error")
    assert (record.progress, record.checkpoint) == ({"value": 0.5, "message": "half"}, {"page": 7})
    assert record.workflow == "01JD0000000000000000000009:3"
    assert record.trace == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_times_round_trip_through_milliseconds() -> None:
    record = TaskRecord.from_hash("q:01JD0000000000000000000002", FULL)
    assert record.due_at is not None
    assert to_millis(record.due_at.timestamp()) == 1_700_000_001_500


def test_a_minimal_hash_gets_the_defaults() -> None:
    record = TaskRecord.from_hash(
        "default:01JD0000000000000000000001", _hash(name="t", state="pending")
    )
    made = datetime.fromtimestamp(id_millis(record.id) / 1000, tz=UTC)
    assert record == TaskRecord(
        "default:01JD0000000000000000000001", "default", "t", TaskState.PENDING, [], {},
        enqueued_at=made,  # its id's time: a new record has no field for it
    )  # fmt: skip
    assert (record.attempts, record.token, record.error, record.result) == (0, 0, None, None)
    assert (record.max_retries, record.timeout, record.started_at) == (None, None, None)


def test_to_json_round_trips_the_record() -> None:
    record = TaskRecord.from_hash("emails:01JD0000000000000000000000", FULL)
    data = orjson.loads(orjson.dumps(record.to_json()))
    assert data["id"] == "emails:01JD0000000000000000000000" and data["state"] == "dead"
    assert data["kwargs"] == record.kwargs and data["error"] == record.error
    assert datetime.fromisoformat(data["finished_at"]) == record.finished_at
    rebuilt = {**data}
    for name in ("enqueued_at", "due_at", "started_at", "finished_at"):
        rebuilt[name] = datetime.fromisoformat(data[name])
    rebuilt["state"] = TaskState(data["state"])
    rebuilt["history"] = ()
    assert TaskRecord(**rebuilt) == record


@pytest.mark.parametrize("field", ["args", "kwargs", "error", "result"])
def test_corrupt_json_raises_serialization_error(field: str) -> None:
    raw = {**FULL, field.encode(): b"{not json"}
    with pytest.raises(SerializationError, match="invalid JSON"):
        TaskRecord.from_hash("emails:01JD0000000000000000000000", raw)


@pytest.mark.parametrize("state", [b"exploded", b"", b"PENDING"])
def test_an_unknown_state_raises_value_error(state: bytes) -> None:
    raw = {**FULL, b"state": state}
    with pytest.raises(ValueError, match="is not a valid TaskState"):
        TaskRecord.from_hash("emails:01JD0000000000000000000000", raw)


def test_a_missing_state_raises_value_error() -> None:
    raw = {k: v for k, v in FULL.items() if k != b"state"}
    with pytest.raises(ValueError):
        TaskRecord.from_hash("emails:01JD0000000000000000000000", raw)


@pytest.mark.parametrize("field", ["attempts", "token", "enqueued_at", "max_retries", "timeout"])
def test_a_corrupt_number_raises_value_error(field: str) -> None:
    raw = {**FULL, field.encode(): b"twelve"}
    with pytest.raises(ValueError):
        TaskRecord.from_hash("emails:01JD0000000000000000000000", raw)


def test_an_id_without_its_queue_is_refused() -> None:
    with pytest.raises(InvalidNameError):
        TaskRecord.from_hash("no-queue", FULL)


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (TaskState.SCHEDULED, False),
        (TaskState.PENDING, False),
        (TaskState.ACTIVE, False),
        (TaskState.RETRYING, False),
        (TaskState.SUCCEEDED, True),
        (TaskState.FAILED, True),
        (TaskState.DEAD, True),
        (TaskState.CANCELLED, True),
    ],
)
def test_terminal_states(state: TaskState, terminal: bool) -> None:
    assert state.is_terminal is terminal


@pytest.mark.parametrize(
    ("seconds", "millis"), [(0.0, 0), (0.0004, 0), (0.0006, 1), (1.5, 1500), (-3.0, 0)]
)
def test_to_millis(seconds: float, millis: int) -> None:
    assert to_millis(seconds) == millis
