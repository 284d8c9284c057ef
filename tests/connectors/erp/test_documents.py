"""Deliveries with their batches, and invoices, read from the ERP and listed as changes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from sqlalchemy import Engine

from connectors.erp import ErpDeliveries, ErpInvoices, ErpOrders
from connectors.erp.schema import dln1, ibt1, insert_with_doc_num, odln
from hub.errors import MappingError
from hub.model.records import BatchAllocation
from tests.connectors.erp.kit import HUAYI, T0, deliver, invoice, line, order

LATER = T0 + dt.timedelta(minutes=30)


def test_a_delivery_reads_back_with_its_batches(erp: Engine) -> None:
    with erp.begin() as conn:
        entry, _ = ErpOrders().create(conn, order(line(1, quantity="10"),
                                                  line(2, "MEK-995", "0.5")), confirmed=True)
        doc, num = deliver(conn, entry, [
            (1, "0.5", [("MEK-2603-01", "0.5")]),
            (0, "10", [("ETAC-2603-02", "6.25"), ("ETAC-2603-01", "3.75")]),
        ], at=LATER)
        # A batch row of another document type on the same keys is not this delivery's.
        conn.execute(ibt1.insert().values(BaseEntry=doc, BaseLinNum=0, BatchNum="RETURN-1",
                                          BaseType=16, ItemCode="MEK-995", Quantity=D(1)))
    with erp.connect() as conn:
        got = ErpDeliveries().read(conn, doc)
        assert ErpDeliveries().read(conn, doc + 10) is None
    assert got is not None
    assert (got.doc_entry, got.doc_num, got.customer, got.delivery_date) == (
        doc, num, HUAYI.number, LATER.date())
    assert [(ln.line_num, ln.order_doc_entry, ln.order_line, ln.product_code, ln.quantity)
            for ln in got.lines] == [(0, entry, 1, "MEK-995", D("0.5")),
                                     (1, entry, 0, "ETAC-99", D(10))]
    assert got.lines[0].batches == (BatchAllocation(batch_number="MEK-2603-01",
                                                    quantity=D("0.5")),)
    assert got.lines[1].batches == (
        BatchAllocation(batch_number="ETAC-2603-01", quantity=D("3.75")),
        BatchAllocation(batch_number="ETAC-2603-02", quantity=D("6.25")),
    )


def test_delivery_changes_skip_deliveries_of_no_order(erp: Engine) -> None:
    with erp.begin() as conn:
        entry, _ = ErpOrders().create(conn, order(), confirmed=True)
        first, _ = deliver(conn, entry, [(0, "1", [])], at=LATER)
        second, _ = deliver(conn, entry, [(0, "2", [])], at=T0)
        loose, loose_num = insert_with_doc_num(conn, odln, {
            "CardCode": HUAYI.number, "DocDate": T0.date(), "UpdateDate": LATER})
        conn.execute(dln1.insert().values(DocEntry=loose, LineNum=0, BaseType=-1,
                                          ItemCode="ETAC-99", Quantity=D(1)))
    deliveries = ErpDeliveries()
    with erp.connect() as conn:
        changes = deliveries.changes(conn, None, None, 10)
        later = deliveries.changes(conn, T0 + dt.timedelta(seconds=1), None, 10)
        paged = deliveries.changes(conn, None, (changes[0].changed_at, changes[0].key), 10)
        with pytest.raises(MappingError, match=f"ERP delivery {loose_num} ships no sales order"):
            deliveries.read(conn, loose)
    assert [(c.key, c.changed_at) for c in changes] == [
        (f"{second:012d}", T0), (f"{first:012d}", LATER)]
    assert [c.row.lines[0].quantity for c in changes] == [D(2), D(1)]
    assert [c.key for c in later] == [f"{first:012d}"]
    assert [c.key for c in paged] == [f"{first:012d}"]


def test_an_invoice_reads_back_and_is_listed(erp: Engine) -> None:
    with erp.begin() as conn:
        entry, _ = ErpOrders().create(conn, order(line(1, quantity="4")), confirmed=True)
        delivery, _ = deliver(conn, entry, [(0, "4", [])])
        doc, num = invoice(conn, delivery, [(0, "4")], at=LATER, total="5.00")
    invoices = ErpInvoices()
    with erp.connect() as conn:
        got = invoices.read(conn, doc)
        changes = invoices.changes(conn, LATER, None, 5)
        none_after = invoices.changes(conn, None, (LATER, f"{doc:012d}"), 5)
        assert invoices.read(conn, doc + 1) is None
    assert got is not None
    assert (got.doc_num, got.customer, got.invoice_date, got.total) == (
        num, HUAYI.number, LATER.date(), D("5.00"))
    assert [(ln.line_num, ln.delivery_doc_entry, ln.delivery_line, ln.product_code,
             ln.quantity) for ln in got.lines] == [(0, delivery, 0, "ETAC-99", D(4))]
    assert [(c.key, c.version, c.row) for c in changes] == [
        (f"{doc:012d}", LATER.isoformat(timespec="microseconds"), got)]
    assert none_after == []
