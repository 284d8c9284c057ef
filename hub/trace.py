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
published         journal, the outbox relay: a message went on the bus. By type and source:
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
replayed          journal, ``hub dead-letters replay``: sent back to its consumer, and by whom
discarded         journal, ``hub dead-letters discard``: given up, by whom and why
certificate       journal, the certificate service, under the batch number: a certificate
                  issued (number, version, customer) or blocked (why); other certificate
                  events recorded under the batch number appear as they are
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

What the journal does not hold: the content of order messages (which fields an
``order.changed`` carried, the DocNum and status in an ``order.status``); the trace shows
the current values from the systems instead.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from connectors.crm.schema import crm_order, crm_shipment, crm_shipment_line
from connectors.erp.schema import dln1, ibt1, odln, ordr
from connectors.lims.schema import lot
from hub.settings import Settings
from hub.store.db import Store
from hub.store.engine import READ_ONLY, make_engine
from hub.store.tables import certificate, conflict, dead_letter, entitlement, id_xref, journal

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
#: ERP document types in IBT1.BaseType / DLN1.BaseType.
_BASE_ORDER, _BASE_DELIVERY = 17, 15
_DOC_NUM = re.compile(r"(?:ERP-)?([0-9]{1,9})")
_QUEUE_PART = re.compile(r"([^.]+)\.p[0-9]+$")
_SYSTEMS: tuple[Literal["crm", "erp", "lims"], ...] = ("crm", "erp", "lims")

T = TypeVar("T")


# -- the result ------------------------------------------------------------------------------


class Event(BaseModel):
    """One step in the timeline."""

    at: dt.datetime = Field(..., description="When it was recorded (UTC)")
    system: str = Field(..., description="Where it happened: crm, erp, lims or hub")
    event: str = Field(..., description="observed, published, applied, retried, ...")
    summary: str = Field(..., description="One readable line")
    message_id: str | None = None
    type: str | None = Field(None, description="Message type, e.g. order.changed")
    key: str | None = Field(None, description="Correlation key it was recorded under")
    source: str | None = None
    target: str | None = Field(None, description="Queue, routing key or part")
    outcome: str | None = None
    duration_ms: float | None = None
    error: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    origin: Literal["journal", "conflict", "dead_letter"] = "journal"
    recorded_at: dt.datetime | None = Field(
        None, description="When the journal recorded it, if not ``at``: the relay records a "
        "publish once the bus confirmed it, when a consumer may have applied the message "
        "already; such a publish is placed just before the first consumer's entry")


class OrderRef(BaseModel):
    """The order a key resolved to, by each system's identifiers (what is known of them)."""

    order_number: str | None = Field(None, description="CRM order_number")
    crm_id: str | None = Field(None, description="CRM order_id")
    canonical_id: str | None = Field(None, description="The hub's id of the order")
    erp_doc_entry: int | None = None
    erp_doc_num: int | None = None
    customer: str | None = None


class ConflictInfo(BaseModel):
    at: dt.datetime
    key: str | None
    field: str
    crm_value: Any
    erp_value: Any
    base_value: Any
    winner: str
    message_id: str | None


class DeadLetterInfo(BaseModel):
    id: int
    dead_at: dt.datetime
    queue: str
    type: str | None
    key: str | None
    message_id: str
    reason: str
    error_code: str
    attempts: int


