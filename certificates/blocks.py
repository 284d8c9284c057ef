"""Certificates that cannot be issued: why (:func:`blockers`), and the record operations
see (a dead letter in :data:`BLOCKED_QUEUE` and a journal entry, once per batch, data and
reasons), resolved once a certificate of the batch is issued."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, select

from certificates.data import BatchQuality
from certificates.entitlements import Entitlement
from certificates.records import Blocked
from certificates.verdict import disagreements
from hub.errors import HubError
from hub.journal import Entry, record
from hub.store.db import Store
from hub.store.deadletters import DeadLetters, NewDeadLetter
from hub.store.tables import dead_letter

__all__ = ["BLOCKED_QUEUE", "BLOCKED_TYPE", "TARGET", "blockers", "record_block",
           "resolve_blocks"]

log = logging.getLogger(__name__)

#: Where blocked certificates show up in ``hub dead-letters list``.
BLOCKED_QUEUE = "certificates:blocked"
BLOCKED_TYPE = "certificate.blocked"
#: The journal's target of the certificate service's entries.
TARGET = "certificates"


def blockers(quality: BatchQuality, delivered: Sequence[Entitlement]) -> list[str]:
    """Why this data cannot be certified for these deliveries: the hub's verdicts disagree
    with the LIMS (:func:`certificates.verdict.disagreements`), or the ERP delivered the
    batch as another item than the lot's product. Empty when it can be."""
    reasons = list(disagreements(quality))
    for item in sorted({e.product_code for e in delivered}):
        if item != quality.product:
            reasons.append(f"the ERP delivered batch {quality.batch_number} as item {item}, "
                           f"but the LIMS lot is of product {quality.product}")
    return reasons


def record_block(store: Store, batch: str, digest: str, customers: Sequence[str],
             reasons: Sequence[str], *, code: str = Blocked.code) -> None:
    """Record why a certificate cannot be issued, once per batch, data and reasons: a
    dead letter operations see in ``hub dead-letters list`` and a journal entry."""
    reason = "; ".join(reasons)
    message_id = str(uuid.uuid5(
        uuid.NAMESPACE_URL, f"certificate-blocked/{batch}/{digest}/{reason}"))
    body = json.dumps({"batch": batch, "customers": list(customers),
                       "reasons": list(reasons)}, ensure_ascii=False).encode("utf-8")
    try:
        with store.begin() as conn:
            added = DeadLetters.add(conn, [NewDeadLetter(
                message_id=message_id, queue=BLOCKED_QUEUE,
                routing_key="hub.certificate.blocked", body=body, headers={},
                reason=f"certificate of batch {batch} not issued: {reason}",
                error_code=code, attempts=1, type=BLOCKED_TYPE, correlation_key=batch,
            )])
            if added:
                record(conn, [Entry(
                    event="certificate", message_id=message_id, type=BLOCKED_TYPE,
                    correlation_key=batch, source="hub", target=TARGET,
                    outcome="blocked", error=reason,
                    detail={"customers": list(customers)},
                )])
    except HubError as exc:
        log.warning("could not record why batch %s has no certificate: %s", batch, exc)
    else:
        if added:
            log.warning("certificate of batch %s blocked: %s", batch, reason)

def resolve_blocks(conn: Connection, batch: str, label: str) -> None:
    """Blocks of ``batch`` recorded earlier are over once a certificate is issued."""
    ids = conn.execute(select(dead_letter.c.id).where(
        dead_letter.c.queue == BLOCKED_QUEUE, dead_letter.c.correlation_key == batch,
        dead_letter.c.status == "dead")).scalars().all()
    for letter_id in ids:
        DeadLetters.resolve(conn, int(letter_id), status="discarded", by=TARGET,
                            note=f"certificate {label} issued")
