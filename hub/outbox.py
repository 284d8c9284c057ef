"""The transactional outbox and its relay.

A connector that notices a change writes the canonical message with :meth:`Outbox.add` in the
same transaction as its own bookkeeping (watermark, snapshot): both commit or neither. The
relay then publishes what is waiting, oldest first, and deletes what the bus confirmed. If the
relay dies after the bus took a message and before the delete, the message is published again
on restart; consumers de-duplicate by message id, so that costs nothing but a little traffic.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, update

from hub.bus.base import Bus, Failures, Outgoing, backoff
from hub.errors import HubError, Unroutable
from hub.headers import H_KEY, H_OCCURRED, H_TYPE
from hub.journal import published, record
from hub.model.messages import Message, encode, routing_key
from hub.store.bulk import insert_many, one_of
from hub.store.db import Store
from hub.store.tables import outbox
from hub.store.types import utcnow

__all__ = ["Outbox", "OutboxRelay", "RelayResult"]

log = logging.getLogger(__name__)


class Outbox:
    """Writes and reads the outbox table inside the caller's transaction."""

    @staticmethod
    def add(conn: Connection, messages: Sequence[Message], *, partitions: int) -> None:
        if not messages:
            return
        now = utcnow()
        insert_many(
            conn, outbox,
            [
                {
                    "message_id": str(m.message_id),
                    "routing_key": routing_key(m, partitions),
                    "type": m.type,
                    "correlation_key": m.correlation_key,
                    "body": encode(m).decode("utf-8"),
                    "created_at": now,
                    "attempts": 0,
                    "occurred_at": _naive_utc(m.occurred_at),
                }
                for m in messages
            ],
        )

    @staticmethod
    def pending(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())

    @staticmethod
    def oldest(conn: Connection) -> dt.datetime | None:
        value: dt.datetime | None = conn.execute(select(func.min(outbox.c.created_at))).scalar()
        return value


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is None else moment.astimezone(dt.UTC).replace(tzinfo=None)


def _headers(type_: str, key: str, occurred_at: dt.datetime | None) -> dict[str, Any]:
    headers: dict[str, Any] = {H_TYPE: type_, H_KEY: key}
    if occurred_at is not None:
        headers[H_OCCURRED] = occurred_at.isoformat()
    return headers


@dataclass(frozen=True)
class RelayResult:
    published: int = 0
    failed: int = 0


class OutboxRelay:
    """Publishes the outbox to the bus; one or more may run (PostgreSQL skips locked rows)."""

    def __init__(
        self, store: Store, bus: Bus, *, batch_size: int = 500, idle_wait: float = 0.2,
        wakeup: threading.Event | None = None, max_delay: float = 60.0,
        outage_probe: float = 5.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.wakeup = wakeup or threading.Event()
        self.max_delay = max_delay
        #: Longest wait between two tries while the bus or the store does not answer.
        self.outage_probe = outage_probe

    def run(self, stop: threading.Event) -> None:
        """Relay until ``stop`` is set. While the bus or the store does not answer, the relay
        tries the same batch again, backing off to every :attr:`outage_probe` seconds, so it
        publishes again, in order, within seconds of their return (see :class:`Failures`)."""
        failures = Failures(log, "outbox relay", "outbox relay: relaying again",
                            cap=self.outage_probe)
        while not stop.is_set():
            try:
                result = self.relay_once()
            except HubError as exc:
                stop.wait(failures.failed(exc))
                continue
            failures.succeeded()
            if result.published == 0:
                self.wakeup.wait(self.idle_wait)
                self.wakeup.clear()

    def relay_once(self) -> RelayResult:
        """Publish one batch of due messages. A message that no queue takes waits, backing
        off on its own (up to ``max_delay``); when the bus does not answer (or the store),
        this raises, and the batch stays as it was, to be tried again first.

        No transaction is held while publishing (the embedded bus writes to this same store,
        and a broker may take seconds to confirm). Two relays running at once may publish a
        message twice; consumers de-duplicate by message id.
        """
        now = utcnow()
        with self.store.begin() as conn:
            rows = conn.execute(
                select(outbox.c.id, outbox.c.message_id, outbox.c.routing_key, outbox.c.type,
                       outbox.c.correlation_key, outbox.c.body, outbox.c.attempts,
                       outbox.c.occurred_at)
                .where(or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now))
                .order_by(outbox.c.id)
                .limit(self.batch_size)
            ).all()
        if not rows:
            return RelayResult()
        messages = [
            Outgoing(r.message_id, r.routing_key, r.body.encode("utf-8"),
                     _headers(r.type, r.correlation_key, r.occurred_at))
            for r in rows
        ]
        failed: dict[str, str] = {}
        try:
            self.bus.publish(messages)
        except Unroutable as exc:
            failed = {mid: f"no queue is bound for it: {exc}" for mid in exc.message_ids}
        except HubError:
            # The bus is down, not these messages: delaying each on its own would publish
            # them up to max_delay after the bus is back, and after newer ones.
            raise
        sent = [r for r in rows if r.message_id not in failed]
        with self.store.begin() as conn:
            if sent:
                conn.execute(delete(outbox).where(one_of(conn, outbox.c.id, [r.id for r in sent])))
                # Stamped when the relay took the batch: a consumer may record "applied"
                # before the bus has confirmed the publish, and a trace reads in time order.
                record(conn, [published(r.message_id, r.type, r.correlation_key,
                                        r.routing_key, r.body, at=now) for r in sent])
            for r in rows:
                if r.message_id in failed:
                    delay = backoff(r.attempts + 1, base=1.0, cap=self.max_delay)
                    conn.execute(
                        update(outbox).where(outbox.c.id == r.id).values(
                            attempts=r.attempts + 1, last_error=failed[r.message_id][:2000],
                            next_attempt_at=now + dt.timedelta(seconds=delay),
                        )
                    )
        if failed:
            log.warning("outbox relay: %d message(s) not published: %s", len(failed),
                        next(iter(failed.values())))
        return RelayResult(published=len(sent), failed=len(failed))
