"""Settings of the HTTP API, from `CONVEYOR_API_*` variables."""

from __future__ import annotations

import os
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
class ApiSettings:
    """Tokens (none: the API is open), an optional allow-list of task names, and limits."""

    tokens: dict[str, Scope] = field(default_factory=dict)
    allowed_tasks: frozenset[str] | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_batch: int = DEFAULT_MAX_BATCH

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ApiSettings:
        """CONVEYOR_API_TOKENS="secret1:write,secret2:read", CONVEYOR_API_ALLOWED_TASKS="a,b",
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


def parse_tokens(spec: str) -> dict[str, Scope]:
    """`token:scope` pairs separated by commas; a token without a scope may write."""
    tokens: dict[str, Scope] = {}
    for item in (i.strip() for i in spec.split(",")):
        if not item:
            continue
        token, _, scope = item.rpartition(":") if ":" in item else (item, "", "write")
        if len(token) < 16:
            raise ConfigurationError("API tokens must be at least 16 characters long")
        try:
            tokens[token] = Scope(scope or "write")
        except ValueError:
            raise ConfigurationError(f"unknown token scope {scope!r}: use read or write") from None
    return tokens
