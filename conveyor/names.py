"""The naming rules of queues, tasks and key prefixes, checked at every edge.

Names become parts of Redis keys and metric labels, so they are strict: no `{`, `}` or
`:` (they would break the `{queue}` hash tag or the key layout; asynq#480).
"""

from __future__ import annotations

import re

from conveyor.errors import InvalidNameError

#: Queue names: 1-64 of letters, digits, `_`, `.`, `-`; a shard of a queue adds `~<n>`
#: (see conveyor/shards.py).
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}(?:~[1-9][0-9]{0,2})?")
#: Task names: what producers send as "type"; also used as metric labels.
TASK_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
#: Key prefixes: the first segment of every key.
PREFIX = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
#: Worker ids: part of keys and of the names of the worker's connections.
WORKER_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def validate_queue_name(name: str) -> str:
    """Return `name` if it is a valid queue name, else raise InvalidNameError."""
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid queue name {name!r}: use 1-64 of letters, digits, '_', '.', '-'"
        )
    return name


def validate_task_name(name: str) -> str:
    """Return `name` if it is a valid task name, else raise InvalidNameError."""
    if not isinstance(name, str) or not TASK_NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid task name {name!r}: use 1-128 of letters, digits, '_', '.', '-'"
        )
    return name


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is a valid key prefix, else raise InvalidNameError."""
    if not isinstance(prefix, str) or not PREFIX.fullmatch(prefix):
        raise InvalidNameError(f"invalid key prefix {prefix!r}")
    return prefix


def validate_worker_id(worker_id: str) -> str:
    """Return `worker_id` if it is a valid worker id, else raise InvalidNameError."""
    if not isinstance(worker_id, str) or not WORKER_ID.fullmatch(worker_id):
        raise InvalidNameError(
            f"invalid worker id {worker_id!r}: use 1-128 of letters, digits, '_', '.', '-'"
        )
    return worker_id