class Trace(BaseModel):
    """Everything known about one key; :meth:`to_json` for the API and ``--json``."""

    key: str
    found: bool
    kind: Literal["order", "batch", "message", "unknown"]
    message: str = Field(..., description="What the key is, or that nothing is known of it")
    order: OrderRef | None = None
    keys: list[str] = Field(default_factory=list,
                            description="Correlation keys whose journal was read")
    orders: list[str] = Field(default_factory=list, description="Order keys involved")
    batches: list[str] = Field(default_factory=list, description="Batch numbers involved")
    events: list[Event] = Field(default_factory=list, description="Oldest first")
    conflicts: list[ConflictInfo] = Field(default_factory=list)
    dead_letters: list[DeadLetterInfo] = Field(default_factory=list,
                                               description="Still open (status dead)")
    state: dict[str, Any] = Field(default_factory=dict,
                                  description="Current state: crm, erp, lims, hub")
    truncated: bool = Field(False, description="Older events left out (the limit)")
    errors: list[str] = Field(default_factory=list,
                              description="Systems that could not be read")

    def to_json(self) -> dict[str, Any]:
        """The trace as plain JSON values."""
        return self.model_dump(mode="json")


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
        for name in _SYSTEMS:
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


def _doc_key(doc_entry: int) -> str:
    """The ERP order's key in ``id_xref`` (as :func:`connectors.erp.sync.doc_key`)."""
    return f"{doc_entry:012d}"


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _detail(text: str | None) -> dict[str, Any]:
    value = _json(text)
    return value if isinstance(value, dict) else ({} if value is None else {"value": value})


