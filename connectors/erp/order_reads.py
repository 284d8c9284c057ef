"""Reading ERP sales orders (ORDR/RDR1) as canonical Orders, several at once, and what changed.

An order's progress lives in other documents: deliveries (DLN1 lines with BaseType 17 point
at an order line) and invoices (INV1 lines with BaseType 15 point at a delivery line). Every
figure is read with one grouped query per kind for a whole batch of orders, so reading a
page of changes costs a handful of statements, not a few per line.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence, Set
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Result, Select, and_, func, select, union_all

from connectors.erp.common import after_clause, chunked, key_entry, validated
from connectors.erp.schema import dln1, inv1, ocrd, odln, oinv, ordr, rdr1
from hub.mapping import SystemMapping
from hub.model.records import Order
from mappings.rules import LineProgress, erp_order_status

__all__ = [
    "BASE_DELIVERY",
    "BASE_ORDER",
    "changed_orders",
    "delivered_by_line",
    "deliveries_of",
    "invoiced_by_line",
    "order_versions",
    "read_orders",
]

#: DLN1.BaseType of a line that delivers a sales order line.
BASE_ORDER = 17
#: INV1.BaseType (and IBT1.BaseType) of a line that refers to a delivery line.
BASE_DELIVERY = 15

LineKey = tuple[int, int]  # (ORDR.DocEntry, RDR1.LineNum)


def read_orders(
    conn: Connection, mapping: SystemMapping, entries: Sequence[int], *,
    stamps: dict[int, dt.datetime] | None = None, new: Set[int] = frozenset(),
) -> dict[int, Order]:
    """The canonical orders of ``entries`` that exist, by DocEntry (four queries per chunk).

    ``new``: those of ``entries`` created in this transaction, which nothing can have
    delivered or invoiced yet (two queries when all are). ``stamps``: filled with the
    UpdateDate of each order read (its version, for a new one: see :func:`order_versions`).

    Raises MappingError when a row cannot be expressed canonically (e.g. a value table has
    no entry for its code, or a text is longer than the canonical model allows).
    """
    orders: dict[int, Order] = {}
    for chunk in chunked(entries):
        orders.update(_read_chunk(conn, mapping, chunk, stamps, new))
    return orders


def _dicts(result: Result[Any]) -> list[dict[str, Any]]:
    """The rows of ``result`` as dicts, the column names zipped in once (``Row._asdict``
    goes name by name: 3% of the daemon in a drain)."""
    names = tuple(result.keys())
    return [dict(zip(names, row, strict=True)) for row in result]


def _read_chunk(
    conn: Connection, mapping: SystemMapping, entries: Sequence[int],
    stamps: dict[int, dt.datetime] | None, new: Set[int],
) -> dict[int, Order]:
    headers = _dicts(conn.execute(
        select(ordr, ocrd.c.U_CRM_ID.label("customer_crm_id"))
        .select_from(ordr.outerjoin(ocrd, ocrd.c.CardCode == ordr.c.CardCode))
        .where(ordr.c.DocEntry.in_(entries))
    ))
    if not headers:
        return {}
    found = [row["DocEntry"] for row in headers]
    lines: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for values in _dicts(conn.execute(
            select(rdr1).where(rdr1.c.DocEntry.in_(found))
            .order_by(rdr1.c.DocEntry, rdr1.c.LineNum))):
        lines[values["DocEntry"]].append(values)
    old = [entry for entry in found if entry not in new]
    delivered = delivered_by_line(conn, old) if old else {}
    invoiced = invoiced_by_line(conn, old) if old else {}
    header_map = mapping.entity("order")
    line_map = mapping.entity("order_line")
    orders: dict[int, Order] = {}
    for row in headers:
        entry = row["DocEntry"]
        if stamps is not None:
            stamps[entry] = row["UpdateDate"]
        fields = header_map.to_canonical(row)
        canonical_lines: list[dict[str, Any]] = []
        progress: list[LineProgress] = []
        for line in lines[entry]:
            shipped = delivered.get((entry, line["LineNum"]), Decimal(0))
            line_values = line_map.to_canonical(line)
            if line_values.get("line_no") is None:
                line_values["line_no"] = line["LineNum"] + 1
            line_values["shipped_quantity"] = shipped
            canonical_lines.append(line_values)
            progress.append(LineProgress(
                ordered=line["Quantity"], delivered=shipped,
                invoiced=invoiced.get((entry, line["LineNum"]), Decimal(0)),
            ))
        status = erp_order_status(
            cancelled=bool(fields.get("cancelled")), confirmed=bool(fields.get("confirmed")),
            lines=progress,
        )
        values = {**fields, "customer_crm_id": row["customer_crm_id"], "status": status,
                  "lines": canonical_lines}
        orders[entry] = validated(Order, values, f"ERP order {row['DocNum']}")
    return orders


def delivered_by_line(conn: Connection, entries: Sequence[int]) -> dict[LineKey, Decimal]:
    """Quantity delivered per order line (DLN1 with BaseType 17), for the orders given."""
    out: dict[LineKey, Decimal] = {}
    for chunk in chunked(entries):
        query = (
            select(dln1.c.BaseEntry, dln1.c.BaseLine, func.sum(dln1.c.Quantity))
            .where(dln1.c.BaseType == BASE_ORDER, dln1.c.BaseEntry.in_(chunk))
            .group_by(dln1.c.BaseEntry, dln1.c.BaseLine)
        )
        for entry, line, quantity in conn.execute(query):
            if line is not None:
                out[(entry, line)] = Decimal(quantity or 0)
    return out


def invoiced_by_line(conn: Connection, entries: Sequence[int]) -> dict[LineKey, Decimal]:
    """Quantity invoiced per order line: INV1 lines (BaseType 15) on the delivery lines that
    delivered it, for the orders given."""
    out: dict[LineKey, Decimal] = {}
    for chunk in chunked(entries):
        query = (
            select(dln1.c.BaseEntry, dln1.c.BaseLine, func.sum(inv1.c.Quantity))
            .select_from(inv1.join(dln1, and_(
                inv1.c.BaseEntry == dln1.c.DocEntry, inv1.c.BaseLine == dln1.c.LineNum)))
            .where(inv1.c.BaseType == BASE_DELIVERY, dln1.c.BaseType == BASE_ORDER,
                   dln1.c.BaseEntry.in_(chunk))
            .group_by(dln1.c.BaseEntry, dln1.c.BaseLine)
        )
        for entry, line, quantity in conn.execute(query):
            if line is not None:
                out[(entry, line)] = Decimal(quantity or 0)
    return out


def deliveries_of(conn: Connection, doc_entry: int) -> list[int]:
    """The DocNums of the deliveries that shipped any line of order ``doc_entry``."""
    query = (
        select(odln.c.DocNum).distinct()
        .select_from(odln.join(dln1, dln1.c.DocEntry == odln.c.DocEntry))
        .where(dln1.c.BaseType == BASE_ORDER, dln1.c.BaseEntry == doc_entry)
        .order_by(odln.c.DocNum)
    )
    return [int(num) for num in conn.scalars(query)]


def changed_orders(
    conn: Connection,
    lower: dt.datetime | None,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> list[tuple[int, dt.datetime]]:
    """``(DocEntry, changed_at)`` of the orders changed since ``lower``, after ``after``.

    An order changes when its header is written, when a delivery of it is, or when an
    invoice based on such a delivery is; ``changed_at`` is the latest of those stamps. Only
    stamps at or after ``lower`` are gathered: the latest is among them whenever any is, so
    the result is the same as over all history, at the cost of the rows the indexes on
    UpdateDate select.

    With ``after``, only stamps at or after its moment are gathered, whatever ``lower``: an
    order that passes ``after`` has its latest stamp there, and one with none there cannot
    pass it. Each page of a window then groups the stamps from where the last one stopped,
    not the whole window again (a poll paging through a busy 15 s window grouped it once a
    page: the ERP's biggest read in a drain).
    """
    floor = lower
    if after is not None and (floor is None or after[0] > floor):
        floor = after[0]
    events = union_all(*_stamps(floor)).subquery("events")
    changed_at = func.max(events.c.stamp).label("changed_at")
    grouped = (
        select(events.c.entry, changed_at)
        .join(ordr, ordr.c.DocEntry == events.c.entry)
        .group_by(events.c.entry)
        .subquery("changed")
    )
    query = select(grouped.c.entry, grouped.c.changed_at)
    if after is not None:
        query = query.where(after_clause(
            grouped.c.changed_at, grouped.c.entry, (after[0], key_entry(after[1]))))
    query = query.order_by(grouped.c.changed_at, grouped.c.entry).limit(limit)
    return [(int(entry), stamp) for entry, stamp in conn.execute(query)]


def order_versions(conn: Connection, entries: Sequence[int]) -> dict[int, dt.datetime]:
    """The newest stamp of each of ``entries`` as :func:`changed_orders` computes it: its
    own UpdateDate, its deliveries' and their invoices'; one query per chunk."""
    found: dict[int, dt.datetime] = {}
    for chunk in chunked(entries):
        own, shipped, billed = _stamps(None)
        events = union_all(
            own.where(ordr.c.DocEntry.in_(chunk)), shipped.where(dln1.c.BaseEntry.in_(chunk)),
            billed.where(dln1.c.BaseEntry.in_(chunk)),
        ).subquery("events")
        found.update((int(entry), stamp) for entry, stamp in conn.execute(
            select(events.c.entry, func.max(events.c.stamp)).group_by(events.c.entry)))
    return found


def _stamps(lower: dt.datetime | None) -> list[Select[Any]]:
    own = select(ordr.c.DocEntry.label("entry"), ordr.c.UpdateDate.label("stamp"))
    shipped = (
        select(dln1.c.BaseEntry, odln.c.UpdateDate)
        .select_from(odln.join(dln1, dln1.c.DocEntry == odln.c.DocEntry))
        .where(dln1.c.BaseType == BASE_ORDER)
    )
    billed = (
        select(dln1.c.BaseEntry, oinv.c.UpdateDate)
        .select_from(
            oinv.join(inv1, inv1.c.DocEntry == oinv.c.DocEntry)
            .join(dln1, inv1.c.BaseEntry == dln1.c.DocEntry)
        )
        .where(inv1.c.BaseType == BASE_DELIVERY, dln1.c.BaseType == BASE_ORDER)
    )
    if lower is not None:
        own = own.where(ordr.c.UpdateDate >= lower)
        shipped = shipped.where(odln.c.UpdateDate >= lower)
        billed = billed.where(oinv.c.UpdateDate >= lower)
    return [own, shipped, billed]
