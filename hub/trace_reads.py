"""The reads behind a trace: the hub store's cross-references, conflicts and certificates,
and the current state of an order, its deliveries and a lot in the CRM, the ERP and the
LIMS. Each runs on a connection it is given; keys reach the databases as bound parameters
only, and matches are re-checked exactly in Python (MariaDB's collations ignore case and
trailing blanks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, select

from connectors.crm.schema import crm_order, crm_shipment, crm_shipment_line
from connectors.erp.schema import dln1, ibt1, odln, ordr
from connectors.lims.schema import lot
from hub.store.tables import certificate, conflict, id_xref

__all__ = [
    "CRM_ORDER",
    "ENTITLEMENT",
    "ERP_ORDER",
    "canonical_order",
    "certificates_of",
    "conflicts_of",
    "crm_order_row",
    "crm_shipments",
    "erp_batch_deliveries",
    "erp_deliveries",
    "erp_order_row",
    "lims_lot",
    "order_locals",
    "row_dict",
]

#: ERP document types in IBT1.BaseType / DLN1.BaseType.
_BASE_ORDER, _BASE_DELIVERY = 17, 15

# -- hub store reads -------------------------------------------------------------------------


def canonical_order(hub: Connection, system: str, local_key: str) -> str | None:
    for row in hub.execute(select(id_xref.c.canonical_id, id_xref.c.local_key).where(
            id_xref.c.kind == "order", id_xref.c.system == system,
            id_xref.c.local_key == local_key)):
        if row.local_key == local_key:
            return str(row.canonical_id)
    return None


def order_locals(hub: Connection, canonical_id: str) -> dict[str, str]:
    return {r.system: r.local_key for r in hub.execute(
        select(id_xref.c.system, id_xref.c.local_key).where(
            id_xref.c.kind == "order", id_xref.c.canonical_id == canonical_id))}


def conflicts_of(hub: Connection, keys: Sequence[str], canonical_id: str | None) -> list[Any]:
    found = {r.id: r for r in hub.execute(
        select(conflict).where(conflict.c.correlation_key.in_(keys))
        .order_by(conflict.c.id.desc()).limit(500)) if r.correlation_key in keys}
    if canonical_id:
        found.update((r.id, r) for r in hub.execute(
            select(conflict).where(conflict.c.kind == "order",
                                   conflict.c.canonical_id == canonical_id)
            .order_by(conflict.c.id.desc()).limit(500)))
    return sorted(found.values(), key=lambda r: r.id)


ENTITLEMENT = ("customer", "customer_name", "order_key", "delivery_doc_num", "delivery_line",
                "delivery_date", "product_code", "quantity", "uom", "recorded_at")


def certificates_of(hub: Connection, batches: Sequence[str]) -> list[dict[str, Any]]:
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

CRM_ORDER = ("order_id", "order_number", "status", "integration_status",
              "integration_message", "erp_order_number", "promised_date", "version",
              "modified_at", "modified_by")
ERP_ORDER = ("DocEntry", "DocNum", "CardCode", "NumAtCard", "Confirmed", "DocStatus",
              "CANCELED", "DocDueDate", "U_CRM_ID", "UpdateDate", "UserSign2")


def crm_order_row(conn: Connection, *, number: str | None = None, erp_number: str | None = None,
               order_id: str | None = None) -> Any:
    """The CRM order with ``order_id``, or numbered ``number``, or else with ERP number
    ``erp_number``; None when there is none."""
    columns = [crm_order.c[name] for name in CRM_ORDER]
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


def crm_shipments(conn: Connection, order_id: str) -> list[dict[str, Any]]:
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


def erp_order_row(conn: Connection, *, doc_num: int | None = None,
               doc_entry: int | None = None) -> Any:
    columns = [ordr.c[name] for name in ERP_ORDER]
    if doc_entry is not None:
        return conn.execute(select(*columns).where(ordr.c.DocEntry == doc_entry)).first()
    return conn.execute(select(*columns).where(ordr.c.DocNum == doc_num)).first()


def erp_deliveries(conn: Connection, doc_entry: int) -> list[dict[str, Any]]:
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


def erp_batch_deliveries(conn: Connection, batch: str) -> list[dict[str, Any]]:
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


def lims_lot(conn: Connection, batch: str) -> dict[str, Any] | None:
    name = lot.c.LOT_NAME
    row = next((r for r in conn.execute(
        select(name, lot.c.LOT_NUMBER, lot.c.PRODUCT, lot.c.PRODUCT_GRADE, lot.c.STATUS,
               lot.c.X_MANUFACTURE_DATE, lot.c.X_EXPIRY_DATE, lot.c.CHANGED_ON)
        .where(name == batch)) if r._mapping["LOT_NAME"] == batch), None)
    return None if row is None else dict(row._mapping)


def row_dict(row: Any, columns: Iterable[str]) -> dict[str, Any]:
    """The ``columns`` of ``row``, by name."""
    mapping = row._mapping
    return {name: mapping[name] for name in columns}
