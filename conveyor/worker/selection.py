"""Which queues a worker serves, and in what order it tries them."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.errors import ConfigurationError
from conveyor.names import validate_queue_name


@dataclass(frozen=True, slots=True)
class QueueSelection:
    """Queues in strict priority order, or weighted (`critical:6,default:3,low:1`).

    Strict: a queue is served only while every queue before it is empty.
    Weighted: each claim tries the queues in a random order drawn by weight, so a queue
    with weight w comes first w/total of the time and none starves.
    """

    names: tuple[str, ...]
    weights: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, spec: str | Sequence[str]) -> QueueSelection:
        """Parse `a,b,c` (strict) or `a:3,b:1` (weighted; a missing weight is 1)."""
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        names, weights, weighted = [], [], False
        for item in (i.strip() for i in items):
            if not item:
                continue
            name, sep, weight = item.partition(":")
            weighted |= bool(sep)
            try:
                value = int(weight) if sep else 1
            except ValueError:
                raise ConfigurationError(f"queue weight must be an integer: {item!r}") from None
            if value < 1:
                raise ConfigurationError(f"queue weight must be >= 1: {item!r}")
            names.append(validate_queue_name(name))
            weights.append(value)
        if not names:
            raise ConfigurationError("a worker needs at least one queue")
        if len(set(names)) != len(names):
            raise ConfigurationError(f"a queue is listed twice in {spec!r}")
        return cls(tuple(names), tuple(weights) if weighted else None)

    def order(self, rng: random.Random) -> list[str]:
        """The queues to try, first to last, for one claim."""
        if self.weights is None:
            return list(self.names)
        names, weights, out = list(self.names), list(self.weights), []
        while names:
            i = rng.choices(range(len(names)), weights)[0]
            out.append(names.pop(i))
            weights.pop(i)
        return out
