"""Request bodies for the API fuzz tests: near-valid ones with wrong types, any JSON,
unicode (lone surrogates included), huge strings, deep nesting, and raw bytes that may
not be JSON at all; and what the API can read of each."""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from conveyor.api.schemas import MAX_DELAY

#: One more than the API's default limit of a request body (1 MiB).
OVER_LIMIT = 1024 * 1024 + 1
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class Body:
    """What is POSTed: raw bytes and the Content-Type header (None: no header)."""

    content: bytes
    content_type: str | None = "application/json"

    def __repr__(self) -> str:
        shown = self.content if len(self.content) <= 300 else self.content[:200] + b"..."
        return f"Body({shown!r} ({len(self.content)} bytes), {self.content_type!r})"


class NotJson:
    """What the server cannot read as JSON."""

    def __repr__(self) -> str:
        return "NOT_JSON"


NOT_JSON = NotJson()


def as_json(body: Body) -> Any:
    """The JSON value the API reads from `body` (Python's json on the raw bytes, when its
    Content-Type is a JSON one: any other, or none, is refused), or NOT_JSON."""
    media = (body.content_type or "").split(";")[0].strip().lower()
    if not body.content or not (media == "application/json" or media.endswith("+json")):
        return NOT_JSON
    try:
        return json.loads(body.content)
    except (ValueError, RecursionError):  # invalid JSON or UTF-8, too many digits, too deep
        return NOT_JSON


def encoded(value: Any) -> Body:
    """Strict JSON (the generated values hold no NaN or Infinity)."""
    return Body(json.dumps(value).encode())


NAME_CHARS = string.ascii_letters + string.digits + "_.-"
TASK_NAMES = st.text(NAME_CHARS, min_size=1, max_size=128)
QUEUE_NAMES = st.text(NAME_CHARS, min_size=1, max_size=64)
TEXT = st.text(max_size=20)
#: Text with lone surrogates: valid JSON escapes, but no UTF-8 can hold them.
SURROGATES = st.text(st.characters() | st.characters(categories=["Cs"]), min_size=1, max_size=8)
HUGE = st.integers(0, OVER_LIMIT).map(lambda size: "x" * size)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | SURROGATES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)


def deep(frame: Callable[[bytes], bytes]) -> st.SearchStrategy[Body]:
    """Nested arrays, alone or in `frame` (Python's parser gives up near 1000 levels, and
    orjson, which stores payloads, past 255)."""
    nests = st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth)
    return (nests | nests.map(frame)).map(Body)


