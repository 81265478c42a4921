"""The dashboard in a real browser: headless Chromium drives the page served by the real
dashboard app, over the session's redis-server, with real workers doing the work."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from conveyor import Conveyor, TaskContext, TaskState
from conveyor.api.config import ApiSettings, Grant, Scope
from conveyor.model import TaskRecord
from conveyor.producer import TaskHandle
from conveyor.schedule import Schedule
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer
from tests.dashboard.conftest import PageFactory, WorkerFactory, serving
from tests.support.worker import wait_until_sync

pytestmark = pytest.mark.browser

#: What `task.record() or NO_RECORD` reads while a record is missing.
NO_RECORD = TaskRecord("default:0", "default", "", TaskState.PENDING, [], {})
READ_TOKEN = "r" * 24
WRITE_TOKEN = "w" * 24
#: Anything in <main> that acts; none of it may be there for a read-only session.
ACTION_CONTROLS = (
    "main button.action, main input[type=checkbox], main textarea, "
    "[data-testid=edit-payload], [data-testid=dead-purge], [data-testid=pause-button], "
    "[data-testid=resume-button]"
)


def make_app(settings: Settings) -> Conveyor:
    """An app with the handlers these tests run (each worker gets one of its own)."""
    app = Conveyor(settings=settings)

    @app.task(name="divide", max_retries=1)
    def divide(a: float, b: float) -> float:
        return a / b

    @app.task(name="explode", max_retries=0)
    def explode() -> None:
        raise RuntimeError("the boiler exploded")

    @app.task(name="note", max_retries=0)
    def note(text: str) -> str:
        return text

    @app.task(name="long", max_retries=3)
    async def long(ctx: TaskContext) -> None:
        await ctx.checkpoint_async({"page": 4})
        await ctx.progress_async(0.4, "page 4 of 10")
        await asyncio.sleep(60)

    return app


@pytest.fixture
def producer(settings: Settings) -> Iterator[Conveyor]:
    """The app the tests enqueue with: it knows the handlers' options (retries, say)."""
    made = make_app(settings)
    yield made
    made.close()


def shoot(page: Page, artifacts: Path, name: str) -> None:
    """A full-page screenshot of what the operator sees now."""
    page.screenshot(path=artifacts / f"{name}.png", full_page=True)


def task_url(base: str, task_id: str) -> str:
    return f"{base}tasks/{task_id}"


def wait_state(handle: TaskHandle, state: TaskState, timeout: float = 15) -> None:
    """Wait, through the library, until the task is in `state`."""
    wait_until_sync(lambda: handle.status() == state, timeout, f"{handle.id} to be {state}")


def cell(page: Page, queue: str, column: str) -> Locator:
    """A number of the overview's queue table."""
    return page.get_by_test_id(f"queue-row-{queue}").locator(f'[data-col="{column}"]')


