"""`conveyor pause` and `resume` refuse a queue nothing was enqueued to, unless --create."""

from __future__ import annotations

import pytest
import redis

from conveyor.broker.keys import GlobalKeys
from tests.cli.conftest import Invoke
from tests.support.keyspace import dump


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_an_unknown_queue_is_refused_and_not_listed(
    invoke: Invoke, r: redis.Redis, prefix: str, command: str
) -> None:
    result = invoke(command, "ghostq")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: unknown queue 'ghostq': nothing was ever enqueued to it "
        f"(check the name, or pass --create to {command} it anyway)\n"
    )
    assert result.stdout == ""
    assert dump(r, prefix) == {}
    assert invoke("queues").stdout == "no queues yet\n"


def test_create_pauses_a_queue_before_its_first_task(
    invoke: Invoke, r: redis.Redis, prefix: str
) -> None:
    result = invoke("pause", "ghostq", "--create")
    assert (result.exit_code, result.stdout) == (0, "paused ghostq\n"), result.output
    assert r.smembers(GlobalKeys(prefix).queues) == {b"ghostq"}
    assert r.exists(GlobalKeys(prefix).queue("ghostq").paused) == 1
    # known from now on
    assert invoke("resume", "ghostq").exit_code == 0
    assert r.exists(GlobalKeys(prefix).queue("ghostq").paused) == 0


def test_a_known_queue_needs_no_create(invoke: Invoke, r: redis.Redis, prefix: str) -> None:
    assert invoke("enqueue", "job", "--queue", "emails").exit_code == 0
    assert invoke("pause", "emails").exit_code == 0
    assert r.exists(GlobalKeys(prefix).queue("emails").paused) == 1


def test_an_invalid_name_is_still_reported_as_such(invoke: Invoke) -> None:
    result = invoke("pause", "{bad}", "--create")
    assert result.exit_code == 1
    assert "invalid queue name" in result.stderr
