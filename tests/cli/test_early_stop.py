"""EarlyStop: stop signals during `conveyor worker`'s startup exit it, or reach whatever
takes over; real signals, raised in this process."""

from __future__ import annotations

import signal
import sys
import weakref
from collections.abc import Iterator

import pytest

from conveyor.cli.early_stop import STOP_SIGNALS, EarlyStop


@pytest.fixture
def early() -> Iterator[EarlyStop]:
    """An installed EarlyStop; this process's own handlers are back after the test."""
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    stop = EarlyStop()
    stop.install()
    yield stop
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_stop_before_anything_took_over_exits_cleanly(early: EarlyStop) -> None:
    with pytest.raises(SystemExit) as exited:
        signal.raise_signal(signal.SIGTERM)
    assert exited.value.code == 0
    assert early.received == [signal.SIGTERM]


class _Token:
    """Something to drop, so that its weakref callback runs."""


def test_a_stop_whose_exit_was_dropped_is_handed_over(
    early: EarlyStop, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped: list[type[BaseException] | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))

    def stop_me(_: weakref.ref[_Token]) -> None:
        signal.raise_signal(signal.SIGINT)

    token = _Token()
    watch = weakref.ref(token, stop_me)
    del token  # the callback runs, the handler raises in it, and Python drops the exit
    assert watch() is None and dropped == [SystemExit]
    delivered: list[int] = []
    early.hand_over(delivered.append)
    assert delivered == [signal.SIGINT]  # the signal whose exit was lost
    signal.raise_signal(signal.SIGTERM)  # and a later one goes straight on, no exit
    assert delivered == [signal.SIGINT, signal.SIGTERM]
    assert early.received == delivered


def test_hand_over_passes_on_each_signal_once_in_order(early: EarlyStop) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        with pytest.raises(SystemExit):
            signal.raise_signal(sig)
    delivered: list[int] = []

    def deliver(signum: int) -> None:
        delivered.append(signum)
        if len(delivered) == 1:  # a signal during the hand-over waits for it to finish
            signal.raise_signal(signal.SIGTERM)
            assert delivered == [signal.SIGTERM]

    early.hand_over(deliver)
    assert delivered == [signal.SIGTERM, signal.SIGINT, signal.SIGTERM]
    assert early.received == delivered
