"""Bearer tokens with a scope: `read` for GET, `write` for everything."""

from __future__ import annotations

import hmac

from fastapi import Request

from conveyor.api.config import Scope
from conveyor.api.errors import ApiError

_BEARER = "bearer "
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Unauthorized(ApiError):
    """401, with the challenge header clients expect."""

    def __init__(self, message: str) -> None:
        super().__init__(401, "unauthorized", message, headers=_CHALLENGE)


def scope_of(tokens: dict[str, Scope], presented: str) -> Scope | None:
    """The scope of `presented`, comparing against every token in constant time."""
    found: Scope | None = None
    for token, scope in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = scope
    return found


def authorize(request: Request, tokens: dict[str, Scope], needed: Scope) -> None:
    """Raise 401 without a valid token, 403 if its scope is too narrow; no tokens: open."""
    if not tokens:
        return
    header = request.headers.get("authorization", "")
    if not header.lower().startswith(_BEARER):
        raise Unauthorized("a bearer token is required")
    scope = scope_of(tokens, header[len(_BEARER) :].strip())
    if scope is None:
        raise Unauthorized("the bearer token is not valid")
    if needed is Scope.WRITE and scope is not Scope.WRITE:
        raise ApiError(403, "forbidden", "this token may only read")
