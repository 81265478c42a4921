"""names.py: the rules for queue names, task names and key prefixes."""

from __future__ import annotations

import pytest

from conveyor.errors import InvalidNameError
from conveyor.names import validate_prefix, validate_queue_name, validate_task_name
from tests.support.names import BAD_NAMES, BAD_PREFIXES


@pytest.mark.parametrize("name", [*BAD_NAMES, "x" * 65], ids=repr)
def test_invalid_queue_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid queue name"):
        validate_queue_name(name)


@pytest.mark.parametrize("name", ["emails", "x" * 64, "a.b-c_D9", "7"])
def test_valid_queue_names_are_accepted(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize("name", [*BAD_NAMES, "x" * 129], ids=repr)
def test_invalid_task_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid task name"):
        validate_task_name(name)


def test_the_longest_task_name_is_accepted() -> None:
    assert validate_task_name("t" * 128) == "t" * 128


@pytest.mark.parametrize("prefix", BAD_PREFIXES, ids=repr)
def test_invalid_prefixes_are_rejected(prefix: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid key prefix"):
        validate_prefix(prefix)


@pytest.mark.parametrize("prefix", ["conveyor", "p" * 32, "a.b-c_D9"])
def test_valid_prefixes_are_accepted(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("name", [None, 7, b"emails"], ids=repr)
def test_a_name_that_is_not_a_string_is_rejected(name: object) -> None:
    for validate in (validate_queue_name, validate_task_name, validate_prefix):
        with pytest.raises(InvalidNameError):
            validate(name)  # type: ignore[arg-type]
