"""Bearer tokens with a scope: `read` for GET, `write` for everything."""

from __future__ import annotations

import hmac

from fastapi import Request

from conveyor.api.config import Grant, Scope
from conveyor.api.errors import ApiError
from conveyor.broker.audit import Actor

_BEARER = "bearer "
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Unauthorized(ApiError):
    """401, with the challenge header clients expect."""

    def __init__(self, message: str) -> None:
        super().__init__(401, "unauthorized", message, headers=_CHALLENGE)


def grant_of(tokens: dict[str, Grant], presented: str) -> Grant | None:
    """What `presented` grants, comparing against every token in constant time."""
    found: Grant | None = None
    for token, grant in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = grant
    return found


def bearer(request: Request) -> str | None:
    """The bearer token a request presents, if any."""
    header = request.headers.get("authorization", "")
    return header[len(_BEARER) :].strip() if header.lower().startswith(_BEARER) else None


def check(tokens: dict[str, Grant], presented: str | None, needed: Scope) -> Grant | None:
    """The grant of `presented`; 401 without a valid token, 403 if its scope is too
    narrow. No tokens configured: open, and None."""
    if not tokens:
        return None
    if presented is None:
        raise Unauthorized("a bearer token is required")
    grant = grant_of(tokens, presented)
    if grant is None:
        raise Unauthorized("the bearer token is not valid")
    if needed is Scope.WRITE and grant.scope is not Scope.WRITE:
        raise ApiError(403, "forbidden", "this token may only read")
    return grant


def authorize(request: Request, tokens: dict[str, Grant], needed: Scope) -> Grant | None:
    """`check` of the request's bearer token."""
    return check(tokens, bearer(request), needed)


def actor_of(request: Request, grant: Grant | None, via: str) -> Actor:
    """Who the audit log says acted: the token's name (anonymous where tokens are off)."""
    address = request.client.host if request.client else None
    return Actor(grant.name if grant else "anonymous", via, address)
