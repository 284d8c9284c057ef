"""RabbitBus under faults, on the real broker: restarts, killed consumers, poison messages.

These tests fail (never skip) when RabbitMQ is not running. One of them stops and starts the
broker's application with ``rabbitmqctl``, so nothing else may use the broker meanwhile.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import pytest
from sqlalchemy import func, select

from hub.bus.base import Incoming, Outgoing, Subscription
from hub.bus.rabbitmq import RabbitBus
from hub.bus.rabbitmq_link import WRITE_BYTES
from hub.errors import BrokerUnavailable, PermanentError, Unroutable
from hub.store import Store
from hub.store.deadletters import DeadLetter, DeadLetters
from hub.store.tables import inbox, journal
from tests.bus.kit import Decoder, make_bus, order_message
from tests.databases import AMQP_URL
from tests.helpers import wait_for

pytestmark = pytest.mark.rabbitmq

ROOT = Path(__file__).resolve().parents[2]
CONSUMER = Path(__file__).with_name("consumer_proc.py")


def out(key: str = "crm.order.changed.p0", body: bytes | None = None) -> Outgoing:
    mid = str(uuid.uuid4())
    return Outgoing(mid, key, body or f'{{"n": "{mid}"}}'.encode(), {"x-hub-key": mid[:8]})


def name(kind: str) -> str:
    return f"hubt-{kind}-{uuid.uuid4().hex[:8]}"


class Rig:
    """RabbitBus instances on unique exchanges, and everything they declared, removed after."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.buses: list[RabbitBus] = []
        self.queues: set[str] = set()
        self.threads: list[tuple[threading.Thread, threading.Event]] = []

    def bus(
        self, *, exchange: str | None = None, delivery_limit: int = 3, heartbeat: int = 5
    ) -> RabbitBus:
        bus = make_bus("rabbitmq", self.store, exchange or name("x"), AMQP_URL,
                       delivery_limit=delivery_limit, heartbeat=heartbeat)
        assert isinstance(bus, RabbitBus)
        bus.ping()  # BrokerUnavailable here fails the test: a missing broker is not a skip
        self.buses.append(bus)
        return bus

    def subscription(self, bus: RabbitBus, patterns: tuple[str, ...] = ("crm.#",)) -> Subscription:
        sub = Subscription(name("q"), patterns)
        self.queues.update([sub.queue, *bus.topology.retry_queues(sub.queue)])
        bus.declare(sub)
        return sub

    def start(self, target: Callable[[threading.Event], None]) -> threading.Event:
        """Run ``target(stop)`` in a thread until the test ends (or ``stop`` is set)."""
        stop = threading.Event()
        thread = threading.Thread(target=target, args=(stop,), daemon=True)
        thread.start()
        self.threads.append((thread, stop))
        return stop

    def consume(self, bus: RabbitBus, sub: Subscription, handler: Any) -> threading.Event:
        return self.start(lambda stop: bus.consume(sub, handler, stop))

    def dead_letters(self) -> list[DeadLetter]:
        with self.store.begin() as conn:
            return DeadLetters.list(conn, status="dead", limit=1000)

    def close(self) -> None:
        for _, stop in self.threads:
            stop.set()
        for thread, _ in self.threads:
            thread.join(timeout=15)
            assert not thread.is_alive(), "a consumer did not stop within 15 s"
        for bus in self.buses:
            bus.close()
        params = pika.URLParameters(AMQP_URL)
        params.socket_timeout = 10
        conn = pika.BlockingConnection(params)
        try:
            channel = conn.channel()
            for bus in self.buses:
                self.queues.add(bus.topology.dead_letter_queue)
            for queue in sorted(self.queues):
                channel.queue_delete(queue)
            for bus in self.buses:
                channel.exchange_delete(bus.topology.exchange)
                channel.exchange_delete(bus.topology.dead_letter_exchange)
        finally:
            conn.close()


@pytest.fixture
def rig(sqlite_store: Store) -> Iterator[Rig]:
    built = Rig(sqlite_store)
    try:
        yield built
    finally:
        built.close()


