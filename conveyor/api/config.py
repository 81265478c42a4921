"""Settings of the HTTP API, from `CONVEYOR_API_*` variables."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from enum import StrEnum

from conveyor.errors import ConfigurationError
from conveyor.names import validate_task_name

#: Largest request body accepted by default (1 MiB).
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_MAX_BATCH = 1000


class Scope(StrEnum):
    """What a token may do: `read` (GET) or `write` (everything)."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token grants, and the name the audit log knows its holder by."""

    scope: Scope
    name: str


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Tokens (none: the API is open), an optional allow-list of task names, and limits."""

    tokens: dict[str, Grant] = field(default_factory=dict)
    allowed_tasks: frozenset[str] | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_batch: int = DEFAULT_MAX_BATCH

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ApiSettings:
        """CONVEYOR_API_TOKENS="alice:secret1:write,secret2:read", CONVEYOR_API_ALLOWED_TASKS="a,b",
        CONVEYOR_API_MAX_BODY (bytes), CONVEYOR_API_MAX_BATCH (tasks)."""
        env = os.environ if environ is None else environ
        allowed = env.get("CONVEYOR_API_ALLOWED_TASKS", "")
        names = frozenset(validate_task_name(n.strip()) for n in allowed.split(",") if n.strip())
        try:
            return cls(
                tokens=parse_tokens(env.get("CONVEYOR_API_TOKENS", "")),
                allowed_tasks=names or None,
                max_body_bytes=int(env.get("CONVEYOR_API_MAX_BODY", DEFAULT_MAX_BODY)),
                max_batch=int(env.get("CONVEYOR_API_MAX_BATCH", DEFAULT_MAX_BATCH)),
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid API setting: {exc}") from None


def parse_tokens(spec: str) -> dict[str, Grant]:
    """`[name:]token[:scope]` items separated by commas. A token without a scope may write;
    one without a name is named after a digest of it (`token-1a2b3c4d`), so the audit log
    never shows a secret."""
    tokens: dict[str, Grant] = {}
    for item in (i.strip() for i in spec.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) > 3:
            raise ConfigurationError("an API token item is [name:]token[:scope]")
        name = parts.pop(0) if len(parts) == 3 else ""
        token, scope = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], "write")
        if len(token) < 16:
            raise ConfigurationError("API tokens must be at least 16 characters long")
        if name and not TOKEN_NAME.fullmatch(name):
            raise ConfigurationError(f"invalid token name {name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        try:
            grant = Grant(Scope(scope or "write"), name or digest_name(token))
        except ValueError:
            raise ConfigurationError(f"unknown token scope {scope!r}: use read or write") from None
        tokens[token] = grant
    return tokens


#: Names of token holders.
TOKEN_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def digest_name(token: str) -> str:
    """The name of a token given without one: a digest that does not reveal it."""
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:8]