def test_the_overview_follows_enqueues_without_a_reload(
    dashboard: str, producer: Conveyor, settings: Settings, new_page: PageFactory,
    start_worker: WorkerFactory, artifacts: Path,
) -> None:  # fmt: skip
    page = new_page()
    page.goto(dashboard)
    for chart in ("throughput-15m", "latency-15m", "throughput-24h", "latency-24h"):
        expect(page.get_by_test_id(f"chart-{chart}")).to_be_visible()
    expect(page.get_by_test_id("workers-alive")).to_have_text("0")
    page.evaluate("window.sameDocument = true")  # gone if the page ever reloads

    for i in range(3):
        producer.enqueue("note", f"n{i}", queue="live")
    producer.enqueue("note", "later", queue="live", delay=3600)
    pending, scheduled = cell(page, "live", "pending"), cell(page, "live", "scheduled")
    expect(pending).to_have_text("3")
    expect(scheduled).to_have_text("1")

    worker = start_worker(make_app(settings), "live")
    expect(pending).to_have_text("0")
    expect(page.get_by_test_id("workers-alive")).to_have_text("1")
    expect(scheduled).to_have_text("1")
    assert page.evaluate("window.sameDocument") is True, "the page reloaded"
    # the charts follow too: the three successes show as a peak of succeeded per second
    # (the workers flush their counts about once a second), their run times as latency
    throughput = page.get_by_test_id("chart-throughput-15m")
    expect(throughput.locator("svg")).to_have_attribute(
        "aria-label", re.compile(r"^succeeded: latest [^;]*, peak 0\.[0-9]*[1-9]")
    )
    latency = page.get_by_test_id("chart-latency-15m")
    expect(latency.locator("svg")).to_have_attribute(
        "aria-label", re.compile(r"^run p50: latest \d")
    )
    # four series, labelled axes, a legend
    expect(throughput.locator("svg path.line")).to_have_count(4)
    expect(throughput.locator("svg text.axis-title")).to_have_count(2)
    expect(throughput.locator(".legend li")).to_have_count(4)
    shoot(page, artifacts, "overview")

    page.get_by_test_id("nav-workers").click()
    row = page.get_by_test_id(f"worker-row-{worker.worker.id}")
    expect(row).to_contain_text("alive")
    expect(row).to_contain_text("live")
    assert page.evaluate("window.sameDocument") is True
    shoot(page, artifacts, "workers")


def test_a_dead_letter_is_found_edited_replayed_and_succeeds(
    dashboard: str, producer: Conveyor, settings: Settings, new_page: PageFactory,
    start_worker: WorkerFactory, artifacts: Path,
) -> None:  # fmt: skip
    start_worker(make_app(settings), "default")
    dead = producer.enqueue("divide", 1, 0)
    other = producer.enqueue("explode")
    wait_state(dead, TaskState.DEAD)
    wait_state(other, TaskState.DEAD)

    page = new_page()
    page.goto(f"{dashboard}dead")
    expect(page.get_by_test_id(f"dead-row-{other.id}")).to_be_visible()
    page.get_by_test_id("dead-filter-task").fill("divide")
    page.get_by_test_id("dead-filter-text").fill("by zero")
    page.get_by_test_id("dead-filter-min-age").fill("0")
    page.get_by_test_id("dead-filter-max-age").fill("1h")
    page.get_by_test_id("dead-filter-apply").click()
    expect(page.get_by_test_id(f"dead-row-{other.id}")).to_have_count(0)
    row = page.get_by_test_id(f"dead-row-{dead.id}")
    expect(row).to_contain_text("ZeroDivisionError")
    shoot(page, artifacts, "dead-letters")

    row.get_by_role("link", name=re.compile(".")).first.click()
    expect(page.get_by_test_id("task-state")).to_have_text("dead")
    timeline = page.get_by_test_id("timeline")
    expect(timeline.locator("details summary").first).to_have_text("Traceback")
    expect(timeline).to_contain_text("ZeroDivisionError")
    page.get_by_test_id("edit-payload").click()
    editor = page.get_by_test_id("payload-editor")
    expect(editor).to_have_value(re.compile(r'"args": \[\s*1,\s*0\s*\]'))
    # a mistake is caught in the page, with a message that says what is wrong
    editor.fill('{"args": [6, 3]')
    expect(page.get_by_test_id("payload-error")).to_contain_text("not valid JSON")
    editor.fill('{"args": "6, 3", "kwargs": {}}')
    page.get_by_test_id("replay-edited").click()
    expect(page.get_by_test_id("payload-error")).to_contain_text('"args" must be a JSON array')
    assert dead.status() == TaskState.DEAD  # nothing was sent

    editor.fill('{"args": [6, 3], "kwargs": {}}')
    page.get_by_test_id("replay-edited").click()
    expect(page.get_by_test_id("task-state")).to_have_text("succeeded")
    expect(page.get_by_test_id("result")).to_have_text("2")  # JSON's 2.0
    record = producer.get_record(dead.id)
    assert record is not None
    assert (record.state, record.args, record.result) == (TaskState.SUCCEEDED, [6, 3], 2.0)
    shoot(page, artifacts, "task")


