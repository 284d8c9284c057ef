"""The ``bus`` fixture: every contract test runs against each implementation on real servers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from hub.bus.base import Bus, Handler, Subscription
from hub.store import Store
from hub.store.deadletters import DeadLetter, DeadLetters
from tests.bus.kit import KINDS, QUEUE_PREFIX, delete_test_queues, make_bus
from tests.databases import AMQP_URL


@dataclass
class BusKit:
    kind: str
    bus: Bus
    store: Store
    exchange: str
    _threads: list[tuple[threading.Thread, threading.Event]] = field(default_factory=list)

    def queue(self, name: str = "q") -> str:
        return f"{QUEUE_PREFIX}{name}-{uuid.uuid4().hex[:8]}"

    @contextmanager
    def consuming(self, sub: Subscription, handler: Handler, **kw: int) -> Iterator[None]:
        """Run a consumer in a thread for the duration of the block."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self.bus.consume, args=(sub, handler, stop), kwargs=kw, daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=15)
            assert not thread.is_alive(), "consumer did not stop within 15 s"

    def dead_letters(self) -> list[DeadLetter]:
        with self.store.begin() as conn:
            return DeadLetters.list(conn, status="dead", limit=1000)


@pytest.fixture(scope="session")
def _rabbit_cleanup() -> Iterator[None]:
    yield
    delete_test_queues()


@pytest.fixture(params=KINDS)
def kit(
    request: pytest.FixtureRequest, tmp_path: object, _rabbit_cleanup: None
) -> Iterator[BusKit]:
    kind: str = request.param
    if kind == "embedded-postgres":
        store = Store(request.getfixturevalue("pg_url"))
    else:
        store = Store(f"sqlite:///{tmp_path}/hub.db")
    store.migrate()
    exchange = f"{QUEUE_PREFIX}x-{uuid.uuid4().hex[:8]}"
    bus = make_bus(kind, store, exchange, AMQP_URL)
    stop_relay = threading.Event()
    relay = threading.Thread(target=bus.relay_dead_letters, args=(stop_relay,), daemon=True)
    relay.start()
    built = BusKit(kind, bus, store, exchange)
    try:
        yield built
    finally:
        stop_relay.set()
        relay.join(timeout=15)
        bus.close()
        store.dispose()
