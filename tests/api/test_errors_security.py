"""Errors of one shape and the right status; body limits; bearer tokens; Redis outages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import redis

from conveyor.api.config import ApiSettings, Grant, Scope, digest_name, parse_tokens
from conveyor.errors import ConfigurationError
from conveyor.ids import new_ulid
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer
from tests.api.conftest import ClientFactory, api_client
from tests.api.helpers import assert_error, enqueue, task_ids
from tests.support.keyspace import dump

# -- the error shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/task", b"{not json", 400, "invalid_json"),
        ("POST", "/v1/tasks", b'{"name": "x",}', 400, "invalid_json"),
        ("POST", "/v1/tasks/batch", b"[", 400, "invalid_json"),
        ("POST", "/v1/dead/retry", b"\xff\xfe", 400, "invalid_json"),
        ("POST", "/task", b'{"payload": 1}', 422, "invalid_request"),
        ("POST", "/task", b'["x"]', 422, "invalid_request"),
        ("POST", "/v1/tasks", b'{"name": "x", "priority": 101}', 422, "invalid_request"),
        ("POST", "/v1/tasks", b'{"name": "x", "delay": -1}', 422, "invalid_request"),
        (
            "POST",
            "/v1/tasks",
            b'{"name": "x", "payload": 18446744073709551616}',
            422,
            "invalid_request",
        ),
        ("GET", f"/v1/tasks/default:{new_ulid()}", None, 404, "not_found"),
        ("GET", "/no/such/route", None, 404, "not_found"),
        ("GET", "/task", None, 405, "method_not_allowed"),
        ("PUT", "/v1/queues", None, 405, "method_not_allowed"),
    ],
)
async def test_every_error_has_one_shape(
    client: httpx.AsyncClient,
    r: redis.Redis,
    prefix: str,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: str,
) -> None:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    response = await client.request(method, path, content=body, headers=headers)
    assert_error(response, status, code)
    assert dump(r, prefix) == {}


async def test_invalid_json_is_400_and_stores_nothing(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    for path in ("/task", "/v1/tasks"):
        response = await client.post(
            path, content=b'{"type": "x", "payload": ', headers={"Content-Type": "application/json"}
        )
        error = assert_error(response, 400, "invalid_json")
        assert "JSON" in error["message"]
    assert dump(r, prefix) == {}


JSON = {"Content-Type": "application/json"}
#: Every route that takes a body, with a valid one.
BODIES = {
    "/task": b'{"type": "x", "payload": 1}',
    "/v1/tasks": b'{"name": "x"}',
    "/v1/tasks/batch": b'{"tasks": [{"name": "x"}]}',
    "/v1/dead/retry": b"{}",
}


async def test_every_body_route_reads_content_types_by_one_rule(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    """A body without a JSON type is 415 with the header to send (curl -d sends a form),
    malformed JSON is 400: the same on every route."""
    for path, body in BODIES.items():
        for declared in ("application/x-www-form-urlencoded", "text/plain", None):
            headers = {"Content-Type": declared} if declared else {}
            refused = await client.post(path, content=body, headers=headers)
            error = assert_error(refused, 415, "unsupported_media_type")
            assert "Content-Type: application/json" in error["message"], error
        bad = await client.post(path, content=b'{"name": ', headers=JSON)
        assert_error(bad, 400, "invalid_json")
    assert dump(r, prefix) == {}
    for path, body in BODIES.items():
        for declared in ("application/json; charset=utf-8", "application/merge-patch+json"):
            read = await client.post(path, content=body, headers={"Content-Type": declared})
            assert read.status_code in (200, 202), (path, declared, read.text)


async def test_numbers_json_cannot_carry_are_refused_not_nulled(
    client: httpx.AsyncClient, r: redis.Redis, prefix: str
) -> None:
    """NaN and Infinity are not JSON (RFC 8259), and 1e400 overflows a double: storing
    them as null would hand the handler None instead of what the producer sent."""
    answers = {}
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b'{"a": [1, -1e999]}'):
        for path, field in (("/task", b"type"), ("/v1/tasks", b"name")):
            body = b'{"' + field + b'": "x", "payload": ' + literal + b"}"
            response = await client.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )
            answers[f"{path} {literal.decode()}"] = response.status_code
            if response.status_code >= 400:
                assert_error(response, response.status_code, response.json()["error"]["code"])
    assert {k: v for k, v in answers.items() if v not in {400, 422}} == {}
    assert dump(r, prefix) == {}


# -- body limits -------------------------------------------------------------------------

LIMIT = 1000


def body_of(size: int) -> bytes:
    """A valid POST /task body of exactly `size` bytes."""
    frame = orjson.dumps({"type": "big", "payload": ""})
    body = orjson.dumps({"type": "big", "payload": "x" * (size - len(frame))})
    assert len(body) == size
    return body


async def chunks(body: bytes, size: int = 100) -> AsyncIterator[bytes]:
    """The body in pieces, sent chunked: no Content-Length tells the app its size."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_a_body_over_the_limit_is_413_and_stores_nothing(
    make_client: ClientFactory, r: redis.Redis, prefix: str
) -> None:
    headers = {"Content-Type": "application/json"}
    async with make_client(ApiSettings(max_body_bytes=LIMIT)) as client:
        declared = await client.post("/task", content=body_of(LIMIT + 1), headers=headers)
        assert declared.request.headers["Content-Length"] == str(LIMIT + 1)
        error = assert_error(declared, 413, "payload_too_large")
        assert str(LIMIT) in error["message"]
        streamed = await client.post("/task", content=chunks(body_of(5 * LIMIT)), headers=headers)
        assert "Content-Length" not in streamed.request.headers
        assert streamed.request.headers["Transfer-Encoding"] == "chunked"
        assert_error(streamed, 413, "payload_too_large")
        batch = {"tasks": [{"name": "t", "payload": "x" * 100} for _ in range(10)]}
        too_many = await client.post("/v1/tasks/batch", json=batch)
        assert_error(too_many, 413, "payload_too_large")
        assert dump(r, prefix) == {}

        # at the limit, whole or in pieces, the body is read back intact
        exact = await client.post("/task", content=body_of(LIMIT), headers=headers)
        pieces = await client.post("/task", content=chunks(body_of(LIMIT), 7), headers=headers)
        for response in (exact, pieces):
            assert response.status_code == 202, response.text
            stored = await client.get(f"/v1/tasks/{response.json()['task_id']}")
            assert stored.json()["args"] == [orjson.loads(body_of(LIMIT))["payload"]]
    assert len(task_ids(r, prefix)) == 2


