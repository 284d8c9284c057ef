"""What a trace holds and how it reads: the result models (:class:`Trace` and its parts),
one readable event per journal row, conflict or dead letter, and the text timeline
(:func:`render`). :mod:`hub.trace` gathers; this module only shapes what was gathered."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "SYSTEMS",
    "ConflictInfo",
    "DeadLetterInfo",
    "Event",
    "OrderRef",
    "Trace",
    "conflict_event",
    "conflict_info",
    "for_customer",
    "journal_event",
    "letter_event",
    "letter_info",
    "parse_detail",
    "parse_json",
    "render",
    "utc",
    "utc_values",
]

_QUEUE_PART = re.compile(r"([^.]+)\.p[0-9]+$")
SYSTEMS: tuple[Literal["crm", "erp", "lims"], ...] = ("crm", "erp", "lims")

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


def parse_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_detail(text: str | None) -> dict[str, Any]:
    value = parse_json(text)
    return value if isinstance(value, dict) else ({} if value is None else {"value": value})


# -- events ----------------------------------------------------------------------------------

_WHAT = {
    ("order.changed", "crm"): "CRM order change",
    ("order.changed", "erp"): "ERP order change",
    ("order.status", "erp"): "ERP's answer",
    ("delivery.posted", "erp"): "ERP delivery",
    ("party.changed", "crm"): "CRM customer change",
    ("party.changed", "erp"): "ERP customer change",
}


def utc(at: dt.datetime) -> dt.datetime:
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
        return name if name in SYSTEMS else "hub"
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
        said = _content(row.type, detail.get("body"))
        return f"{what} published ({row.target})" + (f": {said}" if said else "")
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
    if event == "edited":
        found = detail.get("changes")
        changes: list[Any] = found if isinstance(found, list) else []
        shown = "; ".join(f"{c.get('path')} {c.get('before')!r} -> {c.get('after')!r}"
                          for c in changes[:5] if isinstance(c, dict))
        more = f" (+{len(changes) - 5} more)" if len(changes) > 5 else ""
        return (f"dead letter #{detail.get('dead_letter')} edited by {detail.get('by')}: "
                f"{shown or 'no field changed'}{more}")
    if event == "downloaded":
        listed = detail.get("certificates")
        certs: list[Any] = listed if isinstance(listed, list) else []
        which = ", ".join(f"{c.get('number')} v{c.get('version')}" for c in certs[:3]
                          if isinstance(c, dict))
        lang = f" ({detail.get('lang')})" if detail.get("lang") else ""
        cached = ", not modified" if row.outcome == "not_modified" else ""
        return (f"certificate {which or '-'} downloaded as {detail.get('format')}{lang} by "
                f"{detail.get('by_kind')} {detail.get('by')}{cached}")
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


def _content(type_: str | None, body: Any) -> str:
    """The gist of a published message's body (as the journal keeps it)."""
    if not isinstance(body, dict):
        return ""
    if type_ == "order.changed" and isinstance(body.get("order"), dict):
        o = body["order"]
        lines = o.get("lines") if isinstance(o.get("lines"), list) else []
        said = [f"status {o.get('status')}", f"{len(lines)} line(s)"]
        said += [f"{name} {o[name]}" for name in ("erp_doc_num", "confirmed", "promised_date",
                                                    "customer_po", "notes")
                 if o.get(name) is not None]
        return ", ".join(said)
    if type_ == "order.status":
        said = [f"{body.get('integration_status')}"]
        said += [f"{name} {body[name]}" for name in ("erp_doc_num", "status",
                                                      "integration_message")
                 if body.get(name) is not None]
        return ", ".join(said)
    if type_ == "delivery.posted" and isinstance(body.get("delivery"), dict):
        d = body["delivery"]
        return f"delivery {d.get('doc_num')} to {d.get('customer')}"
    return ""


def journal_event(row: Any, at: dt.datetime) -> Event:
    detail = parse_detail(row.detail)
    recorded = utc(row.at)
    return Event(at=at, recorded_at=None if recorded == at else recorded,
                 system=_system(row.event, row.source, row.target), event=row.event,
                 summary=_summary(row, detail), message_id=row.message_id, type=row.type,
                 key=row.correlation_key, source=row.source, target=row.target,
                 outcome=row.outcome, duration_ms=row.duration_ms, error=row.error,
                 detail=detail)


def conflict_event(row: Any) -> Event:
    crm, erp = parse_json(row.crm_value), parse_json(row.erp_value)
    base = parse_json(row.base_value)
    return Event(at=utc(row.at), system="hub", event="conflict",
                 summary=(f"conflict on {row.field}: CRM {crm!r}, ERP {erp!r} (was {base!r}); "
                          f"{row.winner.upper()} wins"),
                 message_id=row.message_id, key=row.correlation_key, outcome=row.winner,
                 detail={"field": row.field, "crm_value": crm, "erp_value": erp,
                         "base_value": base, "winner": row.winner}, origin="conflict")


def letter_event(row: Any) -> Event:
    return Event(at=utc(row.dead_at), system=_system("dead_lettered", None, row.queue),
                 event="dead_lettered",
                 summary=f"{_what(row.type, None)} dead-lettered in {row.queue}: {row.reason}",
                 message_id=row.message_id, type=row.type, key=row.correlation_key,
                 target=row.queue, outcome=row.status, error=row.reason,
                 detail={"dead_letter": row.id, "status": row.status,
                         "error_code": row.error_code}, origin="dead_letter")


def conflict_info(row: Any) -> ConflictInfo:
    return ConflictInfo(at=utc(row.at), key=row.correlation_key, field=row.field,
                        crm_value=parse_json(row.crm_value), erp_value=parse_json(row.erp_value),
                        base_value=parse_json(row.base_value), winner=row.winner,
                        message_id=row.message_id)


def letter_info(row: Any) -> DeadLetterInfo:
    return DeadLetterInfo(id=row.id, dead_at=utc(row.dead_at), queue=row.queue, type=row.type,
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


def utc_values(value: Any) -> Any:
    """``value`` with every naive datetime (the systems' UTC stamps) marked UTC."""
    if isinstance(value, dict):
        return {k: utc_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [utc_values(v) for v in value]
    if isinstance(value, dt.datetime):
        return utc(value)
    return value


def for_customer(detail: Mapping[str, Any], customer: str | None) -> bool:
    """False for a batch's event that names other customers only (a certificate of the
    same batch issued for someone else)."""
    if customer is None:
        return True
    named = [detail.get("customer"), *(detail.get("customers") or [])]
    named = [str(c) for c in named if c]
    return not named or customer in named
