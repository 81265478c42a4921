"""Which queues a worker serves, and in what order it tries them."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from conveyor.errors import ConfigurationError
from conveyor.names import validate_queue_name
from conveyor.shards import shard_names, shards_of


@dataclass(frozen=True, slots=True)
class QueueSelection:
    """Queues in strict priority order, or weighted (`critical:6,default:3,low:1`).

    Strict: a queue is served only while every queue before it is empty.
    Weighted: each claim tries the queues in a random order drawn by weight, so a queue
    with weight w comes first w/total of the time and none starves.
    A queue split into shards (conveyor/shards.py) takes its place in that order with
    all its shards, tried in a fresh random order for each claim, so none starves.
    """

    #: the queues as listed
    names: tuple[str, ...]
    weights: tuple[int, ...] | None = None
    #: the shards of each listed queue, in the same order (a queue not split: itself)
    shards: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if not self.shards:
            object.__setattr__(self, "shards", tuple((name,) for name in self.names))

    @classmethod
    def parse(
        cls, spec: str | Sequence[str], shards: Mapping[str, int] | None = None
    ) -> QueueSelection:
        """Parse `a,b,c` (strict) or `a:3,b:1` (weighted; a missing weight is 1), with
        each queue split as `shards` says (see Settings.shards)."""
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
        split = tuple(shard_names(name, (shards or {}).get(name, 1)) for name in names)
        served = [queue for group in split for queue in group]
        if len(set(served)) != len(served):
            raise ConfigurationError(f"a queue is listed twice in {spec!r}")
        return cls(tuple(names), tuple(weights) if weighted else None, split)

    @property
    def served(self) -> tuple[str, ...]:
        """Every queue this worker serves: the shards of the listed queues."""
        return tuple(queue for group in self.shards for queue in group)

    def with_leftovers(self, registered: Iterable[str]) -> QueueSelection:
        """This selection and the shards of its queues found among `registered` beyond
        those declared: what producers split more ways, or before a split was reduced,
        put there is served too, so changing a queue's shards strands no task."""
        served, registered = set(self.served), list(registered)
        shards = []
        for name, group in zip(self.names, self.shards, strict=True):
            extra = [q for q in shards_of(name, 1, registered) if q not in served]
            shards.append(group + tuple(extra))
        return QueueSelection(self.names, self.weights, tuple(shards))

    def order(self, rng: random.Random) -> list[str]:
        """The queues to try, first to last, for one claim."""
        groups = list(self.shards)
        if self.weights is not None:
            weights, drawn = list(self.weights), []
            while groups:
                i = rng.choices(range(len(groups)), weights)[0]
                drawn.append(groups.pop(i))
                weights.pop(i)
            groups = drawn
        return [queue for group in groups for queue in rng.sample(group, len(group))]
