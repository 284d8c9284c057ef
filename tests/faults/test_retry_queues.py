"""A message waiting out its retry delay survives a broker crash (regression, issue 6).

The fault suite lost 13 of 20,000 orders this way: the ERP applier put them in the 30 s retry
queue during a MariaDB outage; the broker was SIGKILLed before the delay ran out; at its
restart the classic retry queue dead-lettered the expired messages at most once, before their
quorum queue was back, and dropped them. Retry queues are now quorum queues with at-least-once
dead-lettering. Runs on a private RabbitMQ node, which it may kill.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from hub.bus.base import Subscription
from hub.bus.rabbitmq import RabbitBus
from hub.store import Store
from tests.faults.servers import Rabbit

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]

DELAY = 3.0


@pytest.fixture
def rabbit(tmp_path: Path) -> Iterator[Rabbit]:
    tmp_path.chmod(0o755)
    node = Rabbit(tmp_path)
    try:
        node.start()
        yield node
    finally:
        node.close()


def _ready(url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


@pytest.mark.timeout(300)
def test_messages_in_a_retry_queue_survive_a_broker_kill(rabbit: Rabbit, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    bus = RabbitBus(rabbit.url, store, exchange="faults.events", retry_delays=(DELAY,))
    sub = Subscription("faults.orders", ("crm.order.#",))
    try:
        bus.declare(sub)
    finally:
        bus.close()
        store.dispose()
    waiting = bus.topology.retry_queue(sub.queue, DELAY)
    # RabbitMQ 3.10 does not bring back a quorum queue killed within seconds of its creation
    # (its Ra server is not registered on disk yet); the hub's queues are long-lived.
    time.sleep(10)
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for i in range(50):
            channel.basic_publish("", waiting, f"order {i}".encode(),
                                  pika.BasicProperties(delivery_mode=2, message_id=str(i)))
    finally:
        conn.close()

    rabbit.kill()  # the delay runs out while the broker is down
    time.sleep(DELAY * 2)
    rabbit.start()

    deadline = time.monotonic() + 60
    while _ready(rabbit.url, sub.queue) < 50 and time.monotonic() < deadline:
        time.sleep(1)
    assert _ready(rabbit.url, sub.queue) == 50
    assert _ready(rabbit.url, waiting) == 0
