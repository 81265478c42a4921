"""W3C `traceparent` checking: what the REST API keeps and what it ignores."""

from __future__ import annotations

import pytest

from conveyor.traceparent import MAX_LENGTH, valid_traceparent

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_valid_version_00_value_is_kept() -> None:
    assert valid_traceparent(VALID) == VALID
    assert valid_traceparent(f"  {VALID} ") == VALID  # optional whitespace around a header


def test_a_later_version_keeps_its_four_fields() -> None:
    later = "cc" + VALID[2:]
    assert valid_traceparent(later) == later
    assert valid_traceparent(later + "-what-comes-next") == later
    assert valid_traceparent(later + "x") is None  # no dash after the fields


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        VALID.upper(),  # hex must be lowercase
        VALID + "-00",  # version 00 has exactly four fields
        "ff" + VALID[2:],  # version ff is forbidden
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",  # all-zero parent id
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",  # parent id too short
        "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
        "cc" + VALID[2:] + "-" + "x" * MAX_LENGTH,  # too long to store
    ],
)
def test_an_invalid_value_is_ignored(value: str | None) -> None:
    assert valid_traceparent(value) is None
