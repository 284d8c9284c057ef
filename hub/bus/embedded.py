"""The embedded bus: durable queues in the hub's own store, for the zero-setup default.

Publishing inserts one row per bound queue in one transaction, so a message is either in every
queue it routes to or in none. Consumers lease rows (``lease_until``) before handling them and
delete them after; a consumer that dies leaves its lease to expire, and the rows are delivered
again. A row leased ``delivery_limit`` times without being settled is dead-lettered, so a
message that crashes its consumer cannot crash it forever. The same code runs on SQLite (one
writer at a time) and PostgreSQL (``FOR UPDATE SKIP LOCKED`` lets several consumers share a
queue), and works across processes: bindings live in the store too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select, update

from hub.bus.base import (
    Bus,
    Handler,
    Incoming,
    Outgoing,
    Subscription,
    Verdict,
    backoff,
    settle,
    topic_matches,
)
from hub.errors import HubError, RetryableError, Unroutable
from hub.headers import H_ATTEMPT, H_BODY_ENCODING, H_KEY, H_TYPE
from hub.journal import Entry, record
from hub.store.bulk import insert_ignore
from hub.store.db import Store
from hub.store.deadletters import DeadLetters, NewDeadLetter, body_from_text, body_to_text
from hub.store.tables import bus_binding, bus_message
from hub.store.types import utcnow

__all__ = ["EmbeddedBus"]

log = logging.getLogger(__name__)


class EmbeddedBus(Bus):
    """A :class:`~hub.bus.base.Bus` whose queues are rows in the hub's store."""

    def __init__(
        self,
        store: Store,
        *,
        retry_delays: Sequence[float] = (1.0, 5.0, 30.0, 120.0, 600.0),
        delivery_limit: int = 10,
        lease_seconds: float = 60.0,
        poll_interval: float = 0.25,
        batch_size: int = 100,
    ) -> None:
        self.store = store
        self.retry_delays = tuple(retry_delays)
        self.delivery_limit = delivery_limit
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.hold_limit = lease_seconds / 2  # well inside the lease of the batch held
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self._owner = uuid.uuid4().hex
        self._wakeup = threading.Condition()
        self._closed = False

    # -- topology --------------------------------------------------------------------------

    def declare(self, subscription: Subscription) -> None:
        with self.store.begin() as conn:
            insert_ignore(
                conn, bus_binding,
                [{"queue": subscription.queue, "pattern": p} for p in subscription.patterns],
            )

    def _bindings(self, conn: Connection) -> list[tuple[str, str]]:
        return [(r.queue, r.pattern) for r in conn.execute(select(bus_binding))]

    # -- publishing ------------------------------------------------------------------------

    def publish(self, messages: Sequence[Outgoing]) -> None:
        if not messages:
            return
        unroutable: list[str] = []
        now = utcnow()
        with self.store.begin() as conn:
            bindings = self._bindings(conn)
            rows: list[dict[str, Any]] = []
            for message in messages:
                queues = sorted({q for q, p in bindings if topic_matches(p, message.routing_key)})
                if not queues:
                    unroutable.append(message.message_id)
                rows.extend(_row(q, message, now) for q in queues)
            if rows:
                conn.execute(bus_message.insert(), rows)
        self._notify()
        if unroutable:
            raise Unroutable(
                f"{len(unroutable)} message(s) matched no queue: " + ", ".join(unroutable[:5]),
                unroutable,
            )

    def send(self, queue: str, message: Outgoing) -> None:
        with self.store.begin() as conn:
            known = conn.execute(
                select(bus_binding.c.queue).where(bus_binding.c.queue == queue).limit(1)
            ).first()
            if known is None:
                raise Unroutable(f"no queue named {queue!r}", [message.message_id])
            conn.execute(bus_message.insert().values(**_row(queue, message, utcnow())))
        self._notify()

    def _notify(self) -> None:
        with self._wakeup:
            self._wakeup.notify_all()

    # -- consuming -------------------------------------------------------------------------

    def consume(
        self,
        subscription: Subscription,
        handler: Handler,
        stop: threading.Event,
        *,
        batch_size: int | None = None,
    ) -> None:
        size = batch_size or self.batch_size
        failures = 0
        declared = False
        while not stop.is_set() and not self._closed:
            try:
                if not declared:
                    self.declare(subscription)
                    declared = True
                batch = self._claim(subscription.queue, size)
                failures = 0
            except HubError as exc:
                failures += 1
                log.warning("embedded bus: cannot read queue %s: %s", subscription.queue, exc)
                stop.wait(backoff(failures))
                continue
            if not batch:
                with self._wakeup:
                    self._wakeup.wait(self.poll_interval)
                continue
            started = time.monotonic()
            verdicts = settle(batch, handler, self.retry_delays)
            elapsed_ms = (time.monotonic() - started) * 1000
            self._finish_until_done(subscription.queue, batch, verdicts, elapsed_ms, stop)

    def _claim(self, queue: str, size: int) -> list[Incoming]:
        now = utcnow()
        with self.store.begin() as conn:
            query = (
                select(bus_message.c.id)
                .where(
                    bus_message.c.queue == queue,
                    bus_message.c.available_at <= now,
                    or_(bus_message.c.lease_until.is_(None), bus_message.c.lease_until < now),
                )
                .order_by(bus_message.c.id)
                .limit(size)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = [r.id for r in conn.execute(query)]
            if not ids:
                return []
            conn.execute(
                update(bus_message)
                .where(bus_message.c.id.in_(ids))
                .values(
                    lease_until=now + self.lease,
                    lease_owner=self._owner,
                    attempts=bus_message.c.attempts + 1,
                )
            )
            rows = conn.execute(
                select(bus_message).where(bus_message.c.id.in_(ids)).order_by(bus_message.c.id)
            ).mappings().all()
            batch: list[Incoming] = []
            exhausted: list[NewDeadLetter] = []
            exhausted_ids: list[int] = []
            for row in rows:
                message = _incoming(row)
                if row["attempts"] > self.delivery_limit:
                    exhausted_ids.append(message.receipt)
                    exhausted.append(_dead(message, Verdict(
                        "dead",
                        f"delivered {row['attempts'] - 1} times without being settled "
                        "(its consumer crashed or was stopped while handling it each time)",
                        "delivery_limit",
                    )))
                else:
                    batch.append(message)
            if exhausted:
                DeadLetters.add(conn, exhausted)
                conn.execute(delete(bus_message).where(bus_message.c.id.in_(exhausted_ids)))
                record(conn, [_entry("dead_lettered", d.message_id, d.headers, d.routing_key,
                                     queue, error=d.reason) for d in exhausted])
        return batch

    def _finish_until_done(
        self, queue: str, batch: Sequence[Incoming], verdicts: Sequence[Verdict],
        elapsed_ms: float, stop: threading.Event,
    ) -> None:
        failures = 0
        while True:
            try:
                self._finish(queue, batch, verdicts, elapsed_ms)
                return
            except RetryableError as exc:
                # The lease still protects the batch; if we stop now it is simply redelivered.
                failures += 1
                log.warning("embedded bus: cannot settle %d message(s): %s", len(batch), exc)
                if stop.wait(backoff(failures)):
                    return

    def _finish(
        self, queue: str, batch: Sequence[Incoming], verdicts: Sequence[Verdict],
        elapsed_ms: float,
    ) -> None:
        now = utcnow()
        done: list[int] = []
        dead: list[NewDeadLetter] = []
        entries: list[Entry] = []
        per_message_ms = elapsed_ms / max(1, len(batch))
        with self.store.begin() as conn:
            for message, verdict in zip(batch, verdicts, strict=True):
                row_id = message.receipt
                owned = and_(bus_message.c.id == row_id, bus_message.c.lease_owner == self._owner)
                if verdict.action == "retry":
                    conn.execute(update(bus_message).where(owned).values(
                        available_at=now + dt.timedelta(seconds=verdict.delay),
                        lease_until=None, lease_owner=None,
                    ))
                    entries.append(_entry("retried", message.message_id, message.headers,
                                          message.routing_key, queue, error=verdict.reason,
                                          duration_ms=per_message_ms,
                                          detail={"attempt": message.attempt,
                                                  "delay": verdict.delay}))
                    continue
                done.append(row_id)
                if verdict.action == "dead":
                    dead.append(_dead(message, verdict))
                    entries.append(_entry("dead_lettered", message.message_id, message.headers,
                                          message.routing_key, queue, error=verdict.reason,
                                          duration_ms=per_message_ms))
                else:
                    entries.append(_entry("applied", message.message_id, message.headers,
                                          message.routing_key, queue,
                                          duration_ms=per_message_ms))
            if done:
                conn.execute(delete(bus_message).where(
                    bus_message.c.id.in_(done), bus_message.c.lease_owner == self._owner
                ))
            DeadLetters.add(conn, dead)
            record(conn, entries)

    # -- inspection ------------------------------------------------------------------------

    def queue_depths(self) -> dict[str, int]:
        with self.store.begin() as conn:
            depths = {q: 0 for q, _ in self._bindings(conn)}
            for queue, count in conn.execute(
                select(bus_message.c.queue, func.count()).group_by(bus_message.c.queue)
            ):
                depths[queue] = int(count)
        return depths

    def ping(self) -> None:
        self.store.ping()

    def close(self) -> None:
        self._closed = True
        self._notify()


def _row(queue: str, message: Outgoing, now: dt.datetime) -> dict[str, Any]:
    text, encoding = body_to_text(message.body)
    headers = dict(message.headers)
    if encoding:
        headers[H_BODY_ENCODING] = encoding
    return {
        "queue": queue,
        "message_id": message.message_id[:36],
        "routing_key": message.routing_key,
        "headers": json.dumps(headers, sort_keys=True, default=str),
        "body": text,
        "attempts": max(0, int(headers.get(H_ATTEMPT, 1)) - 1),
        "available_at": now,
        "created_at": now,
    }


def _incoming(row: Any) -> Incoming:
    headers: dict[str, Any] = json.loads(row["headers"] or "{}")
    body = body_from_text(row["body"], headers.pop(H_BODY_ENCODING, None))
    return Incoming(
        queue=row["queue"],
        message_id=row["message_id"],
        routing_key=row["routing_key"],
        body=body,
        headers=headers,
        attempt=int(row["attempts"]),
        redelivered=int(row["attempts"]) > 1,
        receipt=int(row["id"]),
    )


def _dead(message: Incoming, verdict: Verdict) -> NewDeadLetter:
    headers = message.headers
    return NewDeadLetter(
        message_id=message.message_id,
        queue=message.queue,
        routing_key=message.routing_key,
        body=message.body,
        headers=headers,
        reason=verdict.reason,
        error_code=verdict.code or "permanent",
        attempts=message.attempt,
        type=_opt(headers.get(H_TYPE)),
        correlation_key=_opt(headers.get(H_KEY)),
    )


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _entry(event: str, message_id: str, headers: Any, routing_key: str, queue: str,
           **kw: Any) -> Entry:
    return Entry.for_message(event, message_id, headers, routing_key, target=queue, **kw)