def test_a_scheduled_task_is_cancelled_from_its_page(
    dashboard: str, producer: Conveyor, new_page: PageFactory
) -> None:
    task = producer.enqueue("note", "tomorrow", delay=86400)
    page = new_page()
    page.goto(dashboard)
    page.get_by_test_id("search-input").fill(task.id)  # search by id, from any page
    page.get_by_test_id("search-input").press("Enter")
    expect(page.get_by_test_id("task-state")).to_have_text("scheduled")
    page.get_by_test_id("action-cancel").click()
    expect(page.get_by_test_id("task-state")).to_have_text("cancelled")
    expect(page.get_by_test_id("action-cancel")).to_have_count(0)
    assert task.status() == TaskState.CANCELLED


def test_a_task_page_follows_its_task_without_polling_for_it(
    dashboard: str, producer: Conveyor, settings: Settings, new_page: PageFactory,
    start_worker: WorkerFactory,
) -> None:  # fmt: skip
    task = producer.enqueue("note", "written later", queue="later", delay=4.0)
    start_worker(make_app(settings), "later")
    page = new_page()
    page.goto(task_url(dashboard, task.id))
    expect(page.get_by_test_id("task-state")).to_have_text("scheduled")
    # the page reads the task again only every 15 s: within 10, only the task's events,
    # streamed to the page, can show it ran
    expect(page.get_by_test_id("task-state")).to_have_text("succeeded")
    expect(page.get_by_test_id("result")).to_contain_text("written later")


def test_a_running_task_shows_its_progress_and_is_cancelled_from_its_page(
    dashboard: str, producer: Conveyor, settings: Settings, new_page: PageFactory,
    start_worker: WorkerFactory, artifacts: Path,
) -> None:  # fmt: skip
    task = producer.enqueue("long", queue="long")
    start_worker(make_app(settings), "long")
    wait_until_sync(lambda: (task.record() or NO_RECORD).progress is not None, 15, "progress")
    page = new_page()
    page.goto(task_url(dashboard, task.id))
    expect(page.get_by_test_id("task-state")).to_have_text("active")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("40%: page 4 of 10")
    expect(facts).to_contain_text('{"page":4}')
    shoot(page, artifacts, "task-running")
    page.get_by_test_id("action-cancel").click()
    expect(page.get_by_test_id("task-state")).to_have_text("cancelled")
    expect(page.get_by_test_id("action-cancel")).to_have_count(0)
    expect(page.get_by_test_id("timeline")).to_contain_text("stopped: cancelled while running")
    assert task.status() == TaskState.CANCELLED


def test_a_paused_queue_is_not_taken_from_until_resumed(
    dashboard: str, producer: Conveyor, settings: Settings, new_page: PageFactory,
    start_worker: WorkerFactory, artifacts: Path,
) -> None:  # fmt: skip
    start_worker(make_app(settings), "default,other")
    wait_state(producer.enqueue("note", "first"), TaskState.SUCCEEDED)  # the queue exists
    page = new_page()
    page.goto(f"{dashboard}queues/default")
    page.get_by_test_id("pause-button").click()
    expect(page.get_by_test_id("resume-button")).to_be_visible()
    expect(page.get_by_test_id("queue-paused")).to_be_visible()

    held = producer.enqueue("note", "held")
    # the worker keeps taking from its other queue meanwhile: it is alive and claiming
    wait_state(producer.enqueue("note", "proof", queue="other"), TaskState.SUCCEEDED)
    wait_state(producer.enqueue("note", "proof again", queue="other"), TaskState.SUCCEEDED)
    assert held.status() == TaskState.PENDING
    page.get_by_test_id("queue-state-tab-pending").click()
    expect(page.get_by_test_id(f"task-row-{held.id}")).to_be_visible()
    shoot(page, artifacts, "queue")

    page.get_by_test_id("resume-button").click()
    expect(page.get_by_test_id("pause-button")).to_be_visible()
    wait_state(held, TaskState.SUCCEEDED)
    expect(page.get_by_test_id(f"task-row-{held.id}")).to_have_count(0)


