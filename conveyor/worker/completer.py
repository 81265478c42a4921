"""Writes task outcomes to Redis in batches: one pipeline per burst of completions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.records import ClaimedTask
from conveyor.broker.scripts import Call
from conveyor.errors import BrokerUnavailableError
from conveyor.worker.leases import Leases
from conveyor.worker.loop import outage_backoff
from conveyor.worker.outage import Outage

log = logging.getLogger("conveyor.worker")

#: Most completions written per round trip.
BATCH = 500
OnWritten = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A task's outcome: a script call, or (`call` None) a success and its result, which
    is written with the other successes of its queue in one call."""

    task: ClaimedTask
    call: Call | None
    result: bytes
    on_written: OnWritten | None


class Completer:
    """Queue of outcomes (ack, retry, dead letter, requeue) flushed in pipelines.

    Batching comes free: while one pipeline is in flight, new outcomes queue up and go
    together in the next, so an idle worker acks at once and a busy one amortizes: the
    successes of a batch are one ack call per queue.
    """

    def __init__(
        self, broker: AsyncBroker, leases: Leases, *, outage: Outage | None = None
    ) -> None:
        self.broker = broker
        self.outage = outage or Outage(connected=True)
        self.leases = leases
        self._queue: asyncio.Queue[_Outcome] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        #: replicas each pipeline of outcomes waits for (Settings.min_replicas)
        self._replicas = broker.ops.replicas_needed()

    def submit(self, task: ClaimedTask, call: Call, on_written: OnWritten | None = None) -> None:
        """Queue an outcome; its lease is released once the outcome is written."""
        self._put(_Outcome(task, call, b"", on_written))

    def ack(self, task: ClaimedTask, result: bytes, on_written: OnWritten | None = None) -> None:
        """Queue a success and its result (JSON); `on_written` gets 1, or 0 if the lease
        was lost."""
        self._put(_Outcome(task, None, result, on_written))

    def _put(self, outcome: _Outcome) -> None:
        self._idle.clear()
        self._queue.put_nowait(outcome)

    async def run(self, stop: asyncio.Event) -> None:
        """Write outcomes until `stop` is set and everything queued is written.

        While Redis is down it keeps retrying; the worker cancels it if shutdown cannot
        wait (the leases then expire and the tasks run again: at-least-once).
        """
        failures = 0
        while not (stop.is_set() and self._queue.empty()):
            batch = await self._next_batch(stop)
            while batch:
                groups = self._calls(batch)
                calls = [c for c, _ in groups]
                if self._replicas:
                    calls.append(self.broker.ops.replicated(self._replicas))
                started = time.monotonic()
                try:
                    replies = await self.broker.execute(calls, raise_errors=False)
                except BrokerUnavailableError as exc:
                    failures += 1
                    log.debug("cannot write %d outcomes yet: %s", len(batch), exc)
                    self.outage.failed("completer", exc)
                    await asyncio.sleep(outage_backoff(failures))
                    continue
                self.outage.reached(started)
                failures = 0
                if self._replicas:
                    self._check_replicated(replies.pop(), len(batch))
                for (_, outcomes), reply in zip(groups, replies, strict=True):
                    self._written(outcomes, reply)
                batch = []
            if self._queue.empty():
                self._idle.set()

    def _check_replicated(self, replicas: Any, outcomes: int) -> None:
        """Say when outcomes reached fewer replicas than asked: they stand, but a failover
        now could undo them (the tasks would run again: at-least-once)."""
        if isinstance(replicas, Exception) or replicas < self._replicas:
            log.warning(
                "%d outcome(s) written, but %s of the %d replica(s) asked for confirmed "
                "them in time: a failover now would run those tasks again",
                outcomes, replicas, self._replicas,
            )  # fmt: skip

    def _calls(self, batch: list[_Outcome]) -> list[tuple[Call, list[_Outcome]]]:
        """The calls that write `batch`, each with the outcomes it writes."""
        groups: list[tuple[Call, list[_Outcome]]] = []
        successes: dict[str, list[_Outcome]] = {}
        for outcome in batch:
            if outcome.call is None:
                successes.setdefault(outcome.task.queue, []).append(outcome)
            else:
                groups.append((outcome.call, [outcome]))
        for group in successes.values():
            groups.append((self.broker.ops.ack([(o.task, o.result) for o in group]), group))
        return groups

    def _written(self, outcomes: list[_Outcome], reply: Any) -> None:
        # an ack's reply has one value per task; the other calls write one task each
        acks = outcomes[0].call is None and not isinstance(reply, Exception)
        per_task = reply if acks else [reply] * len(outcomes)
        for outcome, mine in zip(outcomes, per_task, strict=True):
            self.leases.release(outcome.task)
            if isinstance(mine, Exception):  # its lease expires: it runs again
                log.error("cannot write the outcome of task %s: %s", outcome.task.id, mine)
            elif outcome.on_written is not None:
                outcome.on_written(mine)

    async def _next_batch(self, stop: asyncio.Event) -> list[_Outcome]:
        if self._queue.empty():
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not getter.done():
                getter.cancel()
                return []
            batch = [getter.result()]
        else:
            batch = []
        while not self._queue.empty() and len(batch) < BATCH:
            batch.append(self._queue.get_nowait())
        return batch

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued outcome is written; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return False
        return True
