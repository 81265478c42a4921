"""The tasks of the flow proofs (`conveyor worker tests.flow.tasks:app`).

A task's flow options are resolved when it is enqueued, so the tests register the same
definitions on their own app (`register`). Each handler writes its start and end to the
ledger, under the flow key its run counts against.
"""

from __future__ import annotations

import os
import time

import redis

from conveyor import Conveyor, TaskContext
from tests.flow import ledger

#: The concurrency limit of `flow.limited`.
LIMIT = 3
#: The tenant whose concurrency key allows PREMIUM_LIMIT runs; every other allows 1.
PREMIUM, PREMIUM_LIMIT = "premium", 10
#: Longest a held run waits for its gate.
GATE_TIMEOUT = 120.0


def gate_key(prefix: str, key: str) -> str:
    """The key whose presence lets the held runs of unique key `key` end."""
    return f"{prefix}:flow-gate:{key}"


def limited(label: str, ctx: TaskContext, seconds: float = 0.0) -> str:
    """A run of the shared concurrency key of `flow.limited`."""
    return _run(ctx, "limited", label, seconds)


def tenant_limit(tenant: str, *_: object, **__: object) -> int:
    """The concurrency limit of a tenant's key, computed at enqueue."""
    return PREMIUM_LIMIT if tenant == PREMIUM else 1


def tenant_of(tenant: str, *_: object, **__: object) -> str:
    """The key a tenant's task counts against (concurrency, group or unique key)."""
    return tenant


def per_tenant(tenant: str, label: str, ctx: TaskContext, seconds: float = 0.0) -> str:
    """A run against its tenant's concurrency key or fair group."""
    return _run(ctx, tenant, label, seconds)


def paced(label: str, ctx: TaskContext) -> str:
    """A run that only records its start and end (its rate limit is set at enqueue)."""
    return _run(ctx, "paced", label, 0.0)


def unique(key: str, ctx: TaskContext, seconds: float = 0.0, hold: bool = False) -> str:
    """A run of unique key `key`; with `hold`, it ends only once the key's gate is set."""
    ledger.write(ctx, key, "start")
    if hold:
        client = redis.Redis.from_url(os.environ["CONVEYOR_REDIS_URL"])
        gate = gate_key(os.environ["CONVEYOR_PREFIX"], key)
        deadline = time.monotonic() + GATE_TIMEOUT
        while not client.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gate of {key} stayed shut for {GATE_TIMEOUT}s")
            time.sleep(0.01)
        client.close()
    time.sleep(seconds)
    ledger.write(ctx, key, "end")
    return key


def _run(ctx: TaskContext, key: str, label: str, seconds: float) -> str:
    ledger.write(ctx, key, "start")
    time.sleep(seconds)
    ledger.write(ctx, key, "end")
    return label


def register(app: Conveyor) -> Conveyor:
    """Register the proofs' tasks on `app` (none retries: a failure must show)."""
    app.task(name="flow.limited", max_retries=0, concurrency=LIMIT)(limited)
    app.task(
        name="flow.per_tenant", max_retries=0, concurrency=tenant_limit, concurrency_key=tenant_of
    )(per_tenant)
    app.task(name="flow.grouped", max_retries=0, group_key=tenant_of)(per_tenant)
    app.task(name="flow.paced", max_retries=0)(paced)
    app.task(name="flow.unique", max_retries=0, unique=True, unique_key=tenant_of)(unique)
    return app


app = register(Conveyor())