def test_a_queue_page_shows_its_flow_control(
    dashboard: str, producer: Conveyor, new_page: PageFactory
) -> None:
    producer.enqueue_many([producer.message("note", i, queue="limited", concurrency=1,
                                            concurrency_key="crm") for i in range(3)])  # fmt: skip
    broker = producer.sync_broker()
    assert len(broker.run(broker.ops.claim("limited", 10, "w1")).tasks) == 1
    page = new_page()
    page.goto(f"{dashboard}queues/limited")
    expect(page.get_by_test_id("queue-flow")).to_have_text(
        "Flow control: crm: 1 running, 2 waiting for a slot"
    )


def test_the_audit_log_lists_the_operator_actions(
    dashboard: str, producer: Conveyor, settings: Settings, new_page: PageFactory,
    start_worker: WorkerFactory, artifacts: Path,
) -> None:  # fmt: skip
    worker = start_worker(make_app(settings), "default")
    dead = producer.enqueue("explode")
    wait_state(dead, TaskState.DEAD)
    worker.stop()  # so the replayed dead letter stays pending
    scheduled = producer.enqueue("note", "later", delay=3600)

    page = new_page()
    page.goto(f"{dashboard}queues/default")
    page.get_by_test_id("pause-button").click()
    page.get_by_test_id("resume-button").click()
    expect(page.get_by_test_id("pause-button")).to_be_visible()
    page.goto(task_url(dashboard, scheduled.id))
    page.get_by_test_id("action-cancel").click()
    expect(page.get_by_test_id("task-state")).to_have_text("cancelled")
    page.get_by_test_id("nav-dead").click()
    page.get_by_test_id(f"dead-select-{dead.id}").check()
    page.get_by_test_id("dead-retry-selected").click()
    expect(page.get_by_test_id(f"dead-row-{dead.id}")).to_have_count(0)
    assert dead.status() == TaskState.PENDING

    page.get_by_test_id("nav-audit").click()
    rows = page.get_by_test_id("audit-row")
    expect(rows).to_have_count(4)
    actions = [rows.nth(i).get_attribute("data-action") for i in range(4)]
    assert actions == ["dead.retry", "cancel", "resume", "pause"]  # newest first
    expect(rows.nth(0)).to_contain_text(dead.id)
    expect(rows.nth(1)).to_contain_text(scheduled.id)
    for i in (2, 3):
        expect(rows.nth(i)).to_contain_text("default")
    for i in range(4):
        expect(rows.nth(i)).to_contain_text("dashboard")
    shoot(page, artifacts, "audit")


