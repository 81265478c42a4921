"""The leases a worker holds: claimed tasks not yet acknowledged."""

from __future__ import annotations

from collections import defaultdict

from conveyor.broker.records import ClaimedTask


class Leases:
    """Tasks held by this worker, from claim until Redis confirms their completion.

    A lease outlives its handler: it is kept (and renewed) until the ack is written,
    so a slow ack can never let the task be recovered and run twice.
    """

    def __init__(self) -> None:
        self._held: dict[str, ClaimedTask] = {}

    def __len__(self) -> int:
        return len(self._held)

    def add(self, task: ClaimedTask) -> None:
        """Hold a freshly claimed task."""
        self._held[task.id] = task

    def release(self, task: ClaimedTask) -> None:
        """Forget a task once its completion is written (or its lease is lost)."""
        held = self._held.get(task.id)
        if held is not None and held.token == task.token:
            del self._held[task.id]

    def by_queue(self) -> dict[str, list[tuple[str, int]]]:
        """(id, token) pairs grouped by queue, for one renewal call per queue."""
        groups: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for task in self._held.values():
            groups[task.queue].append((task.id, task.token))
        return groups

    def get(self, task_id: str) -> ClaimedTask | None:
        """The held task with this id, if any."""
        return self._held.get(task_id)
