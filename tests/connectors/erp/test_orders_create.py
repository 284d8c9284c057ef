"""Creating sales orders in the ERP and reading them back as canonical orders."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from connectors.erp import ErpOrders
from connectors.erp.order_reads import order_versions, read_orders
from connectors.erp.schema import ocrd, ordr, rdr1
from hub.errors import InvalidMessage, MappingError, UnknownReference
from hub.store.types import utcnow
from tests.connectors.erp.kit import HUAYI, deliver, header, line, lines_of, order


def test_create_then_read_round_trips_exactly(erp: Engine) -> None:
    orders = ErpOrders()
    sent = order(
        line(10, "ETAC-99", "1234.567", "12.3456", description="乙酸乙酯 200 kg 桶"),
        line(20, "MEK-995", "0.001", "9999.9999"),
        notes="请于周五前发货 谢谢", promised_date=dt.date(2026, 4, 20),
    )
    before = utcnow()
    with erp.begin() as conn:
        first = orders.create(conn, sent, confirmed=True)
        second = orders.create(conn, order(crm_id="other", order_number="SO-2"), confirmed=False)
    assert first[1] == 1 and second[1] == 2, "DocNum counts up the series"
    with erp.connect() as conn:
        got = orders.read(conn, first[0])
        raw, raw_lines = header(conn, first[0]), lines_of(conn, first[0])
        held = orders.read(conn, second[0])
    assert got is not None and held is not None
    assert (got.erp_doc_entry, got.erp_doc_num) == first
    assert got.customer == HUAYI.number and got.customer_crm_id == HUAYI.account_id
    assert (got.order_number, got.crm_id) == (sent.order_number, sent.crm_id)
    assert got.notes == "请于周五前发货 谢谢" and got.customer_po == "PO-4711"
    assert got.requested_date == dt.date(2026, 4, 15)
    assert got.promised_date == dt.date(2026, 4, 20)
    assert got.order_date == before.date() and got.currency == "EUR"
    # 1234.567 x 12.3456 = 15241.4703552; 0.001 x 9999.9999 = 9.9999999
    assert got.total_amount == D("15251.47")
    assert (got.confirmed, got.cancelled, got.status) == (True, False, "confirmed")
    assert held.status == "on_hold" and held.confirmed is False
    assert [(ln.erp_line, ln.line_no) for ln in got.lines] == [(0, 10), (1, 20)]
    first_line = got.lines[0]
    assert first_line.quantity == D("1234.567") and first_line.unit_price == D("12.3456")
    assert first_line.description == "乙酸乙酯 200 kg 桶" and first_line.unit == "kg"
    assert first_line.shipped_quantity == 0 and first_line.open_quantity == D("1234.567")
    assert got.lines[1].quantity == D("0.001") and got.lines[1].unit_price == D("9999.9999")
    assert (raw["DocStatus"], raw["CANCELED"], raw["UserSign2"]) == ("O", "N", "hub")
    assert before <= raw["UpdateDate"] <= utcnow()
    assert [(r["LineStatus"], r["ShipDate"], r["OpenQty"]) for r in raw_lines] == [
        ("O", dt.date(2026, 4, 15), D("1234.567")), ("O", dt.date(2026, 4, 15), D("0.001"))]


def test_an_erp_entered_line_without_crm_number_reads_as_line_num_plus_one(erp: Engine) -> None:
    orders = ErpOrders()
    with erp.begin() as conn:
        entry, _ = orders.create(conn, order(line(1), line(2, "MEK-995")), confirmed=True)
        conn.execute(rdr1.update().where(rdr1.c.DocEntry == entry).values(U_CRM_LINE=None))
        conn.execute(ordr.update().where(ordr.c.DocEntry == entry).values(U_CRM_ID=None))
    with erp.connect() as conn:
        got = orders.read(conn, entry)
    assert got is not None and got.crm_id is None
    assert [(ln.erp_line, ln.line_no, ln.product_code) for ln in got.lines] == [
        (0, 1, "ETAC-99"), (1, 2, "MEK-995")]


def _order_count(erp: Engine) -> int:
    with erp.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ordr)).scalar_one())


@pytest.mark.parametrize(("customer", "message"), [
    ("C00099", "customer C00099 does not exist in the ERP"),
    ("c00042", "customer c00042 does not exist in the ERP"),  # codes are exact everywhere
    ("V00001", "customer V00001 does not exist in the ERP as a customer"),
])
def test_an_unknown_customer_is_refused_before_anything_is_written(
    erp: Engine, customer: str, message: str
) -> None:
    with erp.begin() as conn:
        conn.execute(ocrd.insert().values(CardCode="V00001", CardName="Solvent Supply Co.",
                                          CardType="S", UpdateDate=utcnow()))
    with erp.begin() as conn, pytest.raises(UnknownReference) as caught:
        ErpOrders().create(conn, order(customer=customer), confirmed=True)
    assert str(caught.value).startswith(message)
    assert _order_count(erp) == 0


def test_unknown_items_are_named_together_in_order(erp: Engine) -> None:
    sent = order(line(1, "ETAC-99X"), line(2, "ETAC-99"), line(3, "FOO"), line(4, "ETAC-99X"),
                 line(5, "etac-99"))
    with erp.begin() as conn, pytest.raises(UnknownReference) as caught:
        ErpOrders().create(conn, sent, confirmed=True)
    assert str(caught.value) == "item(s) ETAC-99X, FOO, etac-99 do not exist in the ERP"
    assert _order_count(erp) == 0


def test_an_order_without_lines_is_invalid(erp: Engine) -> None:
    empty = order().model_copy(update={"lines": ()})
    with erp.begin() as conn, pytest.raises(InvalidMessage, match=r"^the order has no lines$"):
        ErpOrders().create(conn, empty, confirmed=True)
    repeated = order(line(1), line(1, "MEK-995"))
    with erp.begin() as conn, pytest.raises(InvalidMessage, match=r"line number\(s\) 1 appear"):
        ErpOrders().create(conn, repeated, confirmed=True)
    assert _order_count(erp) == 0


def test_notes_longer_than_comments_are_refused_never_truncated(erp: Engine) -> None:
    orders = ErpOrders()
    with erp.begin() as conn, pytest.raises(MappingError) as caught:
        orders.create(conn, order(notes="注" * 255), confirmed=True)
    assert str(caught.value) == (
        "order notes too long for the ERP: 255 characters where ORDR.Comments holds at most "
        "254 (nothing was truncated)")
    fits = "注" * 254  # characters, not bytes: 762 bytes of UTF-8
    with erp.begin() as conn:
        entry, _ = orders.create(conn, order(notes=fits), confirmed=True)
    with erp.connect() as conn:
        got = orders.read(conn, entry)
    assert got is not None and got.notes == fits and _order_count(erp) == 1


def test_a_line_text_longer_than_its_column_is_refused(erp: Engine) -> None:
    long_unit = line(3).model_copy(update={"unit": "x" * 11})  # the model allows 10: bypass
    with erp.begin() as conn, pytest.raises(MappingError, match=r"^line 3 unit too long"):
        ErpOrders().create(conn, order(line(1), long_unit), confirmed=True)
    assert _order_count(erp) == 0


def test_find_by_crm_id_has_deliveries_and_missing_orders(erp: Engine) -> None:
    orders = ErpOrders()
    sent = order()
    with erp.begin() as conn:
        entry, _ = orders.create(conn, sent, confirmed=True)
        assert sent.crm_id is not None
        assert orders.find_by_crm_id(conn, sent.crm_id) == entry
        assert orders.find_by_crm_id(conn, "no-such-order") is None
        assert orders.has_deliveries(conn, entry) is False
        deliver(conn, entry, [(0, "1", [])])
        assert orders.has_deliveries(conn, entry) is True
        assert orders.read(conn, entry + 1000) is None


def test_reading_costs_the_same_few_statements_whatever_the_line_count(erp: Engine) -> None:
    orders = ErpOrders()
    with erp.begin() as conn:
        small, _ = orders.create(conn, order(line(1)), confirmed=True)
        big, _ = orders.create(
            conn, order(*(line(n, quantity=str(n)) for n in range(1, 13)), crm_id="big"),
            confirmed=True)
        deliver(conn, big, [(n, "1", [(f"LOT-{n}", "1")]) for n in range(6)])
    statements: list[str] = []

    def count(*args: Any) -> None:
        if args[2].lstrip().upper().startswith("SELECT"):
            statements.append(args[2])

    event.listen(erp, "before_cursor_execute", count)
    try:
        with erp.connect() as conn:
            assert orders.read(conn, small) is not None
            small_cost = len(statements)
            statements.clear()
            got = orders.read(conn, big)
    finally:
        event.remove(erp, "before_cursor_execute", count)
    assert got is not None and len(got.lines) == 12 and got.status == "partially_shipped"
    assert small_cost == len(statements) <= 4


def test_an_erp_row_the_canonical_model_cannot_hold_is_a_mapping_error(erp: Engine) -> None:
    orders = ErpOrders()
    with erp.begin() as conn:
        entry, num = orders.create(conn, order(), confirmed=True)
        conn.execute(ordr.update().where(ordr.c.DocEntry == entry)
                     .values(NumAtCard="customer reference of thirty+ chars"))
    with erp.connect() as conn, pytest.raises(MappingError) as caught:
        orders.read(conn, entry)
    assert str(caught.value).startswith(
        f"ERP order {num} cannot be read into the canonical model: order_number: ")


def test_inserting_no_orders_writes_nothing(erp: Engine) -> None:
    """Found by the fault suite: a batch of changes to orders the ERP already has inserted
    "no new orders" as one row of defaults, which failed the batch (MariaDB: "Field
    'DocEntry' doesn't have a default value") and made it fall back to one order at a time."""
    before = _order_count(erp)
    with erp.begin() as conn:
        assert ErpOrders().insert(conn, []) == []
    assert _order_count(erp) == before
    with erp.connect() as conn:
        assert conn.execute(select(func.count()).select_from(rdr1)).scalar_one() == 0


def test_orders_created_in_the_transaction_read_back_in_two_statements_the_same(
        erp: Engine) -> None:
    """Found by profiling a drain: the ERP applier read each order it had just created with
    the queries for deliveries, invoices and their stamps, which cannot exist yet."""
    orders = ErpOrders()
    statements: list[str] = []

    def count(*args: Any) -> None:
        if args[2].lstrip().upper().startswith("SELECT"):
            statements.append(args[2])

    with erp.begin() as conn:
        created = [entry for entry, _ in orders.insert(conn, [
            orders.prepare(order(line(1), line(2), crm_id=f"new-{n}"), confirmed=True)
            for n in range(3)])]
        event.listen(erp, "before_cursor_execute", count)
        try:
            stamps: dict[int, dt.datetime] = {}
            quick = read_orders(conn, orders.mapping, created, stamps=stamps, new=set(created))
        finally:
            event.remove(erp, "before_cursor_execute", count)
        assert len(statements) == 2, statements
        full = read_orders(conn, orders.mapping, created)
        assert quick == full and len(quick) == 3
        assert stamps == order_versions(conn, created)