# -- tokens ------------------------------------------------------------------------------

READ = "r" * 20
WRITE = "w" * 20


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_tokens_and_scopes(make_client: ClientFactory, r: redis.Redis, prefix: str) -> None:
    tokens = parse_tokens(f"{READ}:read,writer:{WRITE}:write")
    assert tokens == {
        READ: Grant(Scope.READ, digest_name(READ)),
        WRITE: Grant(Scope.WRITE, "writer"),
    }
    async with make_client(ApiSettings(tokens=tokens)) as client:
        anonymous = [
            {},
            bearer("x" * 20),
            bearer(READ + "x"),
            bearer(READ[:-1]),
            {"Authorization": READ},
            {"Authorization": f"Basic {READ}"},
        ]
        for headers in anonymous:
            for method, path in (("GET", "/stats"), ("GET", "/v1/queues"), ("POST", "/task")):
                response = await client.request(
                    method, path, headers=headers, json={"type": "x"} if method == "POST" else None
                )
                assert_error(response, 401, "unauthorized")
                assert response.headers["WWW-Authenticate"] == "Bearer"

        for path in ("/stats", "/v1/queues", "/v1/dead", "/v1/workers"):
            assert (await client.get(path, headers=bearer(READ))).status_code == 200
        writes = [
            ("POST", "/task", {"type": "x"}),
            ("POST", "/v1/tasks", {"name": "x"}),
            ("POST", "/v1/tasks/batch", {"tasks": [{"name": "x"}]}),
            ("POST", "/v1/queues/default/pause", None),
            ("POST", "/v1/dead/retry", {}),
            ("DELETE", "/v1/dead", None),
        ]
        for method, path, body in writes:
            response = await client.request(method, path, json=body, headers=bearer(READ))
            assert_error(response, 403, "forbidden")
        assert dump(r, prefix) == {}

        task_id = (await client.post("/task", json={"type": "x"}, headers=bearer(WRITE))).json()[
            "task_id"
        ]
        as_reader = await client.get(f"/v1/tasks/{task_id}", headers=bearer(READ))
        assert (as_reader.status_code, as_reader.json()["state"]) == (200, "pending")
        assert_error(
            await client.delete(f"/v1/tasks/{task_id}", headers=bearer(READ)), 403, "forbidden"
        )
        for path in ("/stats", "/v1/queues", "/v1/queues/default", f"/v1/tasks/{task_id}"):
            assert (await client.get(path, headers=bearer(WRITE))).status_code == 200
        created = await client.post("/v1/tasks", json={"name": "y"}, headers=bearer(WRITE))
        assert created.status_code == 202
        cancelled = await client.delete(f"/v1/tasks/{task_id}", headers=bearer(WRITE))
        assert (cancelled.status_code, cancelled.json()["state"]) == (200, "cancelled")
        paused = await client.post("/v1/queues/default/pause", headers=bearer(WRITE))
        assert (paused.status_code, paused.json()["paused"]) == (200, True)
        assert (await client.delete("/v1/dead", headers=bearer(WRITE))).status_code == 200

        # health and readiness stay open for probes
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json() == {"status": "ready"}
    assert task_ids(r, prefix) == {task_id, created.json()["id"]}


