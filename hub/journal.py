"""The message journal: every message's life (observed, published, applied, retried,
dead-lettered, edited, replayed, discarded), written in batches next to the work it describes.
A ``published`` entry carries the message's body (or, for a large one, a reference to it);
``downloaded`` entries record who fetched which certificate.

``observed`` entries are what a poller saw in its system when it wrote a message, for
:mod:`hub.trace`: today the ERP's deliveries, with their batches (see :func:`observed`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete

from hub.headers import H_KEY, H_OCCURRED, H_TYPE
from hub.model.messages import DeliveryPosted, Message
from hub.store.bulk import insert_many
from hub.store.tables import journal
from hub.store.types import utcnow

__all__ = [
    "MAX_PAYLOAD", "Entry", "observed", "payload", "prune", "published", "record", "since_source",
]

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
    #: ``detail`` already as JSON text, used instead of it (see :func:`published`).
    detail_json: str | None = None
    at: dt.datetime | None = None
    #: ``applied``: from the source's commit (header ``x-hub-occurred-at``) to now.
    latency_ms: float | None = None

    @classmethod
    def for_message(
        cls, event: str, message_id: str, headers: Mapping[str, Any], routing_key: str, **kw: Any
    ) -> Entry:
        """An entry whose type, key and source come from a message's headers and routing key."""
        source = routing_key.split(".", 1)[0] if routing_key else None
        if event == "applied" and "latency_ms" not in kw:
            kw["latency_ms"] = since_source(headers, kw.get("at"))
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


def since_source(headers: Mapping[str, Any], at: dt.datetime | None = None) -> float | None:
    """Milliseconds from the source's commit (the ``x-hub-occurred-at`` header) to ``at``
    (now); None when the message does not say (a foreign publisher, an old message)."""
    value = headers.get(H_OCCURRED)
    if not isinstance(value, str):
        return None
    try:
        occurred = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if occurred.tzinfo is not None:
        occurred = occurred.astimezone(dt.UTC).replace(tzinfo=None)
    return ((at or utcnow()) - occurred).total_seconds() * 1000.0


def record(conn: Connection, entries: Sequence[Entry]) -> None:
    """Append ``entries`` in the caller's transaction (one multi-row insert)."""
    if not entries:
        return
    now = utcnow()
    insert_many(
        conn, journal,
        [
            {
                "at": e.at or now,
                "event": e.event[:20],
                # Cut to the columns: a foreign message's id or headers may be any length,
                # and one entry too long would lose the whole batch's entries.
                "message_id": e.message_id and e.message_id[:36],
                "type": e.type and e.type[:40],
                "correlation_key": e.correlation_key and e.correlation_key[:64],
                "source": e.source and e.source[:10],
                "target": e.target and e.target[:80],
                "outcome": e.outcome and e.outcome[:20],
                "duration_ms": e.duration_ms,
                "error": e.error,
                "detail": e.detail_json if e.detail_json is not None else (
                    json.dumps(dict(e.detail), default=str) if e.detail else None),
                "latency_ms": e.latency_ms,
            }
            for e in entries
        ],
    )


#: Bodies up to this many bytes ride in a ``published`` entry; a larger one is referred to by
#: its SHA-256 and size (a TEXT column holds 64 KiB on MariaDB).
MAX_PAYLOAD = 48 * 1024


def payload(body: str) -> dict[str, Any]:
    """What a journal entry keeps of a message ``body``: the message itself (as JSON) when
    it is small enough, else a reference (its SHA-256 and size)."""
    size = len(body.encode("utf-8"))
    if size <= MAX_PAYLOAD:
        try:
            return {"body": json.loads(body)}
        except ValueError:
            return {"body": body}
    return {"body_sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
            "body_bytes": size, "body_omitted": f"larger than {MAX_PAYLOAD} bytes"}


def published(message_id: str, type: str, correlation_key: str, routing_key: str, body: str,
              at: dt.datetime | None = None) -> Entry:
    """The ``published`` entry of a message the bus took, with its payload (see
    :func:`payload`), so that a trace shows what was sent.

    ``body`` comes from the outbox, which holds only JSON objects the hub encoded itself, so
    a body small enough is set into the entry's JSON as it is: parsing it and encoding it
    again was 7% of the daemon's work in a drain."""
    if body.startswith("{") and body.endswith("}") and len(body.encode("utf-8")) <= MAX_PAYLOAD:
        detail = '{"body": ' + body + "}"
    else:
        detail = json.dumps(payload(body), default=str)
    return Entry(event="published", message_id=message_id, type=type,
                 correlation_key=correlation_key, source=routing_key.split(".", 1)[0],
                 target=routing_key, detail_json=detail, at=at)


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