def _row_dict(row: Any, columns: Iterable[str]) -> dict[str, Any]:
    mapping = row._mapping
    return {name: mapping[name] for name in columns}


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
        crm_row = self._read("crm", "read the order", lambda c: _crm_order(
            c, number=key, erp_number=None if doc_num is None else str(doc_num)))
        erp_row = None
        if doc_num is not None:
            erp_row = self._read("erp", "read the order", lambda c: _erp_order(
                c, doc_num=doc_num))
        with self.store.begin() as hub:
            cid = None
            if crm_row is not None:
                cid = _canonical(hub, "crm", crm_row.order_id)
            if cid is None and erp_row is not None:
                cid = _canonical(hub, "erp", _doc_key(erp_row.DocEntry))
            if cid is None:
                cid = next((r.canonical_id for r in hub.execute(
                    select(conflict.c.canonical_id, conflict.c.correlation_key)
                    .where(conflict.c.correlation_key == key, conflict.c.kind == "order")
                    .limit(5)) if r.correlation_key == key), None)
            locals_ = _locals(hub, cid) if cid else {}
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
                                 lambda c: _crm_order(c, order_id=crm_id))
        erp_local = locals_.get("erp")
        if erp_row is None and erp_local and erp_local.isdigit():
            erp_row = self._read("erp", "read the order",
                                 lambda c: _erp_order(c, doc_entry=int(erp_local)))
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

    def _order_trace(self, ref: OrderRef, keys: list[str], crm_row: Any, erp_row: Any
                     ) -> Trace:
        if crm_row is not None:
            shipments = self._read("crm", "read shipments",
                                   lambda c: _crm_shipments(c, crm_row.order_id)) or []
            self.state["crm"] = {**_row_dict(crm_row, _CRM_ORDER), "shipments": shipments}
        deliveries: list[dict[str, Any]] = []
        if erp_row is not None:
            deliveries = self._read("erp", "read deliveries",
                                    lambda c: _erp_deliveries(c, erp_row.DocEntry)) or []
            self.state["erp"] = {**_row_dict(erp_row, _ERP_ORDER), "deliveries": deliveries}
        letter_keys = [*keys, _doc_key(ref.erp_doc_entry)] if ref.erp_doc_entry else keys
        with self.store.begin() as hub:
            rows = self._journal(hub, keys)
            batches = _dedupe([
                *(str(b.get("batch")) for r in rows if r.event == "observed"
                  for b in _detail(r.detail).get("batches", []) if isinstance(b, dict)),
                *(b["batch"] for d in deliveries for ln in d["lines"] for b in ln["batches"]),
                *(ln["batch_number"] for s in self.state.get("crm", {}).get("shipments", [])
                  for ln in s["lines"]),
                *(r.batch_number for r in hub.execute(
                    select(entitlement.c.batch_number, entitlement.c.order_key)
                    .where(entitlement.c.order_key.in_(keys)).limit(500))
                  if r.order_key in keys),
            ])
            customer = ref.customer or next(
                (str(_detail(r.detail).get("customer")) for r in rows
                 if r.event == "observed" and _detail(r.detail).get("customer")), None)
            ref.customer = customer
            # What happened to the order's batches afterwards (certificates): not the
            # batch-keyed copies of the deliveries, which the order's own entries show.
            batch_rows = [r for r in self._journal(hub, batches) if r.event != "observed"
                          and _for_customer(_detail(r.detail), customer)]
            conflicts = _conflicts(hub, keys, ref.canonical_id)
            letters = self._letters(hub, [*letter_keys, *batches])
            letters = [d for d in letters if d.correlation_key not in batches
                       or _for_customer(_detail(d.body), customer)]
            if batches:
                self.state["hub"] = {"certificates": [
                    c for c in _certificates(hub, batches)
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
        deliveries = self._read("erp", "read deliveries of the batch",
                                lambda c: _erp_batch_deliveries(c, batch)) or []
        lims = self._read("lims", "read the lot", lambda c: _lims_lot(c, batch))
        with self.store.begin() as hub:
            own = self._journal(hub, [batch])
            observed = [r for r in own if r.event == "observed"]
            message_ids = _dedupe(r.message_id for r in observed)
            rows = own + [r for r in self._journal(hub, (), message_ids)
                          if r.event != "observed"]
            entitled = [_row_dict(r, _ENTITLEMENT) for r in hub.execute(
                select(entitlement).where(entitlement.c.batch_number == batch)
                .order_by(entitlement.c.delivery_date, entitlement.c.delivery_doc_num)
                .limit(500)) if r.batch_number == batch]
            certificates = _certificates(hub, [batch])
            letters = self._letters(hub, [batch], message_ids)
        if not (own or deliveries or lims or entitled or certificates):
            return None
        orders = _dedupe([
            *(str(_detail(r.detail).get("order_key") or "") for r in observed),
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
        with self.store.begin() as hub:
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
                at = _utc(r.at)
                consumed[r.message_id] = min(at, consumed.get(r.message_id, at))

        def when(r: Any) -> dt.datetime:
            at, first = _utc(r.at), consumed.get(r.message_id or "")
            if r.event == "published" and first is not None and first <= at:
                return first - dt.timedelta(microseconds=1)
            return at

        ranked = [((when(r), 0, r.id), _journal_event(r, when(r))) for r in unique.values()]
        ranked += [((_utc(d.dead_at), 1, d.id), _letter_event(d)) for d in letters
                   if (d.message_id, "dead_lettered") not in in_journal]
        ranked += [((_utc(c.at), 2, c.id), _conflict_event(c)) for c in conflicts]
        ranked.sort(key=lambda pair: pair[0])
        events = [event for _, event in ranked]
        truncated = self.truncated or len(events) > self.limit
        return Trace(
            key=self.key, found=True, kind=kind, message=message, order=order, keys=keys,
            orders=orders, batches=batches, events=events[-self.limit:],
            conflicts=[_conflict_info(c) for c in conflicts],
            dead_letters=[_letter_info(d) for d in letters if d.status == "dead"],
            state=_utc_values(self.state), truncated=truncated, errors=self.errors)


def _utc_values(value: Any) -> Any:
    """``value`` with every naive datetime (the systems' UTC stamps) marked UTC."""
    if isinstance(value, dict):
        return {k: _utc_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utc_values(v) for v in value]
    if isinstance(value, dt.datetime):
        return _utc(value)
    return value


def _for_customer(detail: Mapping[str, Any], customer: str | None) -> bool:
    """False for a batch's event that names other customers only (a certificate of the
    same batch issued for someone else)."""
    if customer is None:
        return True
    named = [detail.get("customer"), *(detail.get("customers") or [])]
    named = [str(c) for c in named if c]
    return not named or customer in named


# -- hub store reads -------------------------------------------------------------------------


def _canonical(hub: Connection, system: str, local_key: str) -> str | None:
    for row in hub.execute(select(id_xref.c.canonical_id, id_xref.c.local_key).where(
            id_xref.c.kind == "order", id_xref.c.system == system,
            id_xref.c.local_key == local_key)):
        if row.local_key == local_key:
            return str(row.canonical_id)
    return None


def _locals(hub: Connection, canonical_id: str) -> dict[str, str]:
    return {r.system: r.local_key for r in hub.execute(
        select(id_xref.c.system, id_xref.c.local_key).where(
            id_xref.c.kind == "order", id_xref.c.canonical_id == canonical_id))}


def _conflicts(hub: Connection, keys: Sequence[str], canonical_id: str | None) -> list[Any]:
    found = {r.id: r for r in hub.execute(
        select(conflict).where(conflict.c.correlation_key.in_(keys))
        .order_by(conflict.c.id.desc()).limit(500)) if r.correlation_key in keys}
    if canonical_id:
        found.update((r.id, r) for r in hub.execute(
            select(conflict).where(conflict.c.kind == "order",
                                   conflict.c.canonical_id == canonical_id)
            .order_by(conflict.c.id.desc()).limit(500)))
    return sorted(found.values(), key=lambda r: r.id)


_ENTITLEMENT = ("customer", "customer_name", "order_key", "delivery_doc_num", "delivery_line",
                "delivery_date", "product_code", "quantity", "uom", "recorded_at")


def _certificates(hub: Connection, batches: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"number": r.number, "version": r.version, "batch_number": r.batch_number,
         "customer": r.customer, "issued_at": r.issued_at, "sha256": r.sha256,
         "superseded_by": r.superseded_by, "superseded_at": r.superseded_at}
        for r in hub.execute(
            select(certificate.c.number, certificate.c.version, certificate.c.batch_number,
                   certificate.c.customer, certificate.c.issued_at, certificate.c.sha256,
                   certificate.c.superseded_by, certificate.c.superseded_at)
            .where(certificate.c.batch_number.in_(batches))
            .order_by(certificate.c.batch_number, certificate.c.customer,
                      certificate.c.version).limit(500))
        if r.batch_number in batches
    ]


# -- system reads ----------------------------------------------------------------------------

_CRM_ORDER = ("order_id", "order_number", "status", "integration_status",
              "integration_message", "erp_order_number", "promised_date", "version",
              "modified_at", "modified_by")
_ERP_ORDER = ("DocEntry", "DocNum", "CardCode", "NumAtCard", "Confirmed", "DocStatus",
              "CANCELED", "DocDueDate", "U_CRM_ID", "UpdateDate", "UserSign2")


def _crm_order(conn: Connection, *, number: str | None = None, erp_number: str | None = None,
               order_id: str | None = None) -> Any:
    """The CRM order with ``order_id``, or numbered ``number``, or else with ERP number
    ``erp_number``; None when there is none."""
    columns = [crm_order.c[name] for name in _CRM_ORDER]
    if order_id is not None:
        return next((r for r in conn.execute(select(*columns).where(
            crm_order.c.order_id == order_id)) if r.order_id == order_id), None)
    if number is not None and len(number) <= 20:
        found = next((r for r in conn.execute(select(*columns).where(
            crm_order.c.order_number == number)) if r.order_number == number), None)
        if found is not None:
            return found
    if erp_number is not None:
        return next((r for r in conn.execute(select(*columns).where(
            crm_order.c.erp_order_number == erp_number).limit(5))
            if r.erp_order_number == erp_number), None)
    return None


def _crm_shipments(conn: Connection, order_id: str) -> list[dict[str, Any]]:
    heads = conn.execute(select(crm_shipment).where(crm_shipment.c.order_id == order_id)
                         .order_by(crm_shipment.c.shipped_on,
                                   crm_shipment.c.erp_delivery_number)).all()
    lines: dict[str, list[dict[str, Any]]] = {}
    if heads:
        for ln in conn.execute(select(crm_shipment_line).where(
                crm_shipment_line.c.shipment_id.in_([h.shipment_id for h in heads]))
                .order_by(crm_shipment_line.c.line_no, crm_shipment_line.c.batch_number)):
            lines.setdefault(ln.shipment_id, []).append(
                {"line_no": ln.line_no, "product_code": ln.product_code,
                 "batch_number": ln.batch_number, "quantity": ln.quantity})
    return [{"erp_delivery_number": h.erp_delivery_number, "shipped_on": h.shipped_on,
             "lines": lines.get(h.shipment_id, [])} for h in heads]


def _erp_order(conn: Connection, *, doc_num: int | None = None,
               doc_entry: int | None = None) -> Any:
    columns = [ordr.c[name] for name in _ERP_ORDER]
    if doc_entry is not None:
        return conn.execute(select(*columns).where(ordr.c.DocEntry == doc_entry)).first()
    return conn.execute(select(*columns).where(ordr.c.DocNum == doc_num)).first()


def _erp_deliveries(conn: Connection, doc_entry: int) -> list[dict[str, Any]]:
    """The deliveries of ERP order ``doc_entry``, with their lines and batches."""
    lines = conn.execute(
        select(dln1.c.DocEntry, dln1.c.LineNum, dln1.c.BaseLine, dln1.c.ItemCode,
               dln1.c.Quantity)
        .where(dln1.c.BaseType == _BASE_ORDER, dln1.c.BaseEntry == doc_entry)
        .order_by(dln1.c.DocEntry, dln1.c.LineNum)).all()
    return _deliveries(conn, lines)


def _deliveries(conn: Connection, lines: Sequence[Any],
                only_batch: str | None = None) -> list[dict[str, Any]]:
    entries = sorted({ln.DocEntry for ln in lines})
    if not entries:
        return []
    heads = {h.DocEntry: h for h in conn.execute(
        select(odln.c.DocEntry, odln.c.DocNum, odln.c.CardCode, odln.c.DocDate,
               odln.c.UpdateDate).where(odln.c.DocEntry.in_(entries)))}
    batches: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for b in conn.execute(select(ibt1.c.BaseEntry, ibt1.c.BaseLinNum, ibt1.c.BatchNum,
                                 ibt1.c.Quantity)
                          .where(ibt1.c.BaseType == _BASE_DELIVERY,
                                 ibt1.c.BaseEntry.in_(entries))
                          .order_by(ibt1.c.BaseEntry, ibt1.c.BaseLinNum, ibt1.c.BatchNum)):
        if only_batch is None or b.BatchNum == only_batch:
            batches.setdefault((b.BaseEntry, b.BaseLinNum), []).append(
                {"batch": b.BatchNum, "quantity": b.Quantity})
    out: list[dict[str, Any]] = []
    for entry in entries:
        head = heads.get(entry)
        if head is None:
            continue
        mine = [ln for ln in lines if ln.DocEntry == entry]
        out.append({
            "DocEntry": head.DocEntry, "DocNum": head.DocNum, "CardCode": head.CardCode,
            "DocDate": head.DocDate, "UpdateDate": head.UpdateDate,
            "lines": [{"LineNum": ln.LineNum, "BaseLine": ln.BaseLine,
                       "ItemCode": ln.ItemCode, "Quantity": ln.Quantity,
                       "batches": batches.get((entry, ln.LineNum), [])} for ln in mine
                      if only_batch is None or batches.get((entry, ln.LineNum))],
        })
    return out


def _erp_batch_deliveries(conn: Connection, batch: str) -> list[dict[str, Any]]:
    """The ERP deliveries that shipped ``batch``, each with the order it served."""
    found = [(b.BaseEntry, b.BaseLinNum) for b in conn.execute(
        select(ibt1.c.BaseEntry, ibt1.c.BaseLinNum, ibt1.c.BatchNum).where(
            ibt1.c.BatchNum == batch, ibt1.c.BaseType == _BASE_DELIVERY).limit(500))
        if b.BatchNum == batch]
    if not found:
        return []
    wanted = set(found)
    lines = [ln for ln in conn.execute(
        select(dln1.c.DocEntry, dln1.c.LineNum, dln1.c.BaseLine, dln1.c.BaseEntry,
               dln1.c.ItemCode, dln1.c.Quantity)
        .where(dln1.c.DocEntry.in_(sorted({e for e, _ in found})),
               dln1.c.BaseType == _BASE_ORDER)
        .order_by(dln1.c.DocEntry, dln1.c.LineNum)) if (ln.DocEntry, ln.LineNum) in wanted]
    orders = {o.DocEntry: o for o in conn.execute(
        select(ordr.c.DocEntry, ordr.c.DocNum, ordr.c.NumAtCard).where(
            ordr.c.DocEntry.in_(sorted({ln.BaseEntry for ln in lines}))))}
    out = _deliveries(conn, lines, only_batch=batch)
    for delivery in out:
        served = [ln.BaseEntry for ln in lines if ln.DocEntry == delivery["DocEntry"]]
        head = orders.get(served[0]) if served else None
        delivery["order_doc_num"] = head.DocNum if head is not None else None
        delivery["order_key"] = (head.NumAtCard or f"ERP-{head.DocNum}") if head else None
    return out


def _lims_lot(conn: Connection, batch: str) -> dict[str, Any] | None:
    name = lot.c.LOT_NAME
    row = next((r for r in conn.execute(
        select(name, lot.c.LOT_NUMBER, lot.c.PRODUCT, lot.c.PRODUCT_GRADE, lot.c.STATUS,
               lot.c.X_MANUFACTURE_DATE, lot.c.X_EXPIRY_DATE, lot.c.CHANGED_ON)
        .where(name == batch)) if r._mapping["LOT_NAME"] == batch), None)
    return None if row is None else dict(row._mapping)


# -- events ----------------------------------------------------------------------------------

_WHAT = {
    ("order.changed", "crm"): "CRM order change",
    ("order.changed", "erp"): "ERP order change",
    ("order.status", "erp"): "ERP's answer",
    ("delivery.posted", "erp"): "ERP delivery",
    ("party.changed", "crm"): "CRM customer change",
    ("party.changed", "erp"): "ERP customer change",
}


def _utc(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


def _part(target: str | None) -> str:
    """The consuming part of a queue name: ``hub.erp-applier.p0`` -> ``erp-applier``."""
    match = _QUEUE_PART.search(target or "")
    return match.group(1) if match else (target or "?")


def _system(event: str, source: str | None, target: str | None) -> str:
    if event in ("published", "observed"):
        return source or "hub"
    if event in ("applied", "retried", "dead_lettered"):
        part = _part(target)
        if part.startswith("poller:"):
            return part.split(":", 1)[1] or "hub"
        name = part.removesuffix("-applier")
        return name if name in _SYSTEMS else "hub"
    return "hub"


def _what(type_: str | None, source: str | None) -> str:
    label = _WHAT.get((type_ or "", source or ""))
    return f"{label} ({type_})" if label else (type_ or "message")


def _batches_text(batches: Any) -> str:
    if not isinstance(batches, list):
        return ""
    return ", ".join(f"{b.get('batch')} {b.get('quantity')} {b.get('product')}"
                     for b in batches if isinstance(b, dict))


def _summary(row: Any, detail: Mapping[str, Any]) -> str:
    event, what = row.event, _what(row.type, row.source)
    took = f" in {row.duration_ms:.0f} ms" if row.duration_ms is not None else ""
    if event == "observed" and row.type == "delivery.posted":
        order = f" on order {detail['order_key']}" if detail.get("order_key") else ""
        return (f"delivery {detail.get('delivery')} to {detail.get('customer')}{order}: "
                f"{_batches_text(detail.get('batches')) or 'no batches'}")
    if event == "published":
        return f"{what} published ({row.target})"
    if event == "applied":
        return f"{what} applied by {_part(row.target)}{took}"
    if event == "retried":
        return (f"{what} failed in {_part(row.target)}, attempt {detail.get('attempt')}, "
                f"retry in {detail.get('delay')}s: {row.error}")
    if event == "dead_lettered":
        return f"{what} dead-lettered by {_part(row.target)}: {row.error}"
    if event == "replayed":
        return (f"dead letter #{detail.get('dead_letter')} replayed to {row.target} "
                f"by {detail.get('by')}")
    if event == "discarded":
        return (f"dead letter #{detail.get('dead_letter')} discarded by {detail.get('by')}: "
                f"{row.error}")
    if event == "certificate" and row.outcome == "issued":
        return (f"certificate {detail.get('number')} v{detail.get('version')} issued for "
                f"{detail.get('customer')}")
    if event == "certificate" and row.outcome == "blocked":
        return f"certificate not issued: {row.error}"
    parts = [event, row.type, row.outcome, row.error]
    return " ".join(str(p) for p in parts if p)


def _journal_event(row: Any, at: dt.datetime) -> Event:
    detail = _detail(row.detail)
    recorded = _utc(row.at)
    return Event(at=at, recorded_at=None if recorded == at else recorded,
                 system=_system(row.event, row.source, row.target), event=row.event,
                 summary=_summary(row, detail), message_id=row.message_id, type=row.type,
                 key=row.correlation_key, source=row.source, target=row.target,
                 outcome=row.outcome, duration_ms=row.duration_ms, error=row.error,
                 detail=detail)


def _conflict_event(row: Any) -> Event:
    crm, erp, base = _json(row.crm_value), _json(row.erp_value), _json(row.base_value)
    return Event(at=_utc(row.at), system="hub", event="conflict",
                 summary=(f"conflict on {row.field}: CRM {crm!r}, ERP {erp!r} (was {base!r}); "
                          f"{row.winner.upper()} wins"),
                 message_id=row.message_id, key=row.correlation_key, outcome=row.winner,
                 detail={"field": row.field, "crm_value": crm, "erp_value": erp,
                         "base_value": base, "winner": row.winner}, origin="conflict")


def _letter_event(row: Any) -> Event:
    return Event(at=_utc(row.dead_at), system=_system("dead_lettered", None, row.queue),
                 event="dead_lettered",
                 summary=f"{_what(row.type, None)} dead-lettered in {row.queue}: {row.reason}",
                 message_id=row.message_id, type=row.type, key=row.correlation_key,
                 target=row.queue, outcome=row.status, error=row.reason,
                 detail={"dead_letter": row.id, "status": row.status,
                         "error_code": row.error_code}, origin="dead_letter")


def _conflict_info(row: Any) -> ConflictInfo:
    return ConflictInfo(at=_utc(row.at), key=row.correlation_key, field=row.field,
                        crm_value=_json(row.crm_value), erp_value=_json(row.erp_value),
                        base_value=_json(row.base_value), winner=row.winner,
                        message_id=row.message_id)


def _letter_info(row: Any) -> DeadLetterInfo:
    return DeadLetterInfo(id=row.id, dead_at=_utc(row.dead_at), queue=row.queue, type=row.type,
                          key=row.correlation_key, message_id=row.message_id, reason=row.reason,
                          error_code=row.error_code, attempts=row.attempts)


# -- rendering -------------------------------------------------------------------------------


def render(result: Trace) -> str:
    """The trace as a readable timeline (what ``hub trace`` prints)."""
    if not result.found:
        return "\n".join([result.message, *(f"error: {e}" for e in result.errors)])
    lines = [result.message]
    if result.orders and result.kind == "batch":
        lines.append(f"orders: {', '.join(result.orders)}")
    if result.batches and result.kind == "order":
        lines.append(f"batches: {', '.join(result.batches)}")
    lines.append("")
    if result.truncated:
        lines.append(f"(older events left out; showing the newest {len(result.events)})")
    if result.events:
        lines.append(f"{'TIME (UTC)':23}  {'SYSTEM':6}  {'EVENT':13}  DETAILS")
        for e in result.events:
            lines.append(f"{e.at:%Y-%m-%d %H:%M:%S.%f}"[:23] + f"  {e.system:6}  "
                         f"{e.event:13}  {e.summary}")
    else:
        lines.append("no events in the journal")
    if result.conflicts:
        lines += ["", "conflicts:"]
        lines += [f"  {c.at:%Y-%m-%d %H:%M:%S}  {c.field}: CRM {c.crm_value!r}, "
                  f"ERP {c.erp_value!r}, was {c.base_value!r} -> {c.winner} won"
                  for c in result.conflicts]
    if result.dead_letters:
        lines += ["", "open dead letters:"]
        lines += [f"  #{d.id}  {d.queue}  {d.type or '-'}: {d.reason}"
                  for d in result.dead_letters]
    lines += _render_state(result.state)
    lines += [f"error: {e}" for e in result.errors]
    return "\n".join(lines)


def _render_state(state: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    crm, erp = state.get("crm"), state.get("erp")
    lims, hub = state.get("lims"), state.get("hub")
    if crm or erp or lims or hub:
        lines += ["", "now:"]
    if crm:
        lines.append(f"  crm   order {crm['order_number']}: status {crm['status']}, "
                     f"integration {crm['integration_status'] or '-'}"
                     + (f" ({crm['integration_message']})" if crm["integration_message"]
                        else "")
                     + f", ERP order {crm['erp_order_number'] or '-'}")
        for s in crm.get("shipments", []):
            lines.append(f"        shipment {s['erp_delivery_number']} on {s['shipped_on']}: "
                         + ", ".join(f"{ln['batch_number']} {ln['quantity']} "
                                     f"{ln['product_code']}" for ln in s["lines"]))
    if erp and "DocNum" in erp:
        lines.append(f"  erp   DocNum {erp['DocNum']} (DocEntry {erp['DocEntry']}) "
                     f"{erp['CardCode']}: Confirmed {erp['Confirmed']}, DocStatus "
                     f"{erp['DocStatus']}, CANCELED {erp['CANCELED']}")
    for d in (erp or {}).get("deliveries", []):
        order = f" for order {d['order_key']}" if d.get("order_key") else ""
        lines.append(f"  erp   delivery {d['DocNum']} on {d['DocDate']} to {d['CardCode']}"
                     f"{order}: " + ", ".join(
                         f"{b['batch']} {b['quantity']} {ln['ItemCode']}"
                         for ln in d["lines"] for b in ln["batches"]))
    if lims and lims.get("lot"):
        lot_ = lims["lot"]
        lines.append(f"  lims  lot {lot_['LOT_NAME']} ({lot_['PRODUCT']} "
                     f"{lot_['PRODUCT_GRADE'] or ''}): STATUS {lot_['STATUS']}")
    for c in (hub or {}).get("certificates", []):
        superseded = f", superseded by v{c['superseded_by']}" if c["superseded_by"] else ""
        lines.append(f"  hub   certificate {c['number']} v{c['version']} issued "
                     f"{c['issued_at']:%Y-%m-%d %H:%M:%S}{superseded}")
    for e in (hub or {}).get("entitlements", []):
        lines.append(f"  hub   entitled: {e['customer']} (delivery {e['delivery_doc_num']}, "
                     f"order {e['order_key'] or '-'})")
    return lines
