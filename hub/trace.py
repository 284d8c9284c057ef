"""Trace: everything that happened to one order, ERP document or batch, across the CRM, the
ERP and the LIMS, in time order (``hub trace KEY``; the API's ``/api/v1/trace/{key}``).

:func:`trace` is a pure read: it writes nothing and returns a :class:`Trace`, whose
:meth:`Trace.to_json` is plain JSON. A key is one of

- an order number: the CRM's ``SO-2026-000123``, which is the order's correlation key on the
  bus, or ``ERP-<DocNum>`` for an order entered in the ERP;
- an ERP DocNum: ``1234`` or ``ERP-1234``. With the ERP's engine the order is found by
  DocNum (ORDR), then through the hub's cross-reference (``id_xref``) its CRM order and
  number; with the CRM's engine also by the CRM's ``erp_order_number``. With neither, only
  orders entered in the ERP (key ``ERP-<DocNum>``) are found;
- a batch number: the deliveries that shipped it (journal ``observed`` entries, the
  certificate service's entitlements, the ERP's IBT1), what happened to those delivery
  messages, and the batch's certificates.

Anything else (empty, longer than 64 characters, blanks at either end, control characters,
an injection attempt) is answered with an empty trace, "nothing known about KEY"; keys only
ever reach a database as bound parameters, and every match is re-checked exactly in Python
(MariaDB's collations ignore case and trailing blanks).

The timeline (``events``, oldest first; ``system`` is where it happened):

================  ===========================================================================
event             where it comes from
================  ===========================================================================
observed          journal, written by the ERP poller with each ``delivery.posted`` message
                  (:func:`hub.journal.observed`): delivery number, customer, date, and every
                  batch with product and quantity; under the order's key and each batch's
published         journal, the outbox relay: a message went on the bus, with its body in
                  ``detail.body`` (a large one by SHA-256 and size). By type and source:
                  ``order.changed`` from crm is the CRM change; from erp the ERP's change
                  (confirmed, on hold, promised, shipped ...); ``order.status`` from erp is the
                  ERP's answer to a CRM order; ``delivery.posted`` a delivery
applied           journal, the bus's consumer: a part applied the message; ``erp-applier`` is
                  the ERP write, ``crm-applier`` the CRM write, ``certificates`` recorded
                  who got the batch
retried           journal, the consumer: applying failed for a reason that may pass (with the
                  reason, attempt and delay)
dead_lettered     journal, the consumer (or the dead-letter relay for what the broker gave up
                  on): the message was parked, with the reason. A dead letter the journal
                  does not know (a source row a poller refused, a pruned journal) is shown
                  from the ``dead_letter`` table itself
edited            journal, ``hub dead-letters edit``: the message corrected before it was
                  replayed, by whom, the fields changed and both bodies
replayed          journal, ``hub dead-letters replay``: sent back to its consumer, and by whom
discarded         journal, ``hub dead-letters discard``: given up, by whom and why
certificate       journal, the certificate service, under the batch number: a certificate
                  issued (number, version, customer) or blocked (why); other certificate
                  events recorded under the batch number appear as they are
downloaded        journal, the certificate API, under the batch number: a certificate served
                  (PDF or the JSON list), to whom (token subject), which number, version,
                  language; an order's trace shows those of its customer's certificates
conflict          hub store ``conflict``: a field both sides changed since the last sync, the
                  CRM's, the ERP's and the last synced value, and which side won
================  ===========================================================================

Events are ordered by the time they were recorded, with one correction: the relay records a
publish once the bus confirmed it, by when a consumer may have applied the message already,
so such a publish is placed just before the message's first consumer entry (its own time is
kept in ``recorded_at``).

Besides the timeline a trace lists the conflicts, the dead letters still open, and the
current state in each system whose engine is given: the CRM order (status,
integration_status/message, erp_order_number) and its shipments with batches; the ERP order
(DocNum, Confirmed, DocStatus, CANCELED ...) and its deliveries with batches; the LIMS lot of a
batch; and from the hub's store the batch's entitlements and certificates.

The result models and the readable lines are in :mod:`hub.trace_view`, the reads of the
hub store and the systems in :mod:`hub.trace_reads`; this module resolves the key and
gathers.

A published message's content is in its event's ``detail.body`` (summarised in the line:
an ``order.changed``'s status, lines, DocNum, promised date ...; an ``order.status``'s
outcome), so the trace shows what was sent as well as the current values in the systems.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from connectors.erp.common import doc_key
from hub.settings import Settings
from hub.store.db import Store
from hub.store.engine import READ_ONLY, make_engine
from hub.store.tables import conflict, dead_letter, entitlement, journal
from hub.trace_reads import (
    CRM_ORDER,
    ENTITLEMENT,
    ERP_ORDER,
    canonical_order,
    certificates_of,
    conflicts_of,
    crm_order_row,
    crm_shipments,
    erp_batch_deliveries,
    erp_deliveries,
    erp_order_row,
    lims_lot,
    order_locals,
    row_dict,
)
from hub.trace_view import (
    SYSTEMS,
    ConflictInfo,
    DeadLetterInfo,
    Event,
    OrderRef,
    Trace,
    conflict_event,
    conflict_info,
    for_customer,
    journal_event,
    letter_event,
    letter_info,
    parse_detail,
    render,
    utc,
    utc_values,
)

__all__ = [
    "ConflictInfo",
    "DeadLetterInfo",
    "Event",
    "OrderRef",
    "Trace",
    "plausible_key",
    "render",
    "trace",
    "trace_with_settings",
]

#: The longest correlation key (journal, outbox, dead letters).
MAX_KEY = 64
#: The longest batch number (IBT1.BatchNum, LOT.LOT_NAME).
MAX_BATCH = 36
_DOC_NUM = re.compile(r"(?:ERP-)?([0-9]{1,9})")

T = TypeVar("T")


def plausible_key(key: object) -> bool:
    """False for what cannot be an order number, DocNum or batch number: not a string, empty,
    over 64 characters, blanks at either end, control or unprintable characters, or
    characters outside the Basic Multilingual Plane."""
    return (
        isinstance(key, str)
        and 0 < len(key) <= MAX_KEY
        and key == key.strip()
        and key.isprintable()
        and all(ord(ch) < 0x10000 for ch in key)
    )


def _shown(key: object) -> str:
    text = key if isinstance(key, str) else repr(key)
    return repr(text if len(text) <= 80 else text[:80] + "...")


def _nothing(key: object, errors: Sequence[str] = ()) -> Trace:
    return Trace(key=key if isinstance(key, str) else repr(key), found=False, kind="unknown",
                 message=f"nothing known about {_shown(key)}", errors=list(errors))


# -- entry points ----------------------------------------------------------------------------


def trace(store: Store, key: str, *, systems: Mapping[str, Engine] | None = None,
          limit: int = 500) -> Trace:
    """Everything known about ``key`` (order number, ERP DocNum or batch number).

    ``systems`` maps ``crm`` / ``erp`` / ``lims`` to their engines; each one given adds its
    current state and lookups (a system that cannot be read is listed in ``errors``). At
    most ``limit`` events are returned, the newest. Raises only when the hub's store cannot
    be read (:class:`~hub.errors.HubError`).
    """
    if not plausible_key(key):
        return _nothing(key)
    return _Tracer(store, key, systems or {}, max(1, limit)).run()


def trace_with_settings(settings: Settings, key: str, *, limit: int = 500) -> Trace:
    """:func:`trace` on the configured store and systems (for the command line). SQLite
    files that do not exist are not created: such a system is left out."""
    if not plausible_key(key):
        return _nothing(key)
    if _missing_sqlite(settings.database):
        return _nothing(key, [f"no hub store at {settings.describe()['database']}"])
    store = Store(settings.database, connect_timeout=settings.connect_timeout)
    engines: dict[str, Engine] = {}
    try:
        for name in SYSTEMS:
            url = settings.system_url(name)
            if not _missing_sqlite(url):
                engines[name] = make_engine(url, connect_timeout=settings.connect_timeout)
        return trace(store, key, systems=engines, limit=limit)
    finally:
        for engine in engines.values():
            engine.dispose()
        store.dispose()


def _missing_sqlite(url: str) -> bool:
    parsed = make_url(url)
    database = parsed.database or ""
    return (parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
            and not database.startswith("file:") and not Path(database).exists())


# -- gathering -------------------------------------------------------------------------------


def _dedupe(values: Iterable[str | None]) -> list[str]:
    return [v for v in dict.fromkeys(v for v in values if v) if plausible_key(v)]


class _Tracer:
    def __init__(self, store: Store, key: str, systems: Mapping[str, Engine],
                 limit: int) -> None:
        self.store = store
        self.key = key
        self.systems = systems
        self.limit = limit
        self.errors: list[str] = []
        self.state: dict[str, Any] = {}
        self.truncated = False

    # -- helpers -----------------------------------------------------------------------------

    def _read(self, system: str, what: str, read: Callable[[Connection], T]) -> T | None:
        """``read`` on ``system``'s engine in a read-only transaction; None when the engine
        is not given or the system cannot be read (noted in ``errors``)."""
        engine = self.systems.get(system)
        if engine is None:
            return None
        try:
            with engine.connect() as conn:
                conn = conn.execution_options(**{READ_ONLY: True})
                try:
                    return read(conn)
                finally:
                    conn.rollback()
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc)
            self.errors.append(f"{system}: {what}: {type(exc).__name__}: "
                               f"{reason.splitlines()[0][:200] if reason else ''}")
            return None

    def _journal(self, hub: Connection, keys: Sequence[str] = (),
                 message_ids: Sequence[str] = ()) -> list[Any]:
        """Journal rows under ``keys`` or of ``message_ids``, newest first (limit + 1)."""
        rows: dict[int, Any] = {}
        for column, wanted in ((journal.c.correlation_key, keys),
                               (journal.c.message_id, message_ids)):
            if not wanted:
                continue
            found = hub.execute(select(journal).where(column.in_(wanted))
                                .order_by(journal.c.at.desc(), journal.c.id.desc())
                                .limit(self.limit + 1)).all()
            self.truncated = self.truncated or len(found) > self.limit
            rows.update((r.id, r) for r in found[:self.limit]
                        if r._mapping[column.name] in wanted)
        return list(rows.values())

    @staticmethod
    def _letters(hub: Connection, keys: Sequence[str], message_ids: Sequence[str] = ()
                 ) -> list[Any]:
        found: dict[int, Any] = {}
        if keys:
            found.update((r.id, r) for r in hub.execute(
                select(dead_letter).where(dead_letter.c.correlation_key.in_(keys))
                .order_by(dead_letter.c.id.desc()).limit(200)) if r.correlation_key in keys)
        if message_ids:
            found.update((r.id, r) for r in hub.execute(
                select(dead_letter).where(dead_letter.c.message_id.in_(message_ids))
                .order_by(dead_letter.c.id.desc()).limit(200)) if r.message_id in message_ids)
        return sorted(found.values(), key=lambda r: r.id)

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> Trace:
        order = self._resolve_order()
        if order is not None:
            return self._order_trace(*order)
        batch = self._batch_trace()
        if batch is not None:
            return batch
        return self._message_trace()

    def _resolve_order(self) -> tuple[OrderRef, list[str], Any, Any] | None:
        """The order ``key`` names, with its correlation keys and its CRM and ERP rows (when
        those engines are given); None when it names no order."""
        key = self.key
        match = _DOC_NUM.fullmatch(key)
        doc_num = int(match.group(1)) if match else None
        crm_row = self._read("crm", "read the order", lambda c: crm_order_row(
            c, number=key, erp_number=None if doc_num is None else str(doc_num)))
        erp_row = None
        if doc_num is not None:
            erp_row = self._read("erp", "read the order", lambda c: erp_order_row(
                c, doc_num=doc_num))
        with self.store.reading("hub store: trace") as hub:
            cid = None
            if crm_row is not None:
                cid = canonical_order(hub, "crm", crm_row.order_id)
            if cid is None and erp_row is not None:
                cid = canonical_order(hub, "erp", doc_key(erp_row.DocEntry))
            if cid is None:
                cid = next((r.canonical_id for r in hub.execute(
                    select(conflict.c.canonical_id, conflict.c.correlation_key)
                    .where(conflict.c.correlation_key == key, conflict.c.kind == "order")
                    .limit(5)) if r.correlation_key == key), None)
            locals_ = order_locals(hub, cid) if cid else {}
            # Keys the journal knows as an order's: the key itself, or ERP-<DocNum>.
            candidates = _dedupe([key, None if doc_num is None else f"ERP-{doc_num}"])
            known = {r.correlation_key for r in hub.execute(
                select(journal.c.correlation_key).where(
                    journal.c.correlation_key.in_(candidates),
                    journal.c.type.like("order.%")).limit(50))}
            journaled = [k for k in candidates if k in known]
        crm_id = crm_row.order_id if crm_row is not None else locals_.get("crm")
        if crm_row is None and crm_id:
            crm_row = self._read("crm", "read the order",
                                 lambda c: crm_order_row(c, order_id=crm_id))
        erp_local = locals_.get("erp")
        if erp_row is None and erp_local and erp_local.isdigit():
            erp_row = self._read("erp", "read the order",
                                 lambda c: erp_order_row(c, doc_entry=int(erp_local)))
        if crm_row is None and erp_row is None and cid is None and not journaled:
            return None
        ref = OrderRef(
            order_number=crm_row.order_number if crm_row is not None else next(
                iter(journaled), None),
            crm_id=crm_id, canonical_id=cid,
            erp_doc_entry=erp_row.DocEntry if erp_row is not None else (
                int(erp_local) if erp_local and erp_local.isdigit() else None),
            erp_doc_num=erp_row.DocNum if erp_row is not None else (
                int(crm_row.erp_order_number) if crm_row is not None
                and (crm_row.erp_order_number or "").isdigit() else doc_num),
            customer=erp_row.CardCode if erp_row is not None else None,
        )
        keys = _dedupe([
            *journaled, key if doc_num is None else None,
            crm_row.order_number if crm_row is not None else None,
            (erp_row.NumAtCard or f"ERP-{erp_row.DocNum}") if erp_row is not None else None,
        ]) or [key]
        return ref, keys, crm_row, erp_row

    def _order_state(self, system: str, children: str, row: Any, columns: Sequence[str],
                     read: Callable[[Connection], tuple[Any, list[dict[str, Any]]]]
                     ) -> list[dict[str, Any]]:
        """The order as ``system`` has it now (``row`` if it cannot be read again) with its
        ``children`` (shipments or deliveries), kept in ``state``; returns the children."""
        fresh, found = self._read(system, f"read the order and its {children}", read) or (
            None, [])
        self.state[system] = {**row_dict(fresh or row, columns), children: found}
        return found

    def _order_trace(self, ref: OrderRef, keys: list[str], crm_row: Any, erp_row: Any
                     ) -> Trace:
        # The journal first, the systems after: a step is journaled once it is committed
        # in its system, so the state shown is at least as new as every entry shown (an
        # "applied" delivery never comes without its shipment).
        with self.store.reading("hub store: trace") as hub:
            rows = self._journal(hub, keys)
        deliveries: list[dict[str, Any]] = []
        if crm_row is not None:
            order_id = crm_row.order_id
            self._order_state(
                "crm", "shipments", crm_row, CRM_ORDER,
                lambda c: (crm_order_row(c, order_id=order_id), crm_shipments(c, order_id)))
        if erp_row is not None:
            doc_entry = erp_row.DocEntry
            deliveries = self._order_state(
                "erp", "deliveries", erp_row, ERP_ORDER,
                lambda c: (erp_order_row(c, doc_entry=doc_entry), erp_deliveries(c, doc_entry)))
        letter_keys = [*keys, doc_key(ref.erp_doc_entry)] if ref.erp_doc_entry else keys
        with self.store.reading("hub store: trace") as hub:
            batches = _dedupe([
                *(str(b.get("batch")) for r in rows if r.event == "observed"
                  for b in parse_detail(r.detail).get("batches", []) if isinstance(b, dict)),
                *(b["batch"] for d in deliveries for ln in d["lines"] for b in ln["batches"]),
                *(ln["batch_number"] for s in self.state.get("crm", {}).get("shipments", [])
                  for ln in s["lines"]),
                *(r.batch_number for r in hub.execute(
                    select(entitlement.c.batch_number, entitlement.c.order_key)
                    .where(entitlement.c.order_key.in_(keys)).limit(500))
                  if r.order_key in keys),
            ])
            customer = ref.customer or next(
                (str(parse_detail(r.detail).get("customer")) for r in rows
                 if r.event == "observed" and parse_detail(r.detail).get("customer")), None)
            ref.customer = customer
            # What happened to the order's batches afterwards (certificates): not the
            # batch-keyed copies of the deliveries, which the order's own entries show.
            batch_rows = [r for r in self._journal(hub, batches) if r.event != "observed"
                          and for_customer(parse_detail(r.detail), customer)]
            conflicts = conflicts_of(hub, keys, ref.canonical_id)
            letters = self._letters(hub, [*letter_keys, *batches])
            letters = [d for d in letters if d.correlation_key not in batches
                       or for_customer(parse_detail(d.body), customer)]
            if batches:
                self.state["hub"] = {"certificates": [
                    c for c in certificates_of(hub, batches)
                    if customer is None or c["customer"] == customer]}
        number = ref.order_number or (f"ERP-{ref.erp_doc_num}" if ref.erp_doc_num else self.key)
        where = [f"CRM order {ref.order_number}" if ref.order_number and crm_row is not None
                 else None,
                 f"ERP DocNum {ref.erp_doc_num}" if ref.erp_doc_num is not None else None]
        return self._finish(
            kind="order", message=f"order {number}"
            + (f" ({', '.join(w for w in where if w)})" if any(where) else ""),
            order=ref, keys=keys, orders=keys[:1] if ref.order_number is None
            else [ref.order_number], batches=batches, rows=[*rows, *batch_rows],
            conflicts=conflicts, letters=letters)

    def _batch_trace(self) -> Trace | None:
        batch = self.key
        if len(batch) > MAX_BATCH:
            return None
        # The journal before the systems, as for an order.
        with self.store.reading("hub store: trace") as hub:
            own = self._journal(hub, [batch])
            observed = [r for r in own if r.event == "observed"]
            message_ids = _dedupe(r.message_id for r in observed)
            rows = own + [r for r in self._journal(hub, (), message_ids)
                          if r.event != "observed"]
        deliveries = self._read("erp", "read deliveries of the batch",
                                lambda c: erp_batch_deliveries(c, batch)) or []
        lims = self._read("lims", "read the lot", lambda c: lims_lot(c, batch))
        with self.store.reading("hub store: trace") as hub:
            entitled = [row_dict(r, ENTITLEMENT) for r in hub.execute(
                select(entitlement).where(entitlement.c.batch_number == batch)
                .order_by(entitlement.c.delivery_date, entitlement.c.delivery_doc_num)
                .limit(500)) if r.batch_number == batch]
            certificates = certificates_of(hub, [batch])
            letters = self._letters(hub, [batch], message_ids)
        if not (own or deliveries or lims or entitled or certificates):
            return None
        orders = _dedupe([
            *(str(parse_detail(r.detail).get("order_key") or "") for r in observed),
            *(e["order_key"] for e in entitled),
            *(d["order_key"] for d in deliveries),
        ])
        if deliveries:
            self.state["erp"] = {"deliveries": deliveries}
        if lims is not None:
            self.state["lims"] = {"lot": lims}
        self.state["hub"] = {"entitlements": entitled, "certificates": certificates}
        shipped = f", shipped on order(s) {', '.join(orders)}" if orders else ""
        return self._finish(kind="batch", message=f"batch {batch}{shipped}", order=None,
                            keys=[batch], orders=orders, batches=[batch], rows=rows,
                            conflicts=[], letters=letters)

    def _message_trace(self) -> Trace:
        with self.store.reading("hub store: trace") as hub:
            rows = self._journal(hub, [self.key])
            letters = self._letters(hub, [self.key])
        if not rows and not letters:
            return _nothing(self.key, self.errors)
        return self._finish(kind="message", message=f"messages under key {self.key}",
                            order=None, keys=[self.key], orders=[], batches=[], rows=rows,
                            conflicts=[], letters=letters)

    def _finish(self, *, kind: Literal["order", "batch", "message"], message: str,
                order: OrderRef | None, keys: list[str], orders: list[str],
                batches: list[str], rows: Sequence[Any], conflicts: Sequence[Any],
                letters: Sequence[Any]) -> Trace:
        unique = {r.id: r for r in rows}
        in_journal = {(r.message_id, r.event) for r in unique.values()}
        # The relay records a publish once the bus confirmed it, and by then a consumer may
        # have applied the message already: a publish is placed before its consumers.
        consumed: dict[str, dt.datetime] = {}
        for r in unique.values():
            if r.message_id and r.event in ("applied", "retried", "dead_lettered"):
                at = utc(r.at)
                consumed[r.message_id] = min(at, consumed.get(r.message_id, at))

        # The relay stamps a batch when it starts reading the outbox, so a poller's commit
        # in that instant can look older than its own publish: a publish follows what the
        # poller observed with the message.
        seen = {r.message_id: utc(r.at) for r in unique.values()
                if r.event == "observed" and r.message_id}

        def when(r: Any) -> dt.datetime:
            at, first = utc(r.at), consumed.get(r.message_id or "")
            if r.event != "published":
                return at
            observed_at = seen.get(r.message_id or "")
            if observed_at is not None and at <= observed_at:
                at = observed_at + dt.timedelta(microseconds=1)
            if first is not None and first <= at:
                return first - dt.timedelta(microseconds=1)
            return at

        ranked = [((when(r), 0, r.id), journal_event(r, when(r))) for r in unique.values()]
        ranked += [((utc(d.dead_at), 1, d.id), letter_event(d)) for d in letters
                   if (d.message_id, "dead_lettered") not in in_journal]
        ranked += [((utc(c.at), 2, c.id), conflict_event(c)) for c in conflicts]
        ranked.sort(key=lambda pair: pair[0])
        events = [event for _, event in ranked]
        truncated = self.truncated or len(events) > self.limit
        return Trace(
            key=self.key, found=True, kind=kind, message=message, order=order, keys=keys,
            orders=orders, batches=batches, events=events[-self.limit:],
            conflicts=[conflict_info(c) for c in conflicts],
            dead_letters=[letter_info(d) for d in letters if d.status == "dead"],
            state=utc_values(self.state), truncated=truncated, errors=self.errors)
