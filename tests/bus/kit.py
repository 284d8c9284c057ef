"""Builds each bus implementation the same way for the contract suite and its subprocesses."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from hub.bus.base import Bus, Incoming, Outgoing
from hub.bus.embedded import EmbeddedBus
from hub.errors import InvalidMessage
from hub.model import Order, OrderChanged, OrderLine
from hub.store import Store

KINDS = ("embedded-sqlite", "embedded-postgres", "rabbitmq")
QUEUE_PREFIX = "hubt-"
RETRY_DELAYS = (0.2, 0.4)
DELIVERY_LIMIT = 3


def make_bus(
    kind: str, store: Store, exchange: str, amqp_url: str, *,
    delivery_limit: int = DELIVERY_LIMIT, heartbeat: int = 5,
) -> Bus:
    """The bus of ``kind`` as every test and test subprocess builds it (same topology)."""
    if kind.startswith("embedded"):
        return EmbeddedBus(
            store, retry_delays=RETRY_DELAYS, delivery_limit=delivery_limit, lease_seconds=1.5,
            poll_interval=0.05, batch_size=20,
        )
    from hub.bus.rabbitmq import RabbitBus

    return RabbitBus(
        amqp_url, store, exchange=exchange, retry_delays=RETRY_DELAYS,
        delivery_limit=delivery_limit, prefetch=50, batch_size=20, publish_timeout=5,
        heartbeat=heartbeat,
    )


def delete_test_queues(prefix: str = QUEUE_PREFIX) -> None:
    """Remove every queue and exchange whose name starts with ``prefix`` from the broker.

    Quorum queues are heavy (a Raft member each): leaving them behind after every test makes
    a small broker slow to recover, so tests that declare many remove theirs at teardown.
    """
    from bench.stack import delete_queues

    delete_queues(prefix)


def order_message(key: str) -> Outgoing:
    """A valid ``order.changed`` for ``key``, ready to publish."""
    return Outgoing.of(OrderChanged(
        correlation_key=key, source="crm", source_version="1",
        order=Order(customer="C1", status="submitted", currency="EUR",
                    lines=(OrderLine(line_no=1, product_code="X", quantity=Decimal("1"),
                                     unit_price=Decimal("2")),)),
    ), partitions=1)


class Decoder:
    """A handler that decodes each message, records its key, and fails what does not decode."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __call__(self, batch: Sequence[Incoming]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for m in batch:
            try:
                self.keys.append(m.decode().correlation_key)
                results.append(None)
            except InvalidMessage as exc:
                results.append(exc)
        return results
