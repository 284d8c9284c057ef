"""The transactional outbox and its relay, over the embedded bus on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from hub.bus.base import Bus, Incoming, Outgoing, Subscription
from hub.bus.embedded import EmbeddedBus
from hub.errors import BrokerUnavailable
from hub.journal import MAX_PAYLOAD
from hub.model import LotReleased, partition_of
from hub.model.messages import encode
from hub.model.records import Lot
from hub.outbox import Outbox, OutboxRelay
from hub.store import Store
from hub.store.tables import journal, outbox
from hub.store.types import utcnow
from tests.bus.kit import QUEUE_PREFIX, delete_test_queues, make_bus
from tests.databases import AMQP_URL
from tests.helpers import wait_for
from tests.proxy import Cuttable


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    yield request.getfixturevalue(name)


def released(batch: str) -> LotReleased:
    return LotReleased(correlation_key=batch, source="lims", source_version="1",
                       lot=Lot(lot_name=batch, released=True))


def test_outbox_rows_commit_or_roll_back_with_the_state_change(store: Store) -> None:
    with pytest.raises(RuntimeError), store.begin() as conn:
        Outbox.add(conn, [released("B1")], partitions=4)
        raise RuntimeError("the connector's own write failed")
    with store.begin() as conn:
        assert Outbox.pending(conn) == 0
        Outbox.add(conn, [released("B2"), released("B3")], partitions=4)
    with store.begin() as conn:
        assert Outbox.pending(conn) == 2


def test_relay_publishes_in_order_deletes_and_journals(store: Store) -> None:
    bus = EmbeddedBus(store, poll_interval=0.05)
    sub = Subscription("certs", ("lims.lot.released.*",))
    bus.declare(sub)
    with store.begin() as conn:
        Outbox.add(conn, [released(f"B{i}") for i in range(30)], partitions=4)
    relay = OutboxRelay(store, bus, batch_size=7)
    while relay.relay_once().published:
        pass
    with store.begin() as conn:
        assert Outbox.pending(conn) == 0
        published = conn.execute(
            select(func.count()).select_from(journal).where(journal.c.event == "published")
        ).scalar_one()
    assert published == 30
    got: list[str] = []

    def handler(batch: Sequence[Incoming]) -> list[BaseException | None]:
        got.extend(m.decode().correlation_key for m in batch)
        return [None] * len(batch)

    stop = threading.Event()
    thread = threading.Thread(target=bus.consume, args=(sub, handler, stop))
    thread.start()
    try:
        for _ in range(200):
            if len(got) == 30:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert got == [f"B{i}" for i in range(30)]


class DownBus(EmbeddedBus):
    def publish(self, messages: Sequence[Outgoing]) -> None:
        raise BrokerUnavailable("connection refused")


def test_relay_keeps_a_batch_as_it_was_when_the_bus_is_down(store: Store) -> None:
    """The bus is down, not the messages: none is put off on its own (it would go out up to
    a minute after the bus is back, and after newer ones); the caller tries again."""
    with store.begin() as conn:
        Outbox.add(conn, [released("B1"), released("B2")], partitions=4)
    with pytest.raises(BrokerUnavailable, match="connection refused"):
        OutboxRelay(store, DownBus(store)).relay_once()
    with store.begin() as conn:
        rows = conn.execute(select(outbox).order_by(outbox.c.id)).all()
    assert [(r.correlation_key, r.attempts, r.next_attempt_at) for r in rows] == [
        ("B1", 0, None), ("B2", 0, None)]


@pytest.mark.rabbitmq
def test_relay_publishes_in_order_within_seconds_of_the_broker_coming_back(
        sqlite_store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """RabbitMQ, behind a proxy the test cuts, is away for longer than the old per-message
    back-off would have let the messages wait; they go out within the relay's probe interval
    of its return, in the order they were written, with one warning for the outage."""
    store = sqlite_store
    url = make_url(AMQP_URL)
    tag = uuid.uuid4().hex[:8]
    with Cuttable(url.host or "127.0.0.1", url.port or 5672) as proxy:
        via = url.set(port=proxy.port).render_as_string(hide_password=False)
        bus = make_bus("rabbitmq", store, f"{QUEUE_PREFIX}x-{tag}", via)
        consumer = make_bus("rabbitmq", store, f"{QUEUE_PREFIX}x-{tag}", AMQP_URL)
        sub = Subscription(f"{QUEUE_PREFIX}{tag}.certs", ("lims.lot.released.*",))
        consumer.declare(sub)
        relay = OutboxRelay(store, bus, outage_probe=1.0)
        stop = threading.Event()
        thread = threading.Thread(target=relay.run, args=(stop,))
        got: list[str] = []

        def handler(batch: Sequence[Incoming]) -> list[BaseException | None]:
            got.extend(m.decode().correlation_key for m in batch)
            return [None] * len(batch)

        listen = threading.Thread(target=consumer.consume, args=(sub, handler, stop))
        try:
            proxy.cut()
            with store.begin() as conn:
                Outbox.add(conn, [released(f"B{i}") for i in range(5)], partitions=1)
            with caplog.at_level(logging.DEBUG, logger="hub.outbox"):
                thread.start()
                listen.start()
                time.sleep(8)  # several tries; B0..B4 would each have been put off 8-16 s
                assert got == [] and _pending(store) == 5
                proxy.restore()
                back = time.monotonic()
                wait_for(lambda: _pending(store) == 0, 20, "the outbox relayed")
                assert time.monotonic() - back < 4.0
                wait_for(lambda: len(got) == 5, 20, "the messages consumed")
        finally:
            stop.set()
            for t in (thread, listen):
                if t.is_alive():
                    t.join(15)
            bus.close()
            consumer.close()
            delete_test_queues(f"{QUEUE_PREFIX}{tag}")
            delete_test_queues(f"{QUEUE_PREFIX}x-{tag}")
    assert got == [f"B{i}" for i in range(5)]
    warned = [r.getMessage() for r in caplog.records
              if r.name == "hub.outbox" and r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "trying again until it answers" in warned[0], warned
    assert any("relaying again after" in r.getMessage() for r in caplog.records)


def _pending(store: Store) -> int:
    with store.begin() as conn:
        return Outbox.pending(conn)


def test_unroutable_messages_wait_while_routable_ones_go(store: Store) -> None:
    bus: Bus = EmbeddedBus(store)
    # Two keys on different partitions; only the second one's partition has a consumer.
    keys = [k for k in (f"B{i}" for i in range(20)) if partition_of(k, 2) == 0][:1] + [
        k for k in (f"B{i}" for i in range(20)) if partition_of(k, 2) == 1][:1]
    bus.declare(Subscription("only-p1", ("lims.lot.released.p1",)))
    with store.begin() as conn:
        Outbox.add(conn, [released(k) for k in keys], partitions=2)
    result = OutboxRelay(store, bus).relay_once()
    assert (result.published, result.failed) == (1, 1)
    with store.begin() as conn:
        left = conn.execute(select(outbox.c.correlation_key, outbox.c.last_error)).one()
    assert left.correlation_key == keys[0] and "no queue is bound" in left.last_error


def test_the_published_entry_keeps_the_body_as_sent(store: Store) -> None:
    """The relay sets a body into its journal entry without parsing it; what a trace reads
    back is the same as a parse of the body would give, and bodies the outbox should never
    hold (not a JSON object, too large) are still kept safely."""
    bus = EmbeddedBus(store, poll_interval=0.05)
    bus.declare(Subscription("certs", ("lims.lot.released.*", "hub.odd.*")))
    message = LotReleased(correlation_key="B-Ü1", source="lims", source_version="1",
                          lot=Lot(lot_name="B-Ü1 \"quoted\" 批", released=True))
    big = "x" * (MAX_PAYLOAD + 1)
    with store.begin() as conn:
        Outbox.add(conn, [message], partitions=1)
        conn.execute(outbox.insert(), [
            {"message_id": mid, "routing_key": "hub.odd.p0", "type": "odd", "body": body,
             "correlation_key": "odd", "created_at": utcnow(), "attempts": 0}
            for mid, body in (("odd-1", "not json"), ("odd-2", f'"{big}"'))])
    relay = OutboxRelay(store, bus, batch_size=10)
    while relay.relay_once().published:
        pass
    with store.begin() as conn:
        details = dict(conn.execute(select(journal.c.message_id, journal.c.detail).where(
            journal.c.event == "published")).all())
    assert json.loads(details[str(message.message_id)]) == {
        "body": json.loads(encode(message))}
    assert json.loads(details["odd-1"]) == {"body": "not json"}
    assert json.loads(details["odd-2"])["body_bytes"] == MAX_PAYLOAD + 3