def rabbitmqctl(*args: str, timeout: float = 120) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=timeout)


@contextmanager
def child(
    rig: Rig, bus: RabbitBus, queue: str, mode: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A consumer process (tests/bus/consumer_proc.py); SIGTERMed if still running after."""
    proc = subprocess.Popen(
        [sys.executable, str(CONSUMER), "rabbitmq", rig.store.url, bus.topology.exchange,
         AMQP_URL, queue, mode, str(log), str(bus.topology.delivery_limit)],
        cwd=ROOT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def log_lines(log: Path) -> list[tuple[str, int, int]]:
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return [(mid, int(attempt), int(redelivered)) for mid, attempt, redelivered in rows]


# -- 1 ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_broker_restart_while_publishing_and_consuming(
    rig: Rig, caplog: pytest.LogCaptureFixture, record_property: Callable[[str, object], None]
) -> None:
    caplog.set_level(logging.WARNING, logger="hub.bus")
    bus = rig.bus()
    sub = rig.subscription(bus)
    messages = [out() for _ in range(2000)]
    published: set[str] = set()
    seen: set[str] = set()
    deliveries = 0
    after_restart = 0
    restarted = threading.Event()
    lock = threading.Lock()
    publisher_errors: list[BaseException] = []
    refusals = 0

    def handler(batch: Sequence[Incoming]) -> list[BaseException | None]:
        nonlocal deliveries, after_restart
        with lock:
            deliveries += len(batch)
            seen.update(m.message_id for m in batch)
            if restarted.is_set():
                after_restart += len(batch)
        return [None] * len(batch)

    def publish_all(stop: threading.Event) -> None:
        # Like the outbox relay: a batch is published again until the broker confirms it.
        nonlocal refusals
        try:
            for i in range(0, len(messages), 10):
                chunk = messages[i : i + 10]
                deadline = time.monotonic() + 120
                while True:
                    try:
                        bus.publish(chunk)
                        break
                    except BrokerUnavailable:
                        refusals += 1
                        if time.monotonic() > deadline or stop.wait(0.2):
                            raise
                with lock:
                    published.update(m.message_id for m in chunk)
                time.sleep(0.03)
        except BaseException as exc:
            publisher_errors.append(exc)

    rig.consume(bus, sub, handler)
    publisher_stop = rig.start(publish_all)
    publisher = rig.threads[-1][0]
    wait_for(lambda: len(published) >= 200, timeout=30, what="publishing under way")
    try:
        rabbitmqctl("stop_app")
        published_at_stop = len(published)
        time.sleep(2)
    finally:
        rabbitmqctl("start_app")
        restarted.set()
    publisher.join(timeout=120)
    assert not publisher.is_alive(), "the publisher hung"
    assert not publisher_errors, publisher_errors
    assert published_at_stop < len(messages), "the broker stopped in the middle of publishing"
    assert refusals > 0, "the publisher saw the broker go away"
    everything = {m.message_id for m in messages}
    assert published == everything
    wait_for(lambda: seen >= everything, timeout=90, what="every published message consumed")
    publisher_stop.set()
    assert after_restart > 0, "the same consume() call carried on after the restart"
    duplicates = deliveries - len(seen)
    record_property("published", len(messages))
    record_property("consumed_distinct", len(seen))
    record_property("duplicates", duplicates)
    record_property("publish_refusals", refusals)
    print(f"\nbroker restart: published {len(messages)}, consumed {len(seen)} distinct, "
          f"{deliveries} deliveries ({duplicates} duplicates), "
          f"{refusals} publish attempts refused, stopped after {published_at_stop} published")
    lost = [r for r in caplog.records if "interrupted" in r.getMessage()]
    assert 1 <= len(lost) <= 3, "each reconnect is logged once, not once per attempt"


# -- 2 ---------------------------------------------------------------------------------------


def effects(store: Store, consumer: str) -> int:
    with store.begin() as conn:
        return int(conn.execute(
            select(func.count()).select_from(inbox).where(inbox.c.consumer == consumer)
        ).scalar_one())


def applied(store: Store, message_id: str) -> bool:
    with store.begin() as conn:
        return conn.execute(
            select(journal.c.id).where(journal.c.message_id == message_id,
                                       journal.c.event == "applied")
        ).first() is not None


# -- 3 ---------------------------------------------------------------------------------------


def test_poison_message_from_a_foreign_publisher_is_dead_lettered_and_others_flow(
    rig: Rig,
) -> None:
    bus = rig.bus()
    sub = rig.subscription(bus)
    rig.start(bus.relay_dead_letters)

    decoder = Decoder()

    before, after = order_message("SO-1"), order_message("SO-2")
    poison = b"<order><no>SO-1</no></order>"
    bus.publish([before])
    params = pika.URLParameters(AMQP_URL)
    params.socket_timeout = 10
    foreign = pika.BlockingConnection(params)
    try:
        channel = foreign.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            bus.topology.exchange, before.routing_key, poison,
            pika.BasicProperties(content_type="text/xml", delivery_mode=2), mandatory=True,
        )
    finally:
        foreign.close()
    bus.publish([after])
    rig.consume(bus, sub, decoder)
    wait_for(lambda: decoder.keys == ["SO-1", "SO-2"], what="the messages around the poison")
    wait_for(lambda: any(d.body == poison for d in rig.dead_letters()), what="the poison")
    dead = next(d for d in rig.dead_letters() if d.body == poison)
    assert dead.queue == sub.queue
    assert dead.error_code == "invalid_message"
    assert "canonical model" in dead.reason
    assert dead.routing_key == before.routing_key
    assert uuid.UUID(dead.message_id), "a message without an id gets a stable one"


# -- 4 ---------------------------------------------------------------------------------------


def test_unroutable_publish_raises_with_the_ids_and_the_rest_arrive(rig: Rig) -> None:
    bus = rig.bus()
    sub = rig.subscription(bus)
    good, lost1, lost2 = out(), out("nobody.listens.here.p0"), out("erp.nobody.p1")
    with pytest.raises(Unroutable) as info:
        bus.publish([lost1, good, lost2])
    assert set(info.value.message_ids) == {lost1.message_id, lost2.message_id}
    with pytest.raises(Unroutable) as sent:
        bus.send(name("missing"), lost1)
    assert sent.value.message_ids == (lost1.message_id,)
    later = out()
    bus.publish([later])  # the publisher is still usable
    got: list[str] = []

    def handler(batch: Sequence[Incoming]) -> list[BaseException | None]:
        got.extend(m.message_id for m in batch)
        return [None] * len(batch)

    rig.consume(bus, sub, handler)
    wait_for(lambda: got == [good.message_id, later.message_id], what="the routable messages")


def test_send_puts_a_message_into_one_queue_under_its_own_routing_key(rig: Rig) -> None:
    bus = rig.bus()
    sub = rig.subscription(bus)
    other = rig.subscription(bus)
    replayed = out("crm.order.changed.p3")
    bus.send(sub.queue, replayed)
    got: list[Incoming] = []

    def handler(batch: Sequence[Incoming]) -> list[BaseException | None]:
        got.extend(batch)
        return [None] * len(batch)

    rig.consume(bus, sub, handler)
    rig.consume(bus, other, handler)
    wait_for(lambda: len(got) == 1, what="the replayed message")
    time.sleep(0.3)
    assert [(m.queue, m.message_id, m.routing_key) for m in got] == [
        (sub.queue, replayed.message_id, "crm.order.changed.p3")
    ]
    assert dict(got[0].headers) == dict(replayed.headers)


# -- 5 ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_message_that_kills_its_consumer_is_dead_lettered_at_the_delivery_limit(
    rig: Rig, tmp_path: Path
) -> None:
    bus = rig.bus(delivery_limit=2)
    sub = rig.subscription(bus)
    rig.start(bus.relay_dead_letters)
    poison = out(body=b'{"kill-me": true}')
    bus.publish([poison])
    log = tmp_path / "seen.log"

    def dead() -> list[DeadLetter]:
        return [d for d in rig.dead_letters() if d.message_id == poison.message_id]

    kills = 0
    while not dead() and kills < 6:
        with child(rig, bus, sub.queue, "die-on-poison", log) as proc:
            deadline = time.monotonic() + 30
            while proc.poll() is None and not dead() and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() == -signal.SIGKILL:
                kills += 1
    wait_for(lambda: bool(dead()), timeout=15, what="the broker to dead-letter the message")
    assert kills == 3, "delivery limit 2: the third crash is the last"
    letter = dead()[0]
    assert letter.queue == sub.queue
    assert letter.error_code == "delivery_limit"
    assert "delivered more than 2 times without an ack" in letter.reason
    assert letter.routing_key == poison.routing_key
    assert letter.body == poison.body
    # The queue is healthy again: the next consumer lives and the next message is applied.
    fine = out()
    with child(rig, bus, sub.queue, "die-on-poison", log) as proc:
        bus.publish([fine])
        wait_for(lambda: applied(rig.store, fine.message_id), timeout=30, what="next message")
        assert proc.poll() is None
    assert [mid for mid, _, _ in log_lines(log)].count(poison.message_id) == 3


# -- 6 ---------------------------------------------------------------------------------------


def test_pipelined_publish_of_5000_messages_is_fully_confirmed(rig: Rig) -> None:
    bus = rig.bus()
    sub = rig.subscription(bus)
    messages = [out(body=b"x" * 1000) for _ in range(5000)]
    for i in range(0, len(messages), 500):
        bus.publish(messages[i : i + 500])
    # Confirmed means enqueued: the queue holds all of them now, without waiting.
    assert bus.queue_depths()[sub.queue] == 5000


def test_a_published_batch_reaches_the_socket_in_a_few_large_writes(rig: Rig) -> None:
    """py-amqp writes each message on its own; every write let go of the GIL, and in a busy
    daemon the publishing thread waited to get it back after every message."""
    bus = rig.bus()
    sub = rig.subscription(bus)
    bus.publish([out(body=b"x")])  # opens the publishing connection
    transport = bus._pool._idle[0].link.conn.transport
    send = transport._write
    sent: list[int] = []

    def counted(data: Any) -> None:
        sent.append(len(data))
        send(data)

    transport._write = counted
    bus.publish([out(body=b"x" * 1000) for _ in range(500)])
    writes = list(sent)
    assert bus.queue_depths()[sub.queue] == 501
    assert sum(writes) > 500 * 1000
    # WRITE_BYTES at a time (and the rest), not a write per message.
    assert len(writes) <= sum(writes) // WRITE_BYTES + 1, str(writes)


# -- heartbeats -----------------------------------------------------------------------------


def test_handler_slower_than_the_heartbeat_timeout_keeps_its_connection(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hub.bus")
    bus = rig.bus(heartbeat=1)  # the broker drops a connection silent for ~2 s
    sub = rig.subscription(bus)
    message = out()
    bus.publish([message])
    calls: list[tuple[str, bool]] = []

    def slow(batch: Sequence[Incoming]) -> list[BaseException | None]:
        calls.extend((m.message_id, m.redelivered) for m in batch)
        time.sleep(4)
        return [None] * len(batch)

    rig.consume(bus, sub, slow)
    wait_for(lambda: applied(rig.store, message.message_id), timeout=30, what="the slow batch")
    time.sleep(1.5)  # idle with heartbeats from the drain loop
    assert calls == [(message.message_id, False)], "handled once, never redelivered"
    assert not [r for r in caplog.records if "interrupted" in r.getMessage()]


# -- declarations ----------------------------------------------------------------------------


def test_queue_with_other_arguments_is_a_clear_permanent_error(rig: Rig) -> None:
    bus = rig.bus(delivery_limit=3)
    sub = rig.subscription(bus)
    other = rig.bus(exchange=bus.topology.exchange, delivery_limit=5)
    with pytest.raises(PermanentError) as info:
        other.declare(sub)
    assert sub.queue in str(info.value) and "x-delivery-limit" in str(info.value)
    bus.declare(sub)  # the same arguments again: idempotent
    other.publish([out()])  # the failed declaration did not break the publisher
