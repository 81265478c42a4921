"""OpenTelemetry tracing: one trace from the producer's span (or the REST API's
`traceparent` header) to the execution span in a real worker on a real Redis, with the
SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conveyor import Conveyor, TaskState
from conveyor.api import create_app
from conveyor.api.config import ApiSettings
from conveyor.errors import BrokerUnavailableError
from conveyor.producer import TaskHandle
from conveyor.settings import Settings
from conveyor.tools.embedded import free_port
from conveyor.tracing import TracingMiddleware
from tests.api.conftest import api_client
from tests.support import handlers
from tests.support.worker import running_worker, wait_all

#: a caller's trace, as its HTTP client would send it
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """A provider of this test alone (the global one can be set only once)."""
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    yield made
    made.shutdown()


@pytest.fixture
def traced(aapp: Conveyor, provider: TracerProvider) -> Conveyor:
    """The test's app with the tracing middleware."""
    aapp.add_middleware(TracingMiddleware(provider))
    return aapp


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def parent_of(span: ReadableSpan) -> tuple[int, int] | None:
    return (span.parent.trace_id, span.parent.span_id) if span.parent else None


def ids(span: ReadableSpan) -> tuple[int, int]:
    return span.context.trace_id, span.context.span_id


def traceparent(span: ReadableSpan) -> str:
    c = span.context
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{c.trace_flags:02x}"


