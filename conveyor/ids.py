"""Task ids: the queue name, a colon, then a time-ordered ULID.

The id carries its queue so a task is found by id alone with no extra lookup key,
and every key of the task stays in its queue's Redis Cluster slot.
"""

from __future__ import annotations

import os
import re
import threading
import time

from conveyor.errors import InvalidNameError
from conveyor.names import validate_queue_name

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SEPARATOR = ":"
_ULID = re.compile(f"[{_CROCKFORD}]{{26}}")
#: each character's 5-bit value
_VALUES = {char: value for value, char in enumerate(_CROCKFORD)}
#: every 10-bit value as two characters: an id is encoded 10 bits at a time
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


_lock = threading.Lock()
_last = [0, 0]  # milliseconds and random part of the previous id
_time_part = (0, "")  # the last millisecond seen, encoded: ids of one millisecond share it


def new_ulid() -> str:
    """A 26-character ULID: 48 bits of milliseconds, 80 random bits.

    Monotonic within a process: ids made in the same millisecond increment the random
    part, so tasks enqueued together sort (and run) in the order they were made.
    """
    global _time_part
    millis = time.time_ns() // 1_000_000
    with _lock:
        if millis <= _last[0]:
            millis, entropy = _last[0], _last[1] + 1
        else:
            entropy = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        _last[0], _last[1] = millis, entropy
    # 26 characters of 5 bits: 10 for the milliseconds (2 zero bits first), 16 for entropy
    cached_millis, prefix = _time_part
    if cached_millis != millis:
        prefix = "".join([_PAIRS[millis >> shift & 1023] for shift in range(40, -1, -10)])
        _time_part = (millis, prefix)
    return prefix + "".join([_PAIRS[entropy >> shift & 1023] for shift in range(70, -1, -10)])


def new_task_id(queue: str) -> str:
    """A fresh id for a task of `queue`."""
    return f"{queue}{SEPARATOR}{new_ulid()}"


def id_millis(task_id: str) -> int:
    """When a task id was made (ms since the epoch, the producer's clock), from its ULID: a
    task's enqueue time, kept nowhere else. Raises InvalidNameError if it has no ULID."""
    ulid = task_id[-26:]
    if not _ULID.fullmatch(ulid):
        raise InvalidNameError(f"malformed task id {task_id!r}: it does not end in a ULID")
    millis = 0
    for char in ulid[:10]:
        millis = millis << 5 | _VALUES[char]
    return millis


def queue_of(task_id: str) -> str:
    """The queue a task id belongs to; raises InvalidNameError for a malformed id.

    Ids are checked strictly (a valid queue name, then a ULID), so an id from outside
    can never name anything but a task key of that queue.
    """
    queue, sep, rest = task_id.partition(SEPARATOR) if isinstance(task_id, str) else ("", "", "")
    if not sep or not _ULID.fullmatch(rest):
        raise InvalidNameError(f"malformed task id {task_id!r}: expected '<queue>:<ULID>'")
    return validate_queue_name(queue)


def is_task_id(task_id: object) -> bool:
    """True if `task_id` is well formed (it may still be unknown)."""
    try:
        queue_of(task_id)  # type: ignore[arg-type]
    except InvalidNameError:
        return False
    return True
