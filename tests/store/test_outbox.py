"""The transactional outbox and its relay, over the embedded bus on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import func, select

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


def test_relay_keeps_messages_when_the_bus_is_down_and_backs_off(store: Store) -> None:
    with store.begin() as conn:
        Outbox.add(conn, [released("B1")], partitions=4)
    result = OutboxRelay(store, DownBus(store)).relay_once()
    assert (result.published, result.failed) == (0, 1)
    with store.begin() as conn:
        row = conn.execute(select(outbox)).one()
    assert row.attempts == 1 and "connection refused" in row.last_error
    assert row.next_attempt_at is not None, "not retried in a hot loop"
    assert OutboxRelay(store, DownBus(store)).relay_once().failed == 0, "backing off"


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