def test_a_read_token_sees_no_action_at_all(
    producer: Conveyor, settings: Settings, new_page: PageFactory, start_worker: WorkerFactory,
    artifacts: Path,
) -> None:  # fmt: skip
    worker = start_worker(make_app(settings), "default")
    dead = producer.enqueue("explode")
    wait_state(dead, TaskState.DEAD)
    worker.stop()
    scheduled = producer.enqueue("note", "later", delay=3600)
    tokens = {READ_TOKEN: Grant(Scope.READ, "reader"), WRITE_TOKEN: Grant(Scope.WRITE, "writer")}
    with serving(settings, ApiSettings(tokens=tokens)) as base:
        reader = new_page()
        reader.goto(f"{base}queues/default")
        expect(reader).to_have_url(re.compile(r"/login\?next="))  # sent to sign in first
        shoot(reader, artifacts, "login")
        reader.get_by_test_id("login-token").fill("not-a-token-at-all-0000")
        reader.get_by_test_id("login-submit").click()
        expect(reader.get_by_test_id("login-error")).to_contain_text("not valid")
        reader.get_by_test_id("login-token").fill(READ_TOKEN)
        reader.get_by_test_id("login-submit").click()
        expect(reader).to_have_url(f"{base}queues/default")  # back where it was going
        expect(reader.get_by_test_id("user-name")).to_contain_text("reader")
        expect(reader.get_by_test_id("user-name")).to_contain_text("read-only")

        pages = {f"{base}queues/default": "queue-state-tab-pending",
                 task_url(base, scheduled.id): "timeline", task_url(base, dead.id): "timeline",
                 f"{base}dead": f"dead-row-{dead.id}", base: "queue-row-default"}  # fmt: skip
        for url, ready in pages.items():
            reader.goto(url)
            expect(reader.get_by_test_id(ready)).to_be_visible()
            assert reader.locator(ACTION_CONTROLS).count() == 0, url

        # the same pages with a write token do show them: the check above can fail
        writer = new_page()
        writer.goto(f"{base}login")
        writer.get_by_test_id("login-token").fill(WRITE_TOKEN)
        writer.get_by_test_id("login-submit").click()
        expect(writer.get_by_test_id("queue-row-default")).to_be_visible()
        for url, ready in pages.items():
            writer.goto(url)
            expect(writer.get_by_test_id(ready)).to_be_visible()
            if url != base:
                expect(writer.locator(ACTION_CONTROLS).first).to_be_visible()
        for each in (reader, writer):
            each.context.close()  # ends the event streams before the server stops


def test_the_banner_shows_while_redis_is_down_and_goes_by_itself(
    redis_server: RedisServer, prefix: str, new_page: PageFactory, tmp_path: Path
) -> None:
    # a Redis of this test alone, stopped and started again; it keeps its data (AOF) over
    # the restart, as a production Redis should
    own = RedisServer(redis_server.binary, data_dir=tmp_path / "redis", appendonly=True).start()
    settings = Settings(redis_url=own.url, prefix=prefix)
    producer = make_app(settings)
    try:
        producer.enqueue("note", "before", queue="steady")
        with serving(settings) as base:
            page = new_page()
            page.goto(base)
            banner = page.get_by_test_id("redis-banner")
            expect(cell(page, "steady", "pending")).to_have_text("1")
            expect(banner).to_be_hidden()
            page.evaluate("window.sameDocument = true")

            own.stop()
            expect(banner).to_be_visible()
            expect(banner).to_contain_text("Redis is unavailable")
            own.start()
            expect(banner).to_be_hidden()
            producer.enqueue("note", "after", queue="steady")
            expect(cell(page, "steady", "pending")).to_have_text("2")
            assert page.evaluate("window.sameDocument") is True  # it recovered without a reload
            page.context.close()  # ends the event stream before the server stops
    finally:
        producer.close()
        own.cleanup()


def test_the_pages_fit_a_phone_and_the_theme_choice_is_kept(
    dashboard: str, producer: Conveyor, settings: Settings, new_page: PageFactory,
    start_worker: WorkerFactory,
) -> None:  # fmt: skip
    start_worker(make_app(settings), "default")
    dead = producer.enqueue("divide", 1, 0)
    wait_state(dead, TaskState.DEAD)
    page = new_page(width=375, height=740)
    pages = {dashboard: "queue-row-default", f"{dashboard}queues/default": "queue-state-tab-dead",
             f"{dashboard}dead": f"dead-row-{dead.id}", task_url(dashboard, dead.id): "timeline",
             f"{dashboard}workers": "nav-workers", f"{dashboard}audit": "nav-audit"}  # fmt: skip
    for url, ready in pages.items():
        page.goto(url)
        expect(page.get_by_test_id(ready).first).to_be_visible()
        # nothing sticks out sideways: a phone scrolls down only
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{url} is {width} px wide"

    background = "getComputedStyle(document.body).backgroundColor"
    before = page.evaluate(background)
    page.get_by_test_id("theme-toggle").click()
    after = page.evaluate(background)
    assert after != before
    page.reload()
    expect(page.get_by_test_id("nav-audit")).to_be_visible()
    assert page.evaluate(background) == after  # the choice outlived the reload


