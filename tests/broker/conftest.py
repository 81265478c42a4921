"""Fixtures of the script tests: the sync broker, brokers and apps with other settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.broker.sync_broker import SyncBroker
from conveyor.settings import Settings
from tests.broker.seed import SHORT_LEASE


@pytest.fixture
def broker(app: Conveyor) -> SyncBroker:
    """The app's synchronous broker, which runs the scripts under test."""
    return app.sync_broker()


@pytest.fixture
def short_lease(settings: Settings) -> Iterator[Conveyor]:
    """An app on the same keyspace whose claims expire after `SHORT_LEASE` seconds."""
    application = Conveyor(settings=settings.replace(lease_timeout=SHORT_LEASE))
    yield application
    application.close()


@pytest.fixture
def broker_with(settings: Settings) -> Iterator[Callable[..., SyncBroker]]:
    """Makes brokers on the same keyspace with some settings changed; closes them after."""
    made: list[SyncBroker] = []

    def make(**changes: Any) -> SyncBroker:
        made.append(SyncBroker(settings.replace(**changes)))
        return made[-1]

    yield make
    for each in made:
        each.close()