async def test_the_execution_span_is_the_child_of_the_enqueue_span(
    traced: Conveyor, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("test")

    @traced.task(name="coro")
    async def coro(x: int) -> int:
        with tracer.start_as_current_span("inside coro"):
            return x

    @traced.task(name="sync")
    def sync(x: int) -> int:  # in a worker thread: the execution span is current there too
        with tracer.start_as_current_span("inside sync"):
            return x

    with tracer.start_as_current_span("request") as request:
        handles = [traced.enqueue("coro", 1), await traced.enqueue_async("sync", 2)]
    async with running_worker(traced):
        await wait_all(handles, TaskState.SUCCEEDED)

    for handle, name in zip(handles, ["coro", "sync"], strict=True):
        [enqueue] = named(exporter, f"conveyor.enqueue {name}")
        assert enqueue.kind is SpanKind.PRODUCER
        assert parent_of(enqueue) == (request.get_span_context().trace_id,
                                      request.get_span_context().span_id)  # fmt: skip
        assert dict(enqueue.attributes or {}) == {
            "messaging.system": "conveyor",
            "messaging.operation.type": "send",
            "messaging.operation.name": "enqueue",
            "messaging.destination.name": "default",
            "messaging.message.id": handle.id,
            "conveyor.task.name": name,
        }
        record = await handle.record_async()
        assert record is not None and record.trace == traceparent(enqueue)

        [execute] = named(exporter, f"conveyor.execute {name}")
        assert execute.kind is SpanKind.CONSUMER
        assert parent_of(execute) == ids(enqueue)
        attributes = dict(execute.attributes or {})
        assert attributes.pop("conveyor.worker.id")
        assert attributes == {
            "messaging.system": "conveyor",
            "messaging.operation.type": "process",
            "messaging.operation.name": "execute",
            "messaging.destination.name": "default",
            "messaging.message.id": handle.id,
            "conveyor.task.name": name,
            "conveyor.task.attempt": 1,
        }
        assert execute.status.status_code is StatusCode.UNSET
        [inside] = named(exporter, f"inside {name}")
        assert parent_of(inside) == ids(execute)


async def test_a_process_handler_continues_the_execution_span_in_its_child(
    traced: Conveyor, exporter: InMemorySpanExporter
) -> None:
    traced.task(name="ids", executor="process")(handlers.current_span_ids)
    handle = await traced.enqueue_async("ids")
    async with running_worker(traced, processes=1):
        await wait_all([handle], TaskState.SUCCEEDED)
    [execute] = named(exporter, "conveyor.execute ids")
    trace_id, span_id = ids(execute)
    assert await handle.result_async(timeout=5) == [f"{trace_id:032x}", f"{span_id:016x}"]


async def test_without_an_active_span_the_enqueue_span_starts_the_trace(
    traced: Conveyor, exporter: InMemorySpanExporter
) -> None:
    traced.task(name="job")(lambda: None)
    handle = await traced.enqueue_async("job")
    async with running_worker(traced):
        await wait_all([handle], TaskState.SUCCEEDED)
    [enqueue] = named(exporter, "conveyor.enqueue job")
    [execute] = named(exporter, "conveyor.execute job")
    assert enqueue.parent is None
    assert parent_of(execute) == ids(enqueue)


async def test_a_failing_attempt_has_an_error_span_each(
    traced: Conveyor, exporter: InMemorySpanExporter
) -> None:
    @traced.task(name="fails", max_retries=1)
    async def fails() -> None:
        raise ValueError("broken")

    handle = await traced.enqueue_async("fails")
    async with running_worker(traced):
        await wait_all([handle], TaskState.DEAD)
    [enqueue] = named(exporter, "conveyor.enqueue fails")
    spans = sorted(named(exporter, "conveyor.execute fails"), key=lambda s: s.start_time or 0)
    assert [dict(s.attributes or {})["conveyor.task.attempt"] for s in spans] == [1, 2]
    for span in spans:
        assert parent_of(span) == ids(enqueue)  # every attempt belongs to the one trace
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: broken"
        [event] = span.events
        assert event.name == "exception"
        assert dict(event.attributes or {})["exception.type"] == "ValueError"


async def test_a_failed_enqueue_ends_its_span_as_an_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = Conveyor(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5)
    app.add_middleware(TracingMiddleware(provider))
    try:
        with pytest.raises(BrokerUnavailableError):
            app.enqueue("lost")
    finally:
        app.close()
    [span] = named(exporter, "conveyor.enqueue lost")
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


# -- the REST API's traceparent header ---------------------------------------------------


async def post(client: httpx.AsyncClient, path: str, body: Any, header: str) -> list[str]:
    """POST `body` with a `traceparent` header; the ids of the tasks it enqueued."""
    response = await client.post(path, json=body, headers={"traceparent": header})
    assert response.status_code == 202, response.text
    answer = response.json()
    if "tasks" in answer:
        return [t["id"] for t in answer["tasks"]]
    return [answer.get("task_id") or answer["id"]]


async def test_the_api_header_parents_the_execution_span(
    settings: Settings, traced: Conveyor, exporter: InMemorySpanExporter
) -> None:
    traced.task(name="job")(lambda x=None: x)
    # the API's own app has no middleware: it stores the header as it came
    async with api_client(settings) as client:
        task_ids = await post(client, "/task", {"type": "job", "payload": 1}, TRACEPARENT)
        task_ids += await post(client, "/v1/tasks", {"name": "job"}, TRACEPARENT)
        batch = {"tasks": [{"name": "job"}, {"name": "job", "args": [2]}]}
        task_ids += await post(client, "/v1/tasks/batch", batch, TRACEPARENT)
    handles = [TaskHandle(traced.producer, task_id) for task_id in task_ids]
    for handle in handles:
        record = await handle.record_async()
        assert record is not None and record.trace == TRACEPARENT
    async with running_worker(traced):
        await wait_all(handles, TaskState.SUCCEEDED)
    spans = named(exporter, "conveyor.execute job")
    assert len(spans) == 4
    expected = (int(TRACE_ID, 16), int(PARENT_ID, 16))
    assert [parent_of(s) for s in spans] == [expected] * 4


async def test_an_invalid_header_is_ignored(
    settings: Settings, traced: Conveyor, exporter: InMemorySpanExporter
) -> None:
    traced.task(name="job")(lambda x=None: x)
    bad = TRACEPARENT.replace("-01", "-1")
    async with api_client(settings) as client:
        task_ids = await post(client, "/task", {"type": "job", "payload": 1}, bad)
        task_ids += await post(client, "/v1/tasks", {"name": "job"}, "nonsense")
    handles = [TaskHandle(traced.producer, task_id) for task_id in task_ids]
    for handle in handles:
        record = await handle.record_async()
        assert record is not None and record.trace is None
    async with running_worker(traced):
        await wait_all(handles, TaskState.SUCCEEDED)
    spans = named(exporter, "conveyor.execute job")
    assert [s.parent for s in spans] == [None, None]  # each a trace of its own


async def test_an_active_span_wins_over_a_given_traceparent(
    traced: Conveyor, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """An instrumented API server's span is the header's child: the closer parent."""
    from conveyor.producer import Message

    with provider.get_tracer("test").start_as_current_span("server") as server:
        await traced.enqueue_many_async([Message("job", trace=TRACEPARENT)])
    [enqueue] = named(exporter, "conveyor.enqueue job")
    assert parent_of(enqueue) == (server.get_span_context().trace_id,
                                  server.get_span_context().span_id)  # fmt: skip
    # and with none active, the given one is the enqueue span's parent
    await traced.enqueue_many_async([Message("job", trace=TRACEPARENT)])
    given = [s for s in named(exporter, "conveyor.enqueue job") if s is not enqueue]
    assert [parent_of(s) for s in given] == [(int(TRACE_ID, 16), int(PARENT_ID, 16))]


async def test_a_worker_cancelled_attempt_is_not_an_error(
    traced: Conveyor, exporter: InMemorySpanExporter
) -> None:
    started = asyncio.Event()

    @traced.task(name="slow")
    async def slow() -> None:
        started.set()
        await asyncio.sleep(60)

    handle = await traced.enqueue_async("slow")
    async with running_worker(traced) as worker:
        await started.wait()
        worker.stop(fast=True)
    await wait_all([handle], TaskState.PENDING)
    [span] = named(exporter, "conveyor.execute slow")
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {})["conveyor.cancelled"] is True


async def test_a_replayed_dead_letter_runs_in_its_original_trace(
    traced: Conveyor, exporter: InMemorySpanExporter
) -> None:
    outcomes = iter([ValueError("first time"), None])

    @traced.task(name="flaky", max_retries=0)
    async def flaky() -> None:
        error = next(outcomes)
        if error is not None:
            raise error

    handle = await traced.enqueue_async("flaky")
    async with running_worker(traced):
        await wait_all([handle], TaskState.DEAD)
        assert await traced.async_inspector().replay([handle.id]) == [handle.id]
        await wait_all([handle], TaskState.SUCCEEDED)
    [enqueue] = named(exporter, "conveyor.enqueue flaky")  # revived, not enqueued again
    spans = sorted(named(exporter, "conveyor.execute flaky"), key=lambda s: s.start_time or 0)
    assert [s.status.status_code for s in spans] == [StatusCode.ERROR, StatusCode.UNSET]
    assert [parent_of(s) for s in spans] == [ids(enqueue)] * 2


async def test_the_api_documents_the_header(settings: Settings) -> None:
    async with api_client(settings) as client:
        schema = (await client.get("/openapi.json")).json()
    for path in ("/task", "/v1/tasks", "/v1/tasks/batch"):
        parameters = schema["paths"][path]["post"].get("parameters", [])
        [header] = [p for p in parameters if p["name"] == "traceparent"]
        assert header["in"] == "header"
        assert not header.get("required")


async def test_an_api_given_a_traced_app_traces_its_enqueues(
    settings: Settings, traced: Conveyor, exporter: InMemorySpanExporter
) -> None:
    traced.task(name="job")(lambda x=None: x)
    server = create_app(settings, ApiSettings(), app=traced)
    transport = httpx.ASGITransport(app=server)
    async with (
        server.router.lifespan_context(server),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        [task_id] = await post(client, "/v1/tasks", {"name": "job"}, TRACEPARENT)
    handle = TaskHandle(traced.producer, task_id)
    async with running_worker(traced):
        await wait_all([handle], TaskState.SUCCEEDED)
    # header -> the API's enqueue span -> the worker's execution span
    [enqueue] = named(exporter, "conveyor.enqueue job")
    [execute] = named(exporter, "conveyor.execute job")
    assert parent_of(enqueue) == (int(TRACE_ID, 16), int(PARENT_ID, 16))
    assert parent_of(execute) == ids(enqueue)
    record = await handle.record_async()
    assert record is not None and record.trace == traceparent(enqueue)


def test_the_core_runs_without_opentelemetry() -> None:
    """Producers and workers import no OpenTelemetry; `conveyor.tracing` names the extra."""
    script = """
import sys
sys.modules["opentelemetry"] = None  # as if it were not installed
import conveyor.app, conveyor.worker.runtime
conveyor.app.Conveyor("redis://127.0.0.1:1/0").message("job", 1)
try:
    import conveyor.tracing
except ImportError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == (
        "conveyor.tracing needs OpenTelemetry: pip install 'conveyor-queue[otel]'"
    )