def test_dead_letters_are_retried_by_filter_deleted_by_selection_and_purged(
    dashboard: str, producer: Conveyor, settings: Settings, new_page: PageFactory,
    start_worker: WorkerFactory,
) -> None:  # fmt: skip
    worker = start_worker(make_app(settings), "default")
    divided = [producer.enqueue("divide", i, 0) for i in range(2)]
    exploded = [producer.enqueue("explode") for _ in range(3)]
    for handle in divided + exploded:
        wait_state(handle, TaskState.DEAD)
    worker.stop()  # what is requeued stays pending

    page = new_page()
    page.goto(f"{dashboard}dead")
    expect(page.get_by_test_id("dead-total")).to_have_text("5 matching")
    page.get_by_test_id("dead-filter-task").fill("divide")
    page.get_by_test_id("dead-filter-apply").click()
    expect(page.get_by_test_id("dead-retry-matching")).to_have_text("Retry all 2 matching")
    page.get_by_test_id("dead-retry-matching").click()
    expect(page.get_by_test_id("dead-total")).to_have_text("0 matching")
    assert [h.status() for h in divided] == [TaskState.PENDING] * 2

    page.get_by_test_id("dead-filter-task").fill("")
    page.get_by_test_id("dead-filter-apply").click()
    expect(page.get_by_test_id("dead-total")).to_have_text("3 matching")
    page.get_by_test_id(f"dead-select-{exploded[0].id}").check()
    delete = page.get_by_test_id("dead-delete-selected")
    delete.click()  # arms it: a destructive action takes a second click
    expect(delete).to_contain_text("Click again")
    assert producer.get_record(exploded[0].id) is not None
    delete.click()
    expect(page.get_by_test_id("dead-total")).to_have_text("2 matching")
    assert producer.get_record(exploded[0].id) is None

    page.get_by_test_id("dead-purge").click()
    confirm = page.get_by_test_id("purge-confirm-button")
    expect(confirm).to_be_disabled()
    page.get_by_test_id("purge-confirm-input").fill("purg")
    expect(confirm).to_be_disabled()
    page.get_by_test_id("purge-confirm-input").fill("purge")
    confirm.click()
    expect(page.get_by_test_id("dead-total")).to_have_text("0 matching")
    assert [producer.get_record(h.id) for h in exploded[1:]] == [None, None]

    page.get_by_test_id("nav-audit").click()
    rows = page.get_by_test_id("audit-row")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).get_attribute("data-action") for i in range(3)] == [
        "dead.purge", "dead.delete", "dead.retry",
    ]  # fmt: skip


def test_the_schedules_page_shows_each_schedule_and_its_last_run(
    dashboard: str, producer: Conveyor, settings: Settings, new_page: PageFactory,
    start_worker: WorkerFactory, artifacts: Path,
) -> None:  # fmt: skip
    producer.inspector.schedules.upsert(
        Schedule.build("nightly", "note", cron="30 2 * * *", tz="Europe/Paris", args=["n"])
    )
    producer.inspector.schedules.upsert(Schedule.build("beat", "note", every=1, args=["b"]))
    page = new_page()
    page.goto(dashboard)
    page.get_by_test_id("nav-schedules").click()
    nightly = page.get_by_test_id("schedule-row-nightly")
    expect(nightly).to_contain_text("30 2 * * * (Europe/Paris)")
    expect(nightly).to_contain_text("active")
    beat = page.get_by_test_id("schedule-row-beat")
    expect(beat).to_contain_text("every 1s")
    start_worker(make_app(settings), "default")
    expect(beat.locator("a")).to_have_count(1)  # its last run links to the tick's task
    producer.inspector.schedules.set_paused("nightly", True)
    expect(nightly).to_contain_text("paused")
    shoot(page, artifacts, "schedules")
