"""JSON log lines for log shippers: one valid object per record."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor.logs import JsonFormatter, configure

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through a JsonFormatter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("conveyor.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)
    logger.propagate = True


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    lines = buffer.getvalue().splitlines()
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objects)
    return objects


def test_a_record_is_one_json_object_with_the_standard_fields(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = capture
    before = datetime.now(UTC).replace(microsecond=0)
    logger.warning("task %s failed %d times", "q:1", 3)
    [line] = _lines(buffer)
    assert set(line) == {"time", "level", "logger", "message"}
    assert line["level"] == "WARNING" and line["logger"] == "conveyor.test.json"
    assert line["message"] == "task q:1 failed 3 times"
    stamp = str(line["time"])
    assert TIME.match(stamp), stamp
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before <= when <= datetime.now(UTC)


def test_an_exception_is_included_with_its_traceback(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = capture
    try:
        raise ValueError("broken\ninput")
    except ValueError:
        logger.exception("handler crashed")
    [line] = _lines(buffer)  # a multi-line traceback still makes one line of JSON
    assert line["level"] == "ERROR" and line["message"] == "handler crashed"
    exception = str(line["exception"])
    assert exception.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("broken\\ninput")' in exception
    assert exception.endswith("ValueError: broken\ninput")


def test_extras_are_top_level_fields(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture
    logger.info(
        "claimed",
        extra={"task_id": "q:1", "attempt": 2, "tags": ["a", "b"], "meta": {"x": None}},
    )
    [line] = _lines(buffer)
    assert line["task_id"] == "q:1" and line["attempt"] == 2
    assert line["tags"] == ["a", "b"] and line["meta"] == {"x": None}
    # none of LogRecord's own attributes leak into the object
    assert not {"args", "msg", "levelno", "pathname", "exc_info", "thread"} & set(line)


def test_extras_that_are_not_json_still_give_a_valid_line(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    """A log call must never lose its line because an extra is not JSON-serializable."""
    logger, buffer = capture
    logger.info("odd extras", extra={"path": Path("/tmp/x"), "ids": {1}, "raw": b"\xff"})
    lines = _lines(buffer)
    assert len(lines) == 1, "the log record was lost"
    [line] = lines
    assert line["message"] == "odd extras"
    assert {"path", "ids", "raw"} <= set(line)


def test_each_record_is_its_own_line(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = capture
    for n in range(3):
        logger.debug("line %d\nwith a newline", n)
    lines = _lines(buffer)
    assert [line["message"] for line in lines] == [f"line {n}\nwith a newline" for n in range(3)]


@pytest.mark.parametrize("as_json", [True, False])
def test_configure_routes_logs_to_stderr(as_json: bool, capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure("debug", json=as_json)
        assert root.level == logging.DEBUG
        [handler] = root.handlers
        assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr
        assert isinstance(handler.formatter, JsonFormatter) is as_json
        logging.getLogger("conveyor.worker").info("hello %s", "there")
        err = capsys.readouterr().err.strip()
        if as_json:
            assert json.loads(err)["message"] == "hello there"
        else:
            assert err.endswith("INFO    conveyor.worker: hello there")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


@pytest.fixture
def conveyor_level() -> Iterator[logging.Logger]:
    """Conveyor's logger; its level, and the root logger's setup, restored after the test."""
    logger, root = logging.getLogger("conveyor"), logging.getLogger()
    saved = (logger.level, root.level, root.handlers[:])
    yield logger
    logger.setLevel(saved[0])
    root.setLevel(saved[1])
    root.handlers[:] = saved[2]


def test_the_log_level_setting_sets_conveyors_loggers(conveyor_level: logging.Logger) -> None:
    from conveyor import Conveyor

    Conveyor(redis_url="redis://127.0.0.1:1/0", log_level="debug")
    assert conveyor_level.level == logging.DEBUG
    Conveyor(redis_url="redis://127.0.0.1:1/0", log_level="WARNING")
    assert not logging.getLogger("conveyor.worker").isEnabledFor(logging.INFO)


def test_the_cli_takes_its_log_settings_from_the_environment(
    conveyor_level: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from conveyor.cli import cli

    monkeypatch.setenv("CONVEYOR_LOG_JSON", "yes")
    monkeypatch.setenv("CONVEYOR_LOG_LEVEL", "ERROR")
    result = CliRunner().invoke(cli, ["queues", "--help"])
    assert result.exit_code == 0, result.output
    root = logging.getLogger()
    assert root.level == logging.ERROR
    assert isinstance(root.handlers[0].formatter, JsonFormatter)
