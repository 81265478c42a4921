"""`conveyor load`: a bounded stress test of a running system.

It sends tasks through the HTTP API (concurrent connections) or straight to Redis
(batches), paced at a fixed rate or as fast as it can, and measures what producers see:
enqueue throughput and request latency. With `wait` it then follows every task it sent
to a terminal state and reads the times the broker and workers wrote on the records, so
completion throughput and wait latency come from the system itself, not from the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from conveyor import serializers
from conveyor.errors import ConveyorError
from conveyor.options import TaskOptions
from conveyor.producer import Message
from conveyor.redis_url import SENTINEL_SCHEMES, parse_redis_url
from conveyor.tools.embedded import is_loopback_host
from conveyor.tools.load_follow import completion, follow, percentiles

if TYPE_CHECKING:
    import httpx

    from conveyor.app import Conveyor

#: Most tasks one run sends, and most seconds it sends for: a typo must not run for days.
MAX_TASKS, MAX_DURATION = 10_000_000, 24 * 3600.0
#: Most tasks a run with `wait` sends: it keeps every id (and then every record) in memory.
MAX_WAITED = 1_000_000
MAX_CONNECTIONS, MAX_BATCH = 1000, 1000
#: A task of `conveyor demo`'s module that costs a worker next to nothing (it formats its
#: payload), so a run measures the queue rather than the handler.
DEFAULT_TASK = "email-notification"
DEFAULT_URL = "http://127.0.0.1:8085"
#: Request latencies kept for percentiles: a uniform sample, so memory stays bounded.
LATENCY_SAMPLES = 100_000


class Via(StrEnum):
    """Where the tasks go in: the HTTP API or Redis itself."""

    HTTP = "http"
    REDIS = "redis"


class LoadError(ConveyorError):
    """The load test cannot run: its target does not answer."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run sends, how fast, and where to."""

    via: Via
    task: str = DEFAULT_TASK
    payload: Any = None
    queue: str | None = None
    tasks: int | None = None
    duration: float | None = None
    rate: float = 0.0
    connections: int = 8
    batch: int = 1
    url: str = DEFAULT_URL
    token: str | None = None
    wait: bool = False

    @property
    def limit(self) -> int:
        """Most tasks the run sends."""
        return self.tasks or (MAX_WAITED if self.wait else MAX_TASKS)

    @property
    def seconds(self) -> float:
        """Most seconds the run sends for."""
        return self.duration or MAX_DURATION

    def problems(self) -> list[str]:
        """What is wrong with the plan, one line each (empty when it can run)."""
        found = []
        if (self.tasks is None) == (self.duration is None):
            found.append("give --tasks or --duration (one of them)")
        if self.wait and self.limit > MAX_WAITED:
            found.append(f"--wait follows at most {MAX_WAITED:,} tasks")
        if self.tasks and self.rate and self.tasks / self.rate > MAX_DURATION:
            found.append(f"{self.tasks} tasks at {self.rate}/s would take more than 24 h")
        return found


def is_loopback(url: str) -> bool:
    """True if `url` points at this machine (a loopback address, localhost or a socket):
    load goes elsewhere only when asked, never by a stray environment variable."""
    if url.partition("://")[0] in SENTINEL_SCHEMES:
        return all(is_loopback_host(host) for host, _ in parse_redis_url(url).sentinels)
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return True
    return is_loopback_host(parts.hostname or "")


class Progress(Protocol):
    """Where a run reports how far it is (a progress bar, or nothing)."""

    def phase(self, description: str, total: int | None) -> None:
        """A new phase starts; `total` steps if known."""

    def advance(self, steps: int) -> None:
        """`steps` more are done."""


class NoProgress:
    """Reports nothing (for --json and for output that is not a terminal)."""

    def phase(self, description: str, total: int | None) -> None:
        """Nothing to show."""

    def advance(self, steps: int) -> None:
        """Nothing to show."""


