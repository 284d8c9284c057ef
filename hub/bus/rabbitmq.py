"""The RabbitMQ bus: a durable topic exchange, one quorum queue per subscription.

Failed messages wait out their delay in per-delay retry queues and flow back; dead letters go
through a dead-letter exchange to one queue that :meth:`RabbitBus.relay_dead_letters` moves
into the hub's store. A message that keeps killing its consumer is dead-lettered by the broker
once the quorum queue's delivery limit is reached. Layout in :mod:`hub.bus.rabbitmq_topology`.

Publishing waits for pipelined publisher confirms (:mod:`hub.bus.rabbitmq_publish`); consumers
reconnect by themselves (:mod:`hub.bus.rabbitmq_consume`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from amqp import exceptions as amqp_exc

from hub.bus.base import Bus, Handler, Incoming, Outgoing, Subscription, Verdict, settle
from hub.bus.rabbitmq_codec import (
    H_ROUTING_KEY,
    Envelope,
    dead_envelope,
    dead_letter_of,
    incoming,
    retry_envelope,
)
from hub.bus.rabbitmq_consume import ConsumerLoop
from hub.bus.rabbitmq_link import LINK_ERRORS, Link
from hub.bus.rabbitmq_publish import Publisher, PublisherPool
from hub.bus.rabbitmq_topology import Topology
from hub.errors import BrokerUnavailable, HubError, RetryableError
from hub.journal import Entry, record
from hub.settings import mask_url
from hub.store.db import Store
from hub.store.deadletters import DeadLetters

__all__ = ["RabbitBus"]

log = logging.getLogger(__name__)


class RabbitBus(Bus):
    """A :class:`~hub.bus.base.Bus` on RabbitMQ (3.10+), through kombu's py-amqp transport.

    ``store`` receives the journal and the dead letters. Names of the dead-letter exchange and
    queue follow ``exchange`` (see :meth:`Topology.for_exchange`) unless given. ``tls``: py-amqp's
    TLS options for an ``amqps://`` URL (:meth:`hub.settings.Settings.broker_tls`).
    """

    def __init__(
        self,
        url: str,
        store: Store,
        *,
        exchange: str = "hub.events",
        retry_delays: Sequence[float] = (1.0, 5.0, 30.0, 120.0, 600.0),
        delivery_limit: int = 10,
        prefetch: int = 200,
        batch_size: int = 100,
        publish_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        heartbeat: int = 20,
        linger: float = 0.05,
        dead_letter_exchange: str | None = None,
        dead_letter_queue: str | None = None,
        tls: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.tls = dict(tls) if tls is not None else None
        self.store = store
        self.topology = Topology.for_exchange(
            exchange, retry_delays=tuple(retry_delays), delivery_limit=delivery_limit,
            dead_letter_exchange=dead_letter_exchange, dead_letter_queue=dead_letter_queue,
        )
        self.retry_delays = tuple(retry_delays)
        self.prefetch = prefetch
        self.batch_size = batch_size
        self.publish_timeout = publish_timeout
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.linger = linger
        self._closed = False
        self._known: set[str] = set()
        self._known_lock = threading.Lock()
        self._pool = PublisherPool(
            self._open_publisher, max_idle=heartbeat / 2 if heartbeat else float("inf")
        )

    def __repr__(self) -> str:
        return f"RabbitBus({mask_url(self.url)!r}, exchange={self.topology.exchange!r})"

    # -- connections -----------------------------------------------------------------------

    def _link(self) -> Link:
        return Link(
            self.url, connect_timeout=self.connect_timeout, heartbeat=self.heartbeat,
            io_timeout=max(self.connect_timeout, self.publish_timeout), tls=self.tls,
        )

    def _open_publisher(self) -> Publisher:
        link = self._link()
        try:
            return Publisher(link, self.topology)
        except BaseException:
            link.abort()
            raise

    def _on_channel(self, work: Callable[[Any], None]) -> None:
        """Run ``work`` on a short-lived channel of a publishing connection."""

        def run(publisher: Publisher) -> None:
            channel = publisher.link.channel()
            work(channel)
            with contextlib.suppress(*LINK_ERRORS):
                channel.close()

        self._pool.run(run)

    # -- topology --------------------------------------------------------------------------

    def declare(self, subscription: Subscription) -> None:
        self._on_channel(lambda ch: self.topology.declare_subscription(ch, subscription))
        self._remember(subscription.queue)

    def _remember(self, queue: str) -> None:
        with self._known_lock:
            self._known.add(queue)

    # -- publishing ------------------------------------------------------------------------

    def publish(self, messages: Sequence[Outgoing]) -> None:
        exchange = self.topology.exchange
        self._pool.publish(
            [Envelope(exchange, m.routing_key, m.message_id, m.body, m.headers)
             for m in messages],
            self.publish_timeout,
        )

    def send(self, queue: str, message: Outgoing) -> None:
        # Through the default exchange, so the message's own routing key travels as a header.
        headers = {**message.headers, H_ROUTING_KEY: message.routing_key}
        self._pool.publish(
            [Envelope("", queue, message.message_id, message.body, headers)],
            self.publish_timeout,
        )

    # -- consuming -------------------------------------------------------------------------

    def consume(
        self,
        subscription: Subscription,
        handler: Handler,
        stop: threading.Event,
        *,
        batch_size: int | None = None,
    ) -> None:
        queue = subscription.queue
        self._remember(queue)

        def process(chunk: Sequence[Any]) -> Callable[[], None]:
            batch = [incoming(queue, m) for m in chunk]
            started = time.monotonic()
            verdicts = settle(batch, handler, self.retry_delays)
            elapsed_ms = (time.monotonic() - started) * 1000
            copies = [self._copy_for(m, v) for m, v in zip(batch, verdicts, strict=True)]
            try:
                self._pool.publish([c for c in copies if c is not None], self.publish_timeout)
            except HubError as exc:
                # Not acked, so redelivered after the reconnect (which declares again).
                raise BrokerUnavailable(f"cannot park failed messages: {exc}") from exc
            return lambda: self._journal(queue, batch, verdicts, elapsed_ms)

        ConsumerLoop(
            url=self.url, queue=queue, open_link=self._link,
            declare=lambda ch: self.topology.declare_subscription(ch, subscription),
            process=process, prefetch=self.prefetch, batch_size=batch_size or self.batch_size,
            linger=self.linger, stop=stop, closed=lambda: self._closed,
        ).run()

    def _copy_for(self, message: Incoming, verdict: Verdict) -> Envelope | None:
        if verdict.action == "retry":
            return retry_envelope(self.topology, message, verdict)
        if verdict.action == "dead":
            return dead_envelope(self.topology, message, verdict)
        return None

    def _journal(
        self, queue: str, batch: Sequence[Incoming], verdicts: Sequence[Verdict],
        elapsed_ms: float,
    ) -> None:
        per_message_ms = elapsed_ms / max(1, len(batch))
        entries: list[Entry] = []
        for message, verdict in zip(batch, verdicts, strict=True):
            kw: dict[str, Any] = {"target": queue, "duration_ms": per_message_ms}
            if verdict.action == "retry":
                event = "retried"
                kw.update(error=verdict.reason,
                          detail={"attempt": message.attempt, "delay": verdict.delay})
            elif verdict.action == "dead":
                event = "dead_lettered"
                kw.update(error=verdict.reason)
            else:
                event = "applied"
            entries.append(Entry.for_message(
                event, message.message_id, message.headers, message.routing_key, **kw
            ))
        try:
            with self.store.begin() as conn:
                record(conn, entries)
        except HubError as exc:
            # The messages are settled on the broker already; the journal is only a record.
            log.warning("journal: %d entr(ies) for %s not written: %s", len(entries), queue, exc)

    def relay_dead_letters(self, stop: threading.Event) -> None:
        topology = self.topology

        def process(chunk: Sequence[Any]) -> Callable[[], None]:
            letters, entries = [], []
            for message in chunk:
                letter, entry = dead_letter_of(topology, message)
                letters.append(letter)
                if entry is not None:
                    entries.append(entry)
            try:
                with self.store.begin() as conn:
                    DeadLetters.add(conn, letters)
                    record(conn, entries)
            except HubError as exc:
                # Unacked, they stay in the broker's queue; the relay tries again after backing
                # off (the store's own classification of "permanent" is a guess: keep them).
                raise RetryableError(f"cannot store dead letters: {exc}") from exc
            return lambda: None

        ConsumerLoop(
            url=self.url, queue=topology.dead_letter_queue, open_link=self._link,
            declare=topology.declare_dead_letters, process=process, prefetch=self.prefetch,
            batch_size=self.batch_size, linger=self.linger, stop=stop,
            closed=lambda: self._closed,
        ).run()

    # -- inspection ------------------------------------------------------------------------

    def queue_depths(self) -> dict[str, int]:
        """Ready messages per subscription queue (its retry queues included) and in the
        dead-letter queue. Quorum queues do not report unacked messages here."""
        with self._known_lock:
            queues = sorted(self._known)
        dlq = self.topology.dead_letter_queue
        parts = {q: [q, *self.topology.retry_queues(q)] for q in queues}
        parts[dlq] = [dlq]

        def count(publisher: Publisher) -> dict[str, int]:
            channel = publisher.link.channel()
            depths: dict[str, int] = {}
            for queue, names in parts.items():
                depths[queue] = 0
                for name in names:
                    try:
                        _, ready, _ = channel.queue_declare(name, passive=True)
                        depths[queue] += int(ready)
                    except amqp_exc.NotFound:
                        channel = publisher.link.channel()  # the failure closed the channel
            with contextlib.suppress(*LINK_ERRORS):
                channel.close()
            return depths

        return self._pool.run(count)

    def ping(self) -> None:
        link = self._link()  # raises BrokerUnavailable
        link.close()

    def close(self) -> None:
        self._closed = True
        self._pool.close()