def valid_or(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value, sometimes null or any JSON at all."""
    return st.one_of(valid, valid, valid, valid, st.none(), JSON_VALUES)


ETAS = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))]),
).map(datetime.isoformat)
#: Valid values of the optional fields of POST /v1/tasks (null is valid for each).
VALID_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "payload": st.one_of(JSON_VALUES, JSON_VALUES, JSON_VALUES, HUGE),
    "args": st.lists(JSON_VALUES, max_size=4) | st.none(),
    "kwargs": st.dictionaries(TEXT, JSON_VALUES, max_size=4) | st.none(),
    "queue": QUEUE_NAMES | st.just(DEFAULT_QUEUE),
    "delay": st.floats(0, MAX_DELAY),
    "eta": ETAS,
    "priority": st.integers(-100, 100),
    "max_retries": st.integers(0, 1000),
    "timeout": st.floats(0, MAX_DELAY, exclude_min=True),
    "idempotency_key": st.sampled_from(["k1", "k2"]) | st.text(min_size=1, max_size=200),
}
#: Values to refuse: out of range, malformed, of another type (some are coerced: "5").
WRONG_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "queue": st.sampled_from(["", "a{b}", "a:b", "é", "x" * 65]),
    "delay": st.floats(-1e9, -1e-300) | st.floats(MAX_DELAY, 1e300, exclude_min=True),
    "eta": st.datetimes().map(datetime.isoformat)  # naive
    | st.sampled_from(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00", "2030-13-01"]),
    "priority": st.integers(101, 10**20) | st.integers(-(10**20), -101) | st.just("5"),
    "max_retries": st.integers(-5, -1) | st.integers(1001, 10**20) | st.just(2.5),
    "timeout": st.floats(-1e9, 0) | st.just("1"),
    "idempotency_key": st.just("") | st.text(min_size=201, max_size=210) | SURROGATES,
}


@st.composite
def new_tasks(draw: st.DrawFn, odd: int = 4) -> dict[str, Any]:
    """A POST /v1/tasks body: a name and up to three other fields, one in `odd` of them
    wrong (never, if 0); as often, a name that is not one, or an unknown field."""
    body: dict[str, Any] = {"name": draw(TASK_NAMES)}
    for each in draw(st.lists(st.sampled_from(sorted(VALID_FIELDS)), max_size=3, unique=True)):
        wrong = odd and draw(st.integers(1, odd)) == 1
        strategy = (
            (WRONG_FIELDS.get(each, JSON_VALUES) | JSON_VALUES) if wrong else VALID_FIELDS[each]
        )
        body[each] = draw(strategy)
    if odd and draw(st.integers(1, 2 * odd)) == 1:
        body["name"] = draw(JSON_VALUES | st.sampled_from(["", "a b", "é", "x" * 129]))
    if odd and draw(st.integers(1, 2 * odd)) == 1:
        body[draw(TEXT)] = draw(JSON_VALUES)
    return body


@st.composite
def seed_tasks(draw: st.DrawFn) -> dict[str, Any]:
    """A POST /task body: `type` and `payload`, either of them missing or wrong."""
    body: dict[str, Any] = {}
    if draw(st.integers(0, 9)) > 0:
        body["type"] = draw(valid_or(TASK_NAMES))
    if draw(st.booleans()):
        body["payload"] = draw(st.one_of(JSON_VALUES, JSON_VALUES, JSON_VALUES, HUGE))
    if draw(st.integers(0, 4)) == 0:
        body[draw(TEXT)] = draw(JSON_VALUES)  # the seeds' API ignores other fields
    return body


BATCHES = st.one_of(
    st.lists(new_tasks(0) | new_tasks(0) | new_tasks(), max_size=6).map(
        lambda tasks: {"tasks": tasks}
    ),
    st.integers(1001, 1003).map(lambda n: {"tasks": [{"name": "t"}] * n}),  # over the limit
    JSON_VALUES.map(lambda tasks: {"tasks": tasks}),
    st.fixed_dictionaries(
        {"tasks": st.lists(new_tasks(), max_size=2)}, optional={"x": JSON_VALUES}
    ),
)
#: Replays of the dead letters the dead-letter test keeps seeded (alpha: a, b; beta: a).
REPLAYS = st.fixed_dictionaries(
    {},
    optional={
        "queue": valid_or(st.sampled_from(["alpha", "beta", "gamma"]) | QUEUE_NAMES),
        "task": valid_or(st.sampled_from(["a", "b", "zzz"]) | TASK_NAMES),
    },
) | st.fixed_dictionaries({"queue": st.just("alpha"), "tasks": JSON_VALUES})  # unknown field


def bodies(
    near_valid: st.SearchStrategy[Any], frame: Callable[[bytes], bytes]
) -> st.SearchStrategy[Body]:
    """Near-valid bodies most of the time, else any JSON, or deep JSON in `frame`."""
    near = near_valid.map(encoded)
    return st.one_of(near, near, near, near, JSON_VALUES.map(encoded), deep(frame))


def _truncated(data: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, max(0, len(data) - 1)).map(lambda end: data[:end])


def _with_bad_utf8(data: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, len(data)).map(lambda at: data[:at] + b"\xff\xfe" + data[at:])


NEAR_VALID_RAW = st.one_of(seed_tasks(), new_tasks(), BATCHES, REPLAYS).map(
    lambda body: json.dumps(body).encode()
)
#: Floats JSON cannot hold, as Python writes them: NaN, Infinity, and numbers past a double.
NON_STANDARD = st.one_of(
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"]),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: json.dumps(x).encode()),
)
RAW = st.one_of(
    st.binary(max_size=200),
    NEAR_VALID_RAW.flatmap(_truncated),
    NEAR_VALID_RAW.flatmap(_with_bad_utf8),
    st.builds(
        lambda field, name, value: (
            b'{"' + field + b'": "' + name + b'", "payload": ' + value + b"}"
        ),
        st.sampled_from([b"type", b"name"]),
        st.sampled_from([b"x", b"a.b"]),
        NON_STANDARD | NON_STANDARD.map(lambda x: b'{"a": [1, ' + x + b"]}"),
    ),
    NON_STANDARD.map(lambda x: b'{"tasks": [{"name": "x", "payload": ' + x + b"}]}"),
    NEAR_VALID_RAW.map(lambda data: json.loads(data)).map(
        lambda body: json.dumps(body, ensure_ascii=False).encode("utf-16", "surrogatepass")
    ),
    NEAR_VALID_RAW.map(lambda data: b"\xef\xbb\xbf" + data),  # a byte order mark
    st.sampled_from([b"", b"null", b"{}", b"[]", b'{"type": "x", "type": 1}', b"{" * 100_000]),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        None,
        "application/json; charset=utf-8",
        "application/vnd.conveyor+json",
        "text/plain",
        "application/x-www-form-urlencoded",
    ]
)
