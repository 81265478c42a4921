"""Who is looking: the API's tokens, presented as a bearer header or kept after login in
an HttpOnly, SameSite=Strict cookie. `read` sees; `write` acts, unless the dashboard runs
read-only. Without tokens the dashboard is open (and the CLI binds it to 127.0.0.1)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from conveyor.api.config import Grant, Scope
from conveyor.api.errors import ApiError
from conveyor.api.security import actor_of, bearer, check, grant_of
from conveyor.broker.audit import Actor

#: The cookie holding the token after login.
COOKIE = "conveyor_dashboard"
#: Seconds a login lasts.
SESSION_SECONDS = 12 * 3600
#: Writes must be JSON: a cross-site form cannot send it without a CORS preflight, which
#: this app never grants. With the SameSite=Strict cookie, that is the CSRF guard.
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Session:
    """The viewer: their token's name and scope (None when tokens are off), and whether
    the page may offer actions."""

    auth: bool
    user: str | None
    scope: Scope | None
    can_act: bool

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {"auth": self.auth, "user": self.user, "scope": self.scope, "can_act": self.can_act}


class Guard:
    """Checks every request against the tokens and the read-only switch."""

    def __init__(self, tokens: dict[str, Grant], read_only: bool) -> None:
        self.tokens = tokens
        self.read_only = read_only

    def presented(self, request: Request) -> str | None:
        """The token a request carries: its bearer header, else the login cookie."""
        return bearer(request) or request.cookies.get(COOKIE)

    def session(self, request: Request) -> Session:
        """The viewer; 401 when tokens are set and none valid is presented."""
        grant = check(self.tokens, self.presented(request), Scope.READ)
        if grant is None:
            return Session(False, None, None, not self.read_only)
        can_act = grant.scope is Scope.WRITE and not self.read_only
        return Session(True, grant.name, grant.scope, can_act)

    def peek(self, request: Request) -> Session:
        """The viewer, or a signed-out one (never raises): what the page asks first."""
        try:
            return self.session(request)
        except ApiError:
            return Session(True, None, None, False)

    def actor(self, request: Request) -> Actor:
        """The operator of a write: 401/403 unless allowed to act, 415 unless JSON."""
        grant = check(self.tokens, self.presented(request), Scope.WRITE)
        if self.read_only:
            raise ApiError(403, "forbidden", "the dashboard is read-only")
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != JSON:
            raise ApiError(415, "unsupported_media_type", "actions must be sent as JSON")
        return actor_of(request, grant, "dashboard")

    def login(self, token: str) -> Grant:
        """The grant of a token typed in the login form; 401 if it is not one."""
        grant = grant_of(self.tokens, token)
        if grant is None:
            raise ApiError(401, "unauthorized", "this token is not valid")
        return grant
