"""The message journal: every message's life (observed, published, applied, retried,
dead-lettered, replayed, discarded), written in batches next to the work it describes.

``observed`` entries are what a poller saw in its system when it wrote a message, for
:mod:`hub.trace`: today the ERP's deliveries, with their batches (see :func:`observed`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert

from hub.headers import H_KEY, H_TYPE
from hub.model.messages import DeliveryPosted, Message
from hub.store.tables import journal
from hub.store.types import utcnow

__all__ = ["Entry", "observed", "prune", "record"]

@dataclass(frozen=True)
class Entry:
    """One event in a message's life."""

    event: str
    message_id: str | None = None
    type: str | None = None
    correlation_key: str | None = None
    source: str | None = None
    target: str | None = None
    outcome: str | None = None
    duration_ms: float | None = None
    error: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: dt.datetime | None = None

    @classmethod
    def for_message(
        cls, event: str, message_id: str, headers: Mapping[str, Any], routing_key: str, **kw: Any
    ) -> Entry:
        """An entry whose type, key and source come from a message's headers and routing key."""
        source = routing_key.split(".", 1)[0] if routing_key else None
        return cls(
            event=event,
            message_id=message_id,
            type=_str(headers.get(H_TYPE)),
            correlation_key=_str(headers.get(H_KEY)),
            source=source if source in ("crm", "erp", "lims", "hub") else None,
            **kw,
        )


def _str(value: object) -> str | None:
    return str(value) if value is not None else None


def record(conn: Connection, entries: Sequence[Entry]) -> None:
    """Append ``entries`` in the caller's transaction (one multi-row insert)."""
    if not entries:
        return
    now = utcnow()
    conn.execute(
        insert(journal),
        [
            {
                "at": e.at or now,
                "event": e.event,
                "message_id": e.message_id,
                "type": e.type,
                "correlation_key": e.correlation_key and e.correlation_key[:64],
                "source": e.source,
                "target": e.target,
                "outcome": e.outcome,
                "duration_ms": e.duration_ms,
                "error": e.error,
                "detail": json.dumps(dict(e.detail), default=str) if e.detail else None,
            }
            for e in entries
        ],
    )


def observed(messages: Sequence[Message]) -> list[Entry]:
    """``observed`` entries for the deliveries among ``messages``: one under the order's key
    listing every batch, and one under each batch number, so that a trace of the order or
    of the batch finds the delivery (and, by its message id, the message's life)."""
    entries: list[Entry] = []
    for m in messages:
        if not isinstance(m, DeliveryPosted):
            continue
        d = m.delivery
        head = {"delivery": d.doc_num, "delivery_doc_entry": d.doc_entry,
                "customer": d.customer, "date": d.delivery_date.isoformat()}
        batches = [{"batch": b.batch_number, "product": line.product_code,
                    "quantity": str(b.quantity), "order_doc_entry": line.order_doc_entry,
                    "order_line": line.order_line}
                   for line in d.lines for b in line.batches]
        keyed = [(m.correlation_key, {**head, "batches": batches})] + [
            (batch, {**head, "order_key": m.correlation_key,
                     "batches": [b for b in batches if b["batch"] == batch]})
            for batch in dict.fromkeys(str(b["batch"]) for b in batches)]
        entries += [Entry(event="observed", message_id=str(m.message_id), type=m.type,
                          correlation_key=key, source=m.source, detail=detail)
                    for key, detail in keyed]
    return entries


def prune(conn: Connection, older_than: dt.datetime) -> int:
    """Delete journal entries older than ``older_than``; returns how many went."""
    result = conn.execute(delete(journal).where(journal.c.at < older_than))
    return int(result.rowcount or 0)
