"""Builds each bus implementation the same way for the contract suite and its subprocesses."""

from __future__ import annotations

import subprocess

from hub.bus.base import Bus
from hub.bus.embedded import EmbeddedBus
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


def delete_test_queues() -> None:
    """Remove every queue and exchange the suite created on the broker."""
    def listed(kind: str) -> list[str]:
        out = subprocess.run(["rabbitmqctl", "-q", f"list_{kind}", "name"], capture_output=True,
                             text=True, timeout=60, check=False).stdout
        return [n.strip() for n in out.splitlines() if n.strip().startswith(QUEUE_PREFIX)]

    queues, exchanges = listed("queues"), listed("exchanges")
    if not queues and not exchanges:
        return
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", connection_attempts=2))
    try:
        channel = conn.channel()
        for name in queues:
            channel.queue_delete(name)
        for name in exchanges:
            channel.exchange_delete(name)
    finally:
        conn.close()
