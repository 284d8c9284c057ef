"""Canonical orders to send, and ERP documents posted the way the warehouse and accounting
post them (deliveries with batches, invoices), for the ERP connector tests."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, Table, select, update

from connectors.erp.schema import dln1, ibt1, insert_with_doc_num, inv1, odln, oinv, ordr, rdr1
from hub.demo.seed_data import CUSTOMERS
from hub.model.records import Order, OrderLine

DIALECTS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", id="mariadb-odbc", marks=pytest.mark.mariadb),
]

#: When the seeded business partners were (all) last updated.
SEEDED_AT = dt.datetime(2026, 3, 1, 8, 0, 0, 123456)
#: C00042, 上海华谊精细化工有限公司: a seeded customer linked to its CRM account.
HUAYI = CUSTOMERS[0]
T0 = dt.datetime(2026, 3, 2, 9, 0, 0, 1)
D = Decimal


def line(line_no: int | None, product: str = "ETAC-99", quantity: str = "10",
         price: str = "1.25", **extra: Any) -> OrderLine:
    values: dict[str, Any] = {
        "line_no": line_no, "product_code": product, "description": f"{product} 桶装",
        "quantity": D(quantity), "unit": "kg", "unit_price": D(price)}
    return OrderLine(**{**values, **extra})


def order(*lines: OrderLine, **fields: Any) -> Order:
    """A CRM order as the sync engine hands it over (one ETAC-99 line unless told)."""
    values: dict[str, Any] = {
        "order_number": "SO-2026-000123", "crm_id": str(uuid.uuid4()),
        "customer": HUAYI.number, "customer_crm_id": HUAYI.account_id, "status": "submitted",
        "currency": "EUR", "customer_po": "PO-4711", "requested_date": dt.date(2026, 4, 15),
        "notes": "请于周五前发货", "lines": lines or (line(1),),
    }
    values.update(fields)
    return Order(**values)


def stamp(conn: Connection, table: Table, doc_entry: int, at: dt.datetime) -> None:
    """Set a document's UpdateDate, as if it was last written at ``at``."""
    conn.execute(update(table).where(table.c.DocEntry == doc_entry).values(UpdateDate=at))


def deliver(conn: Connection, order_entry: int,
            lines: Sequence[tuple[int, str, Sequence[tuple[str, str]]]],
            at: dt.datetime = T0) -> tuple[int, int]:
    """Post a delivery of ``(order LineNum, quantity, [(batch, quantity), ...])`` lines and
    lower the order lines' OpenQty, as the ERP does; returns ``(DocEntry, DocNum)``."""
    card = conn.execute(select(ordr.c.CardCode).where(ordr.c.DocEntry == order_entry)).scalar_one()
    entry, num = insert_with_doc_num(conn, odln, {
        "CardCode": card, "DocDate": at.date(), "UpdateDate": at})
    for number, (base_line, quantity, batches) in enumerate(lines):
        item = conn.execute(select(rdr1.c.ItemCode).where(
            rdr1.c.DocEntry == order_entry, rdr1.c.LineNum == base_line)).scalar_one()
        conn.execute(dln1.insert().values(
            DocEntry=entry, LineNum=number, BaseType=17, BaseEntry=order_entry,
            BaseLine=base_line, ItemCode=item, Quantity=D(quantity)))
        for batch, batch_quantity in batches:
            conn.execute(ibt1.insert().values(
                BaseEntry=entry, BaseLinNum=number, BatchNum=batch, ItemCode=item,
                BaseType=15, Quantity=D(batch_quantity), CardCode=card))
        conn.execute(update(rdr1).where(rdr1.c.DocEntry == order_entry,
                                        rdr1.c.LineNum == base_line)
                     .values(OpenQty=rdr1.c.OpenQty - D(quantity)))
    return entry, num


def invoice(conn: Connection, delivery_entry: int, lines: Sequence[tuple[int, str]],
            at: dt.datetime = T0, total: str = "100.00") -> tuple[int, int]:
    """Post an invoice of ``(delivery LineNum, quantity)`` lines; returns (DocEntry, DocNum)."""
    card = conn.execute(
        select(odln.c.CardCode).where(odln.c.DocEntry == delivery_entry)).scalar_one()
    entry, num = insert_with_doc_num(conn, oinv, {
        "CardCode": card, "DocDate": at.date(), "DocTotal": D(total), "UpdateDate": at})
    for number, (base_line, quantity) in enumerate(lines):
        item = conn.execute(select(dln1.c.ItemCode).where(
            dln1.c.DocEntry == delivery_entry, dln1.c.LineNum == base_line)).scalar_one()
        conn.execute(inv1.insert().values(
            DocEntry=entry, LineNum=number, BaseType=15, BaseEntry=delivery_entry,
            BaseLine=base_line, ItemCode=item, Quantity=D(quantity)))
    return entry, num


def header(conn: Connection, doc_entry: int) -> dict[str, Any]:
    return dict(conn.execute(select(ordr).where(ordr.c.DocEntry == doc_entry)).one()._mapping)


def lines_of(conn: Connection, doc_entry: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(rdr1).where(rdr1.c.DocEntry == doc_entry)
                        .order_by(rdr1.c.LineNum)).all()
    return [dict(row._mapping) for row in rows]
