"""Producers that enqueue a planned list of tasks at a steady pace, through the library or
the HTTP API, and log each enqueue as acknowledged, failed or unknown (timed out)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from conveyor import BrokerUnavailableError, Conveyor

#: Longest an HTTP enqueue may take before its outcome is "unknown".
HTTP_TIMEOUT = 5.0

ACK, FAILED, UNKNOWN = "acknowledged", "failed", "unknown"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One planned task: its unique label (first argument), its task name, the rest."""

    label: str
    name: str
    args: tuple[Any, ...] = ()

    @property
    def kind(self) -> str:
        """The task name: what the invariants expect of it depends on it."""
        return self.name


@dataclass(frozen=True, slots=True)
class Enqueue:
    """The outcome of one enqueue call."""

    spec: TaskSpec
    source: str  # "library" or "api"
    outcome: str  # ACK, FAILED or UNKNOWN
    task_id: str | None
    detail: str
    sent: float  # time.monotonic()
    answered: float


class Producer(threading.Thread):
    """Enqueues `specs` spread evenly over `window` seconds, one call each."""

    source = "base"

    def __init__(self, specs: list[TaskSpec], window: float) -> None:
        super().__init__(name=f"chaos-producer-{self.source}", daemon=True)
        self.specs = specs
        self.window = window
        self.log: list[Enqueue] = []
        self.anomalies: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        began = time.monotonic()
        step = self.window / max(1, len(self.specs))
        for i, spec in enumerate(self.specs):
            if self.halt.wait(max(0.0, began + i * step - time.monotonic())):
                return
            sent = time.monotonic()
            outcome, task_id, detail = self.send(spec)
            self.log.append(
                Enqueue(spec, self.source, outcome, task_id, detail, sent, time.monotonic())
            )
        self.close()

    def send(self, spec: TaskSpec) -> tuple[str, str | None, str]:
        """Enqueue one task; (outcome, task id if acknowledged, detail)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    def stop(self, timeout: float) -> None:
        """Stop sending and wait for the thread (each call is bounded)."""
        self.halt.set()
        self.join(timeout)


class LibraryProducer(Producer):
    """`Conveyor.enqueue` from a thread, through the proxy."""

    source = "library"

    def __init__(self, specs: list[TaskSpec], window: float, make_app: Callable[[], Conveyor]):
        super().__init__(specs, window)
        self.app = make_app()

    def send(self, spec: TaskSpec) -> tuple[str, str | None, str]:
        try:
            handle = self.app.enqueue(spec.name, spec.label, *spec.args)
        except BrokerUnavailableError as exc:
            timed_out = "timeout" in str(exc).lower() or "timed out" in str(exc).lower()
            return (UNKNOWN if timed_out else FAILED), None, str(exc)
        except Exception as exc:  # anything else is a finding, not an outage
            self.anomalies.append(f"library enqueue raised {type(exc).__name__}: {exc}")
            return FAILED, None, repr(exc)
        return ACK, handle.id, ""

    def close(self) -> None:
        self.app.close()


class ApiProducer(Producer):
    """`POST /v1/tasks` to the `conveyor api` subprocess."""

    source = "api"

    def __init__(self, specs: list[TaskSpec], window: float, base_url: str) -> None:
        super().__init__(specs, window)
        self.client = httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT)

    def send(self, spec: TaskSpec) -> tuple[str, str | None, str]:
        body = {"name": spec.name, "args": [spec.label, *spec.args]}
        try:
            response = self.client.post("/v1/tasks", json=body)
        except httpx.TimeoutException as exc:
            return UNKNOWN, None, f"timeout: {exc}"
        except httpx.TransportError as exc:
            self.anomalies.append(f"the API did not answer: {exc!r}")
            return FAILED, None, repr(exc)
        if response.status_code == 202:
            return ACK, str(response.json()["id"]), ""
        if response.status_code != 503:
            self.anomalies.append(f"API answered {response.status_code}: {response.text[:200]}")
        return FAILED, None, f"{response.status_code} {response.text[:200]}"

    def close(self) -> None:
        self.client.close()