class Schedule:
    """Hands out the run's tasks to concurrent senders, a slice at a time, each with the
    moment it is due: task i is due i/rate seconds after the start, so the pace holds
    however many senders share it and however long each request takes."""

    def __init__(
        self,
        plan: Plan,
        clock: Callable[[], float] = time.monotonic,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.plan, self.clock, self.stop = plan, clock, stop
        self.start = clock()
        self.taken = 0

    def take(self, size: int) -> tuple[int, float] | None:
        """(count, due time) of the next slice, or None once the run is over (or stopped)."""
        now, end = self.clock(), self.start + self.plan.seconds
        due = self.start + self.taken / self.plan.rate if self.plan.rate else now
        stopped = self.stop is not None and self.stop.is_set()
        if stopped or self.taken >= self.plan.limit or max(now, due) >= end:
            return None
        count = min(size, self.plan.limit - self.taken)
        self.taken += count
        return count, due


@dataclass(slots=True)
class Tally:
    """What the senders achieved: tasks sent, errors by status or kind, request times."""

    keep_ids: bool
    sent: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    ids: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    requests: int = 0

    def succeeded(self, ids: list[str], seconds: float) -> None:
        """A request enqueued `ids` in `seconds`."""
        self.sent += len(ids)
        if self.keep_ids:
            self.ids += ids
        self.sample(seconds)

    def failed(self, kind: str, count: int, seconds: float) -> None:
        """A request of `count` tasks failed with `kind` (an HTTP status or an error name)."""
        self.errors[kind] += count
        self.sample(seconds)

    def sample(self, seconds: float) -> None:
        """Keep a uniform sample of request times (reservoir sampling)."""
        self.requests += 1
        if len(self.latencies) < LATENCY_SAMPLES:
            self.latencies.append(seconds)
        elif (slot := random.randrange(self.requests)) < LATENCY_SAMPLES:
            self.latencies[slot] = seconds


class SendError(Exception):
    """A request that enqueued nothing; `kind` names why, for the error counts."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


#: Sends `count` tasks, returns their ids; raises SendError.
Send = Callable[[int], Awaitable[list[str]]]


def http_sender(client: httpx.AsyncClient, plan: Plan) -> Send:
    """Posts to the seeds' `POST /task` (one task, default queue), `POST /v1/tasks` (one
    task, another queue) or `POST /v1/tasks/batch`; bodies are encoded once."""
    task: dict[str, Any] = {"name": plan.task, "payload": plan.payload}
    if plan.queue:
        task["queue"] = plan.queue
    seed = serializers.dumps({"type": plan.task, "payload": plan.payload})
    one = seed if plan.queue is None else serializers.dumps(task)
    path = "/task" if plan.queue is None else "/v1/tasks"
    batches: dict[int, bytes] = {}
    headers = {"content-type": "application/json"}
    if plan.token:
        headers["authorization"] = f"Bearer {plan.token}"

    async def send(count: int) -> list[str]:
        if plan.batch == 1:
            answer = await _post(client, path, one, headers)
            return [answer.get("task_id") or answer["id"]]
        if count not in batches:
            batches[count] = serializers.dumps({"tasks": [task] * count})
        answer = await _post(client, "/v1/tasks/batch", batches[count], headers)
        return [each["id"] for each in answer["tasks"]]

    return send


async def _post(
    client: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    """The JSON answer of a 202; SendError with the status or the transport error if not."""
    import httpx

    try:
        response = await client.post(path, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise SendError(type(exc).__name__) from None
    if response.status_code != 202:
        raise SendError(str(response.status_code))
    answer: dict[str, Any] = serializers.loads(response.content)
    return answer


def redis_sender(app: Conveyor, plan: Plan) -> Send:
    """Enqueues through the library: one `enqueue_many` round trip per batch."""
    message = Message(plan.task, (plan.payload,), {}, TaskOptions(queue=plan.queue))

    async def send(count: int) -> list[str]:
        try:
            handles = await app.enqueue_many_async([message] * count)
        except ConveyorError as exc:
            raise SendError(type(exc).__name__) from None
        return [h.id for h in handles]

    return send


async def drive(
    plan: Plan, senders: Sequence[Send], progress: Progress, stop: asyncio.Event
) -> tuple[Tally, float]:
    """Run the senders concurrently on one schedule until it ends or `stop` is set; the
    tally and the seconds taken."""
    tally, schedule = Tally(keep_ids=plan.wait), Schedule(plan, stop=stop)

    async def sender(send: Send) -> None:
        while (piece := schedule.take(plan.batch)) is not None:
            count, due = piece
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            began = time.monotonic()
            try:
                ids = await send(count)
            except SendError as exc:
                tally.failed(exc.kind, count, time.monotonic() - began)
            else:
                tally.succeeded(ids, time.monotonic() - began)
            progress.advance(count)

    async with asyncio.TaskGroup() as group:
        for send in senders:
            group.create_task(sender(send))
    return tally, time.monotonic() - schedule.start


def sending(plan: Plan, tally: Tally, seconds: float) -> dict[str, Any]:
    """The enqueue figures of a run, ready for JSON."""
    return {
        "via": str(plan.via),
        "task": plan.task,
        "queue": plan.queue or "default",
        "rate": plan.rate or None,
        "sent": tally.sent,
        "errors": dict(sorted(tally.errors.items())),
        "requests": tally.requests,
        "seconds": seconds,
        "per_second": tally.sent / seconds if seconds else None,
        "request_seconds": percentiles(tally.latencies),
    }


async def run(
    plan: Plan,
    app: Conveyor,
    timeout: float,
    progress: Progress,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Send the plan's tasks, then with `plan.wait` follow them for at most `timeout`
    seconds; the report as a JSON-ready dict. Setting `stop` (Ctrl-C) ends either phase
    early, with a report of what was done. Closes the app's async connections."""
    stop = stop or asyncio.Event()
    inspector = app.async_inspector()
    try:
        if plan.via is Via.REDIS or plan.wait:
            await inspector.ping()  # before sending: a run that cannot read back is wasted
        expected = plan.tasks or (int(plan.rate * plan.seconds) if plan.rate else None)
        progress.phase("sent", expected)
        if plan.via is Via.HTTP:
            async with contextlib.AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(_client(plan))
                           for _ in range(plan.connections)]  # fmt: skip
                await _check_api(clients[0], plan.url)
                senders = [http_sender(client, plan) for client in clients]
                tally, seconds = await drive(plan, senders, progress, stop)
        else:
            senders = [redis_sender(app, plan)] * plan.connections
            tally, seconds = await drive(plan, senders, progress, stop)
        report: dict[str, Any] = {"sending": sending(plan, tally, seconds), "completion": None}
        if plan.wait and not stop.is_set():
            followed = await follow(inspector, tally.ids, timeout, progress, stop)
            report["completion"] = completion(followed)
        report["interrupted"] = stop.is_set()
        return report
    finally:
        await app.aclose()


def _client(plan: Plan) -> httpx.AsyncClient:
    """A client of one connection, for one sender: a shared pool of C connections costs
    httpx several times more CPU per request at C=32 (measured: 94 against 256 requests
    per second), and the client must not be what a load test measures. Proxies from the
    environment are ignored, so a loopback URL stays on this machine."""
    import httpx

    # httpx logs each request at INFO: thousands of lines, and a slower client
    logging.getLogger("httpx").setLevel(logging.WARNING)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=plan.url, limits=limits, timeout=30, trust_env=False)


async def _check_api(client: httpx.AsyncClient, url: str) -> None:
    """Fail before sending when the API is not there, rather than count every task as an
    error."""
    import httpx

    try:
        response = await client.get("/healthz")
    except httpx.HTTPError as exc:
        raise LoadError(f"the API at {url} does not answer: {exc or type(exc).__name__}") from None
    if response.status_code != 200:
        raise LoadError(f"the API at {url} answered {response.status_code} to GET /healthz")
