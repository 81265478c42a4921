"""`conveyor dlq show` prints the retry budget that applied, and where it came from."""

from __future__ import annotations

import json
from typing import Any

from conveyor import Conveyor
from tests.cli.conftest import Invoke, flaky_dead_letter


def shown(invoke: Invoke, *args: str) -> dict[str, Any]:
    result = invoke("dlq", "show", *args)
    assert result.exit_code == 0, result.output
    record: dict[str, Any] = json.loads(result.stdout)
    return record


def test_without_the_app_it_is_the_settings_default(
    invoke: Invoke, retried_dead_letter: str
) -> None:
    record = shown(invoke, retried_dead_letter)
    assert (record["max_retries"], record["max_retries_from"]) == (3, "default")
    # the record itself: two attempts, as the decorator's budget of 1 allowed
    assert record["attempts"] == 2


def test_with_the_app_it_is_the_decorators(invoke: Invoke, retried_dead_letter: str) -> None:
    record = shown(invoke, retried_dead_letter, "--app", "tests.cli.flaky_tasks:app")
    assert (record["max_retries"], record["max_retries_from"]) == (1, "task")
    assert record["attempts"] == record["max_retries"] + 1


def test_a_task_the_app_does_not_know_gets_the_apps_default(
    invoke: Invoke, retried_dead_letter: str
) -> None:
    record = shown(invoke, retried_dead_letter, "--app", "tests.support.tasks:app")
    assert (record["max_retries"], record["max_retries_from"]) == (3, "default")


def test_a_budget_set_at_enqueue_wins(invoke: Invoke, app: Conveyor) -> None:
    task_id = flaky_dead_letter(app, max_retries=0)
    for args in ([], ["--app", "tests.cli.flaky_tasks:app"]):
        record = shown(invoke, task_id, *args)
        assert (record["max_retries"], record["max_retries_from"]) == (0, "enqueue")
        assert record["attempts"] == 1


def test_an_app_that_cannot_be_imported_fails_clearly(
    invoke: Invoke, retried_dead_letter: str
) -> None:
    result = invoke("dlq", "show", retried_dead_letter, "--app", "no_such_module:app")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot import 'no_such_module'")
