"""Writing CRM orders: orders entered in the ERP, header and line updates, integration status."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from sqlalchemy import Connection, Engine, Table, func, select

from connectors.crm import CrmOrders
from connectors.crm.orders import Answer
from connectors.crm.schema import crm_order, crm_order_line
from hub.errors import InvalidMessage, UnknownReference
from hub.model.records import Order, OrderLine
from tests.connectors.crm.kit import HUAYI, T0, insert_order, line, line_rows, order_row


def _erp_order(**overrides: object) -> Order:
    fields: dict[str, object] = {
        "erp_doc_num": 4711, "erp_doc_entry": 31, "customer": "C00042", "status": "confirmed",
        "currency": "CNY", "customer_po": "采购-2026-17", "requested_date": dt.date(2026, 5, 4),
        "promised_date": dt.date(2026, 5, 2), "notes": "电话下单",
        "lines": (
            OrderLine(erp_line=0, product_code="ETAC-99", quantity=D("1000.5"),
                      unit_price=D("1.2345"), unit="kg"),
            OrderLine(erp_line=1, product_code="MEK-99", quantity=D("3"),
                      unit_price=D("99.99"), shipped_quantity=D("1"), description="丁酮"),
        ),
    }
    fields.update(overrides)
    return Order.model_validate(fields)


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_an_erp_order_is_created_once_as_erp_docnum(crm: Engine) -> None:
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with crm.begin() as conn:
        order_id = CrmOrders().create(conn, _erp_order(), account_id=HUAYI.account_id)
    with crm.begin() as conn:
        again = CrmOrders().create(conn, _erp_order(notes="changed"),
                                   account_id=HUAYI.account_id)
    with crm.connect() as conn:
        row = order_row(conn, order_id)
        lines = line_rows(conn, order_id)
        read = CrmOrders().read(conn, order_id)
        assert _count(conn, crm_order) == 1 and _count(conn, crm_order_line) == 2
    assert again == order_id and len(order_id) == 36
    assert (row.order_number, row.erp_order_number, row.status) == ("ERP-4711", "4711",
                                                                    "confirmed")
    assert (row.integration_status, row.version, row.modified_by) == ("synced", 1, "hub")
    assert row.modified_at >= before and row.account_id == HUAYI.account_id
    assert row.notes == "电话下单", "the second create changed nothing"
    assert row.total_amount == D("1535.09")  # 1235.11725 + 299.97, rounded half-up
    assert list(lines) == [1, 2]
    assert (lines[1].quantity, lines[1].unit_price) == (D("1000.5"), D("1.2345"))
    assert (lines[2].shipped_quantity, lines[2].description) == (D("1"), "丁酮")
    assert read is not None and read.erp_doc_num == 4711 and read.customer == "C00042"
    assert (read.customer_po, read.promised_date) == ("采购-2026-17", dt.date(2026, 5, 2))


def test_create_keeps_a_given_number_and_line_numbers(crm: Engine) -> None:
    order = _erp_order(order_number="SO-2026-000900", status="on_hold", lines=(
        OrderLine(line_no=3, product_code="ETAC-99", quantity=D("1"), unit_price=D("2")),
        OrderLine(product_code="MEK-99", quantity=D("1"), unit_price=D("2")),
    ))
    with crm.begin() as conn:
        order_id = CrmOrders().create(conn, order, account_id=HUAYI.account_id)
    with crm.connect() as conn:
        assert order_row(conn, order_id).order_number == "SO-2026-000900"
        assert order_row(conn, order_id).status == "on_hold"
        assert list(line_rows(conn, order_id)) == [3, 4]


def test_create_refuses_an_unknown_account_and_an_order_without_number(crm: Engine) -> None:
    with crm.connect() as conn:
        with pytest.raises(UnknownReference, match="no customer account nobody"):
            CrmOrders().create(conn, _erp_order(), account_id="nobody")
        with pytest.raises(InvalidMessage, match="needs its DocNum"):
            CrmOrders().create(conn, _erp_order(erp_doc_num=None),
                               account_id=HUAYI.account_id)


def test_update_sets_header_fields_but_not_create_only_ones(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(conn, "SO-7", version=4, lines=[line(1)])
    with crm.begin() as conn:
        version = CrmOrders().update(conn, order_id, {
            "status": "confirmed", "promised_date": dt.date(2026, 4, 30), "erp_doc_num": 88,
            "currency": "USD", "order_number": "HIJACK", "crm_id": "other", "customer": "X"})
    with crm.connect() as conn:
        row = order_row(conn, order_id)
        assert line_rows(conn, order_id)[1].quantity == D("10")
    assert version == 5 == row.version
    assert (row.status, row.promised_date, row.erp_order_number) == (
        "confirmed", dt.date(2026, 4, 30), "88")
    assert (row.currency, row.order_number, row.order_id) == ("EUR", "SO-7", order_id)
    assert row.modified_by == "hub" and row.modified_at > T0
    assert row.total_amount == D("12.50"), "lines untouched, total untouched"


def test_update_adds_changes_and_removes_lines_keeping_shipped(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(conn, "SO-8", lines=[
            line(1, quantity="10", shipped_quantity=D("4")), line(2), line(3)])
    desired = [
        OrderLine(line_no=1, product_code="ETAC-99", quantity=D("12.5"), unit_price=D("2")),
        OrderLine(line_no=2, product_code="ETAC-99", description="ETAC-99 drum",
                  quantity=D("10"), unit="kg", unit_price=D("1.25")),
        OrderLine(product_code="IPA-99", quantity=D("0.333"), unit_price=D("3.3333"),
                  shipped_quantity=D("0.1")),
    ]
    with crm.begin() as conn:
        version = CrmOrders().update(conn, order_id, {"notes": "更改数量"}, desired)
    with crm.connect() as conn:
        lines = line_rows(conn, order_id)
        row = order_row(conn, order_id)
    assert version == 2 and row.notes == "更改数量"
    assert list(lines) == [1, 2, 4], "3 removed, the new line numbered after the highest"
    assert (lines[1].quantity, lines[1].unit_price, lines[1].shipped_quantity) == (
        D("12.5"), D("2"), D("4"))
    assert lines[1].description is None
    assert (lines[4].product_code, lines[4].shipped_quantity) == ("IPA-99", D("0.1"))
    assert row.total_amount == D("38.61")  # 25 + 12.5 + 1.1099889


def test_shipped_quantities_alone_or_with_lines(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(conn, "SO-9", lines=[line(1), line(2)])
    with crm.begin() as conn:
        first = CrmOrders().update(conn, order_id, {"status": "partially_shipped"},
                                   shipped={2: D("7.125")})
    with crm.begin() as conn:
        kept = [OrderLine(line_no=n, product_code="ETAC-99", quantity=D("10"),
                          unit_price=D("1.25")) for n in (1, 2)]
        second = CrmOrders().update(conn, order_id, {}, kept, shipped={1: D("10")})
    with crm.connect() as conn:
        lines = line_rows(conn, order_id)
        row = order_row(conn, order_id)
    assert (first, second) == (2, 3) == (2, row.version)
    assert (lines[1].shipped_quantity, lines[2].shipped_quantity) == (D("10"), D("7.125"))
    assert row.status == "partially_shipped" and row.total_amount == D("25.00")
    with crm.connect() as conn, pytest.raises(UnknownReference, match="SO-9 has no line 5"):
        CrmOrders().update(conn, order_id, {}, shipped={5: D("1")})


def test_update_of_an_unknown_order_or_with_repeated_lines_fails(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(conn, "SO-10", lines=[line(1)])
    twice = [OrderLine(line_no=1, product_code="A", quantity=D("1"), unit_price=D("1"))] * 2
    with crm.connect() as conn:
        with pytest.raises(UnknownReference, match="no order nope"):
            CrmOrders().update(conn, "nope", {"notes": "x"})
        with pytest.raises(InvalidMessage, match="order SO-10: line 1 appears more than once"):
            CrmOrders().update(conn, order_id, {}, twice)


def test_set_integration_records_status_and_a_visibly_cut_message(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(conn, "SO-11", version=2)
    message = "产品 XYZ-1 在 ERP 中不存在。" + "x" * 1200
    with crm.begin() as conn:
        first = CrmOrders().set_integration(conn, order_id, "error", message)
    with crm.connect() as conn:
        row = order_row(conn, order_id)
    assert first == 3 == row.version and row.modified_by == "hub"
    assert row.integration_status == "error" and len(row.integration_message) == 1000
    assert row.integration_message.startswith("产品 XYZ-1 在 ERP 中不存在。")
    assert row.integration_message.endswith("x…")
    with crm.begin() as conn:
        second = CrmOrders().set_integration(conn, order_id, "synced", None)
        row = order_row(conn, order_id)
    assert second == 4 and (row.integration_status, row.integration_message) == ("synced", None)
    with crm.connect() as conn:
        with pytest.raises(ValueError, match="integration status"):
            CrmOrders().set_integration(conn, order_id, "done", None)
        with pytest.raises(UnknownReference):
            CrmOrders().set_integration(conn, "nope", "pending", None)


def test_answers_to_many_orders_are_written_together_as_one_by_one(crm: Engine) -> None:
    with crm.begin() as conn:
        ids = [insert_order(conn, f"SO-2{n}", version=n + 1) for n in range(4)]
    answers = [
        Answer(ids[0], {"erp_doc_num": 501, "status": "on_hold"}, "synced", None),
        Answer(ids[1], {"erp_doc_num": 502}, "synced", None),
        Answer(ids[2], {}, "error", "item(s) ETAC-99X do not exist in the ERP"),
        Answer(ids[3], {"erp_doc_num": 504, "status": "confirmed"}, "synced", None),
    ]
    with crm.begin() as conn:
        versions = CrmOrders().answer_many(conn, answers)
    with crm.connect() as conn:
        rows = [order_row(conn, order_id) for order_id in ids]
    assert versions == [2, 3, 4, 5] == [r.version for r in rows]
    assert [(r.erp_order_number, r.status, r.integration_status) for r in rows] == [
        ("501", "on_hold", "synced"), ("502", "submitted", "synced"),
        (None, "submitted", "error"), ("504", "confirmed", "synced")]
    assert rows[2].integration_message == "item(s) ETAC-99X do not exist in the ERP"
    assert {r.modified_by for r in rows} == {"hub"}
    # The same order twice: written in turn, each version its own.
    with crm.begin() as conn:
        assert CrmOrders().answer_many(conn, [answers[1], answers[1]._replace(
            fields={"status": "confirmed"})]) == [4, 5]
        assert order_row(conn, ids[1]).status == "confirmed"
    # An unknown order fails the lot (the caller's transaction rolls back).
    with pytest.raises(UnknownReference, match="no order nope"), crm.begin() as conn:
        CrmOrders().answer_many(conn, [answers[0], Answer("nope", {}, "synced", None)])
    with crm.connect() as conn:
        assert order_row(conn, ids[0]).version == 2


def test_a_short_message_is_kept_whole(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(conn, "SO-12")
        exact = "y" * 1000
        CrmOrders().set_integration(conn, order_id, "error", exact)
        assert order_row(conn, order_id).integration_message == exact
