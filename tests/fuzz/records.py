"""Hostile task records: how a real record is corrupted, and the strategies that draw
the corruptions (wrong types, missing fields, invalid UTF-8 or JSON, huge payloads, odd
names, keys of another Redis type)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import strategies as st

Kind = Literal["hash", "string", "list", "set", "zset", "none"]
OTHER_KINDS: tuple[Kind, ...] = ("string", "list", "set", "zset", "none")


def as_int(value: bytes | None) -> int | None:
    """A counter as the worker reads it (Python's int()), or None when unreadable."""
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


# -- what a hostile record looks like ----------------------------------------------------


@dataclass
class Hostile:
    """How one real record is corrupted before the worker sees it."""

    kind: Kind = "hash"
    #: hash: fields overwritten, after the `removed` ones are deleted
    fields: dict[str, bytes] = field(default_factory=dict)
    removed: tuple[str, ...] = ()
    #: other kinds: what the key holds instead of a hash
    content: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        fields = {name: _short(value) for name, value in self.fields.items()}
        content = tuple(_short(value) for value in self.content)
        return f"Hostile({self.kind!r}, fields={fields}, removed={self.removed}, content={content})"


def _short(value: bytes) -> str:
    """A value as Python would write it, cut short if huge (payloads run to 400 kB)."""
    return repr(value) if len(value) <= 80 else f"{value[:60]!r}...({len(value)} bytes)"


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate: invalid UTF-8 on purpose


def _dumps(value: Any) -> bytes:
    """Python's JSON, which writes NaN and Infinity (not JSON to the worker)."""
    return json.dumps(value).encode()


def _truncated(data: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, max(0, len(data) - 1)).map(lambda end: data[:end])


def _nested(opening: bytes, closing: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(1, 3000).map(lambda depth: opening * depth + b"1" + closing * depth)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
#: Counters and times as no script writes them: negative, past a double's integers,
#: floats (NaN, inf), zero-padded, odd spellings Python's int() accepts, junk, invalid UTF-8.
NUMBERS: st.SearchStrategy[bytes] = st.one_of(
    st.integers(-(2**70), -1).map(str).map(_utf8),
    st.integers(2**53, 10**30).map(str).map(_utf8),
    st.floats().map(repr).map(_utf8),
    st.integers(0, 999).map(lambda n: f"0{n}").map(_utf8),
    st.sampled_from([b"", b" 7", b"+1", b"1_000", b"0x1f", b"1e3", b"9" * 5000]),
    st.text(max_size=12).map(_utf8),
    st.binary(max_size=12),
)
TEXT = st.text(max_size=30).map(_utf8) | st.binary(max_size=30)
STATES = st.sampled_from(
    [b"pending", b"active", b"scheduled", b"retrying", b"succeeded", b"dead", b"bogus", b""]
)
#: The positional arguments: right shape, any JSON, broken JSON, deep, huge.
ARGS = st.one_of(
    st.builds(lambda value: _dumps([value]), JSON),
    JSON.map(_dumps),
    JSON.map(_dumps).flatmap(_truncated),
    st.binary(max_size=40),
    st.just(b'["\xff"]'),
    _nested(b"[", b"]"),
    st.integers(1, 400_000).map(lambda size: b'["' + b"x" * size + b'"]'),
)
KWARGS = st.one_of(
    st.builds(lambda value: _dumps({"value": value}), JSON),
    JSON.map(_dumps),
    JSON.map(_dumps).flatmap(_truncated),
    st.binary(max_size=40),
    _nested(b'{"a":', b"}"),
    st.integers(1, 400_000).map(lambda size: b'{"value": "' + b"x" * size + b'"}'),
)
#: None keeps the enqueued name ("echo").
NAMES = st.one_of(
    st.none(),
    st.sampled_from([b"echo", b"fails"]),
    st.sampled_from([b"nobody", b"ECHO", b"echo ", b"echo\x00", b"{fuzz}", b"a:b", b"", b"\xff"]),
    TEXT,
    st.integers(1, 300_000).map(lambda size: b"n" * size),
)
COUNTERS = {name: NUMBERS for name in ("token", "attempts", "failures", "crashes", "max_retries")}
OPTIONS = {
    **dict.fromkeys(["priority", "timeout", "enqueued_at", "due_at", "started_at"], NUMBERS),
    **dict.fromkeys(["worker", "error", "result", "idempotency_key", "reason"], TEXT),
    "state": STATES | TEXT,
}
#: Fields of the enqueued record that may be deleted.
REMOVABLE = ["name", "state", "args", "enqueued_at"]
#: A retry budget past this would let a failing task legitimately run for minutes.
LONGEST_BUDGET = 3


@st.composite
def runnable(
    draw: st.DrawFn, fields: dict[str, st.SearchStrategy[bytes]], names: tuple[bytes, ...]
) -> Hostile:
    """A record of a registered handler (`echo` echoes, `fails` always fails) with valid
    arguments and one or two `fields` corrupted."""
    name = draw(st.sampled_from(names))
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=2, unique=True))
    values = {"name": name}
    for each in chosen:
        values[each] = draw(fields[each])
    if name == b"fails" and (as_int(values.get("max_retries")) or 0) > LONGEST_BUDGET:
        # a failing task with a huge budget would rightly retry for minutes
        values["max_retries"] = draw(NUMBERS.filter(lambda v: (as_int(v) or 0) <= LONGEST_BUDGET))
    return Hostile("hash", values)


@st.composite
def broken_payloads(draw: st.DrawFn) -> Hostile:
    """Odd, unknown or missing names; arguments of the wrong type, not JSON, not UTF-8,
    deeply nested or huge; a wrong state; fields removed."""
    values: dict[str, bytes] = {}
    name = draw(NAMES)
    if name is not None:
        values["name"] = name
    for each, strategy in (("args", ARGS), ("kwargs", KWARGS), ("state", STATES | TEXT)):
        if draw(st.booleans()):
            values[each] = draw(strategy)
    removed = draw(st.lists(st.sampled_from(REMOVABLE), max_size=len(REMOVABLE), unique=True))
    return Hostile("hash", values, tuple(removed))


def other_keys() -> st.SearchStrategy[Hostile]:
    """The task key holding another Redis type (kept in the dead set for inspection), or
    deleted (dropped from the index)."""
    kinds = st.sampled_from(OTHER_KINDS)
    content = st.lists(st.binary(max_size=20), min_size=1, max_size=3, unique=True)
    return st.builds(lambda kind, held: Hostile(kind, content=tuple(held)), kinds, content)


def corrupt(client: Any, key: str, hostile: Hostile) -> None:
    """Rewrite the record at `key` as `hostile` says, in one transaction."""
    pipe = client.pipeline(transaction=True)
    if hostile.kind == "hash":
        if hostile.removed:
            pipe.hdel(key, *hostile.removed)
        if hostile.fields:
            pipe.hset(key, mapping=hostile.fields)
    else:
        pipe.delete(key)
        if hostile.kind == "string":
            pipe.set(key, hostile.content[0])
        elif hostile.kind == "list":
            pipe.rpush(key, *hostile.content)
        elif hostile.kind == "set":
            pipe.sadd(key, *hostile.content)
        elif hostile.kind == "zset":
            pipe.zadd(key, {member: i for i, member in enumerate(hostile.content)})
    pipe.execute()
