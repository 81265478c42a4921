"""A schemathesis run over the app's `/openapi.json`: no 5xx, and every answer matches the
schema (status, content type, headers, body), for every operation.

Schemathesis calls the ASGI app synchronously from its own event-loop thread, and runs the
app's lifespan there before the first request (`schemathesis.python.asgi`), so the Redis
clients the lifespan creates live on the loop that serves the requests. Its pytest plugin
ends the lifespan when the test ends, while the `settings` fixture's server is still up.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conveyor.api import create_app
from conveyor.api.config import ApiSettings
from conveyor.settings import Settings

#: Examples per operation and phase: enough to try every field, small enough for CI.
EXAMPLES = 25
#: No 5xx; status, content type, headers and body as the schema documents them.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_schema(settings: Settings) -> schemathesis.BaseSchema:
    """The schema the app serves at /openapi.json, loaded over ASGI from the app itself."""
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings, ApiSettings()))


# `/v1/events` streams until the client leaves or its `duration` (up to an hour) passes:
# a generated request would hold the run that long. tests/api/test_events.py checks it.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/v1/events")


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
)
def test_no_server_error_and_every_answer_matches_the_schema(case: schemathesis.Case[Any]) -> None:
    case.body = _not_durable(case.body)
    case.call_and_validate(checks=CHECKS)


def _not_durable(body: Any) -> Any:
    """`body` with every `"durable": true` made false: a durable enqueue waits for a
    replica, which the test server has not, so its 503 not_replicated is the right answer
    (tests/e2e/test_durability.py proves it), not a server error."""
    if isinstance(body, dict):
        return {
            k: (False if k == "durable" and v is True else _not_durable(v)) for k, v in body.items()
        }
    if isinstance(body, list):
        return [_not_durable(item) for item in body]
    return body
