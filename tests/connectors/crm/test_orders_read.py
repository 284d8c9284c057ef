"""Reading CRM orders as canonical orders, and polling their changes page by page."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import SQLAlchemyError

from connectors.crm import CrmOrders
from hub.errors import HubError, InvalidMessage, MappingError
from hub.model.records import Order
from tests.connectors.crm.kit import HUAYI, T0, insert_account, insert_order, line

NOTES = "请在周五前送达，谢谢。Deliver to gate 3."  # noqa: RUF001 (a Chinese comma)


def test_a_submitted_order_reads_with_exact_decimals_and_chinese_notes(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(
            conn, "SO-2026-000123", notes=NOTES, total_amount=D("1234567.89"),
            lines=[line(2, "MEK-99", "0.125", "1234.5678"),
                   line(1, quantity="1250.125", price="3.4567", description="乙酸乙酯 99.9%",
                        shipped_quantity=D("200.500"))])
    with crm.connect() as conn:
        order = CrmOrders().read(conn, order_id)
    assert order is not None
    assert (order.crm_id, order.order_number, order.status) == (
        order_id, "SO-2026-000123", "submitted")
    assert (order.customer, order.customer_crm_id) == ("C00042", HUAYI.account_id)
    assert order.notes == NOTES and order.currency == "EUR"
    assert order.customer_po == "PO-SO-2026-000123"
    assert order.requested_date == dt.date(2026, 4, 15) and order.promised_date is None
    assert order.total_amount == D("1234567.89") and isinstance(order.total_amount, D)
    assert order.erp_doc_num is None and order.cancelled is False
    assert [ln.line_no for ln in order.lines] == [1, 2]
    first, second = order.lines
    assert (first.quantity, first.unit_price, first.shipped_quantity) == (
        D("1250.125"), D("3.4567"), D("200.5"))
    assert str(first.quantity) == "1250.125" and str(second.unit_price) == "1234.5678"
    assert first.description == "乙酸乙酯 99.9%" and second.product_code == "MEK-99"
    assert (second.quantity, second.unit) == (D("0.125"), "kg")


def test_the_customer_is_the_erp_code_else_the_account_number(crm: Engine) -> None:
    with crm.begin() as conn:
        coded = insert_account(conn, "C90001", code="K-77")
        plain = insert_account(conn, "C90002", code=None)
        blank = insert_account(conn, "C90003", code="  ")
        ids = [insert_order(conn, f"SO-{n}", account_id=a)
               for n, a in enumerate((coded, plain, blank))]
    with crm.connect() as conn:
        orders = [CrmOrders().read(conn, i) for i in ids]
    assert [(o.customer, o.customer_crm_id) for o in orders if o] == [
        ("K-77", coded), ("C90002", plain), ("C90003", blank)]


def test_erp_doc_num_and_cancellation(crm: Engine) -> None:
    with crm.begin() as conn:
        bound = insert_order(conn, "SO-1", erp_order_number="4711", status="confirmed")
        cancelled = insert_order(conn, "SO-2", erp_order_number=" 12 ", status="cancelled")
    with crm.connect() as conn:
        first, second = (CrmOrders().read(conn, i) for i in (bound, cancelled))
        missing = CrmOrders().read(conn, "no-such-order")
    assert first is not None and (first.erp_doc_num, first.cancelled) == (4711, False)
    assert second is not None and (second.erp_doc_num, second.cancelled) == (12, True)
    assert missing is None


def test_a_non_numeric_erp_order_number_is_a_clear_mapping_error(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(conn, "SO-2026-000007", erp_order_number="A-12")
    with crm.connect() as conn, pytest.raises(MappingError) as caught:
        CrmOrders().read(conn, order_id)
    assert str(caught.value) == ("order SO-2026-000007: the ERP order number 'A-12' is not "
                                 "a number")


def test_invalid_rows_raise_invalid_message_in_sales_words(crm: Engine) -> None:
    with crm.begin() as conn:
        zero = insert_order(conn, "SO-2026-000123",
                            lines=[line(1), line(2, quantity="0")])
        several = insert_order(conn, "SO-2026-000124", currency="EU",
                               lines=[line(1, price="-1.5"), line(3, product="  ")])
    with crm.connect() as conn:
        with pytest.raises(InvalidMessage) as first:
            CrmOrders().read(conn, zero)
        with pytest.raises(InvalidMessage) as second:
            CrmOrders().read(conn, several)
    assert str(first.value).startswith(
        "order SO-2026-000123, line 2: quantity must be greater than 0")
    text = str(second.value)
    assert "order SO-2026-000124: currency must be a three-letter currency code" in text
    assert "order SO-2026-000124, line 1: unit price must not be negative (it is -1.5" in text
    assert "order SO-2026-000124, line 3: product code is missing" in text
    assert "pydantic" not in text and "Input should" not in text


def _page(crm: Engine, lower: dt.datetime | None = None,
          after: tuple[dt.datetime, str] | None = None, limit: int = 100) -> list[Any]:
    with crm.connect() as conn:
        return CrmOrders().changes(conn, lower, after, limit)


def test_changes_skip_drafts_and_page_by_time_then_id(crm: Engine) -> None:
    later = T0 + dt.timedelta(microseconds=1)
    with crm.begin() as conn:
        insert_order(conn, "SO-D", status="draft", modified_at=T0)
        b = insert_order(conn, "SO-B", order_id="bbbb", modified_at=T0, lines=[line(1)])
        a = insert_order(conn, "SO-A", order_id="aaaa", modified_at=T0, version=7)
        c = insert_order(conn, "SO-C", order_id="0ccc", modified_at=later, status="shipped")
    everything = _page(crm)
    assert [(ch.key, ch.changed_at) for ch in everything] == [(a, T0), (b, T0), (c, later)]
    assert everything[0].version == "7" and everything[1].version == "1"
    assert isinstance(everything[1].row, Order) and len(everything[1].row.lines) == 1
    assert everything[2].row.status == "shipped"

    first = _page(crm, limit=1)
    assert [ch.key for ch in first] == [a]
    second = _page(crm, after=(first[-1].changed_at, first[-1].key), limit=1)
    assert [ch.key for ch in second] == [b], "same instant, next id"
    third = _page(crm, after=(second[-1].changed_at, second[-1].key), limit=1)
    assert [ch.key for ch in third] == [c]
    assert _page(crm, after=(later, c)) == []


def test_changes_honour_the_lower_bound(crm: Engine) -> None:
    with crm.begin() as conn:
        insert_order(conn, "SO-OLD", modified_at=T0 - dt.timedelta(seconds=30))
        edge = insert_order(conn, "SO-EDGE", modified_at=T0)
        new = insert_order(conn, "SO-NEW", modified_at=T0 + dt.timedelta(seconds=5))
    assert [ch.key for ch in _page(crm, lower=T0)] == [edge, new]
    assert [ch.key for ch in _page(crm, lower=T0 + dt.timedelta(microseconds=1))] == [new]
    assert len(_page(crm)) == 3


def test_a_bad_order_comes_back_in_place_without_losing_the_page(crm: Engine) -> None:
    with crm.begin() as conn:
        good = insert_order(conn, "SO-1", modified_at=T0, lines=[line(1), line(2)])
        bad = insert_order(conn, "SO-2", modified_at=T0 + dt.timedelta(seconds=1),
                           lines=[line(1), line(2, quantity="-3")])
        odd = insert_order(conn, "SO-3", modified_at=T0 + dt.timedelta(seconds=2),
                           erp_order_number="n/a")
        last = insert_order(conn, "SO-4", modified_at=T0 + dt.timedelta(seconds=3),
                            lines=[line(5)])
    page = _page(crm)
    assert [ch.key for ch in page] == [good, bad, odd, last]
    assert isinstance(page[0].row, Order) and len(page[0].row.lines) == 2
    assert isinstance(page[1].row, InvalidMessage)
    assert str(page[1].row).startswith("order SO-2, line 2: quantity must be greater than 0")
    assert isinstance(page[2].row, InvalidMessage)
    assert isinstance(page[2].row.__cause__, MappingError) and "'n/a'" in str(page[2].row)
    assert isinstance(page[3].row, Order) and page[3].row.lines[0].line_no == 5


def test_a_page_costs_three_queries_whatever_its_size(crm: Engine) -> None:
    with crm.begin() as conn:
        for n in range(6):
            insert_order(conn, f"SO-{n}", modified_at=T0 + dt.timedelta(seconds=n),
                         lines=[line(1), line(2)])
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(crm, "before_cursor_execute", count)
    try:
        page = _page(crm)
    finally:
        event.remove(crm, "before_cursor_execute", count)
    assert len(page) == 6 and all(len(ch.row.lines) == 2 for ch in page)
    # keys and versions, then the headers and the lines of the unseen ones
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 3


def test_database_errors_leave_as_hub_errors(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(conn, "SO-1", lines=[line(1)])
    with crm.connect() as conn:
        conn.exec_driver_sql("DROP TABLE crm_order_line")
        with pytest.raises(HubError) as caught:
            CrmOrders().read(conn, order_id)
        conn.rollback()
    assert str(caught.value).startswith(f"read CRM order {order_id}: ")
    assert isinstance(caught.value.__cause__, SQLAlchemyError)


def test_orders_awaiting_the_erp_are_those_sent_without_a_number_or_an_error(crm: Engine
                                                                            ) -> None:
    orders = CrmOrders()
    with crm.connect() as conn:
        assert orders.awaiting_erp(conn) == (0, None)
    later = T0 + dt.timedelta(minutes=5)
    with crm.begin() as conn:
        insert_order(conn, "SO-AWAIT-1", modified_at=later)
        insert_order(conn, "SO-AWAIT-2", status="confirmed", integration_status="synced")
        insert_order(conn, "SO-DRAFT", status="draft")  # not sent yet
        insert_order(conn, "SO-CANCELLED", status="cancelled")  # cancelled before the ERP
        insert_order(conn, "SO-NUMBERED", erp_order_number="1042", integration_status="synced")
        insert_order(conn, "SO-REFUSED", integration_status="error",
                     integration_message="item(s) NOPE do not exist in the ERP")
    with crm.connect() as conn:
        count, oldest = orders.awaiting_erp(conn)
    assert count == 2
    assert oldest == T0  # naive UTC, as every time the hub keeps