def test_a_token_without_a_name_is_named_by_a_digest_that_does_not_show_it() -> None:
    [grant] = parse_tokens(READ).values()
    assert grant.name.startswith("token-") and READ not in grant.name
    assert grant.name == digest_name(READ) != digest_name(WRITE)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("short:read", "at least 16"),
        ("x" * 15, "at least 16"),
        (f"{READ}:admin", "unknown token scope"),
        (f"{READ}:READ", "unknown token scope"),
        (f"{WRITE}:write,tiny:read", "at least 16"),
        (f"a:b:{READ}:read", r"\[name:\]token\[:scope\]"),
        (f"bad name:{READ}:read", "invalid token name"),
    ],
)
def test_bad_token_specs_are_refused(spec: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        parse_tokens(spec)
    with pytest.raises(ConfigurationError, match=problem):
        ApiSettings.from_env({"CONVEYOR_API_TOKENS": spec})


def test_api_settings_from_the_environment() -> None:
    env = {
        "CONVEYOR_API_TOKENS": f" {READ}:read , {WRITE} ,",
        "CONVEYOR_API_ALLOWED_TASKS": "a, b.c",
        "CONVEYOR_API_MAX_BODY": "2048",
        "CONVEYOR_API_MAX_BATCH": "5",
    }
    assert ApiSettings.from_env(env) == ApiSettings(
        tokens={
            READ: Grant(Scope.READ, digest_name(READ)),
            WRITE: Grant(Scope.WRITE, digest_name(WRITE)),
        },
        allowed_tasks=frozenset({"a", "b.c"}),
        max_body_bytes=2048,
        max_batch=5,
    )
    assert ApiSettings.from_env({}) == ApiSettings()
    with pytest.raises(ConfigurationError, match="invalid API setting"):
        ApiSettings.from_env({"CONVEYOR_API_MAX_BODY": "lots"})
    with pytest.raises(ConfigurationError, match="invalid task name"):
        ApiSettings.from_env({"CONVEYOR_API_ALLOWED_TASKS": "ok,no:colons"})


# -- Redis outages -----------------------------------------------------------------------


async def test_redis_down_is_503_and_nothing_is_stored(
    redis_server: RedisServer, settings: Settings
) -> None:
    """On a private, persistent server of our own: the session's server is never stopped."""
    private = RedisServer(redis_server.binary, appendonly=True).start()
    check = redis.Redis.from_url(private.url)
    try:
        async with api_client(settings.replace(redis_url=private.url)) as client:
            before = (await client.post("/task", json={"type": "x", "payload": 1})).json()
            assert (await client.get("/readyz")).status_code == 200

            private.stop()
            answers = [
                await client.post("/task", json={"type": "x", "payload": 2}),
                await client.post("/v1/tasks", json={"name": "x", "payload": 3}),
                await client.post("/v1/tasks/batch", json={"tasks": [{"name": "x"}]}),
                await client.get("/stats"),
                await client.get(f"/v1/tasks/{before['task_id']}"),
                await client.get("/v1/queues"),
            ]
            for answer in answers:
                error = assert_error(answer, 503, "redis_unavailable")
                assert "may or may not have been stored" in error["message"]
                assert answer.headers["Retry-After"] == "5"
            assert_error(await client.get("/readyz"), 503, "redis_unavailable")
            assert (await client.get("/healthz")).json() == {"status": "ok"}

            private.start()  # same port, same data directory: what was stored is back
            assert task_ids(check, settings.prefix) == {before["task_id"]}
            assert (await client.get("/readyz")).json() == {"status": "ready"}
            after = await enqueue(client, "x", payload=4)
            assert task_ids(check, settings.prefix) == {before["task_id"], after}
    finally:
        check.close()
        private.cleanup()
