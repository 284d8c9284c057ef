"""Updating ERP orders from the CRM: header fields, and lines within what was delivered."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import Engine

from connectors.erp import ErpOrders
from connectors.erp.schema import ordr
from hub.errors import ForbiddenTransition, InvalidMessage, MappingError, UnknownReference
from hub.model.records import OrderLine
from tests.connectors.erp.kit import T0, deliver, header, line, lines_of, order, stamp


def _created(erp: Engine, *lines_: OrderLine) -> tuple[int, int]:
    with erp.begin() as conn:
        entry, num = ErpOrders().create(conn, order(*lines_), confirmed=True)
        stamp(conn, ordr, entry, T0)
        conn.execute(ordr.update().where(ordr.c.DocEntry == entry).values(UserSign2="lwang"))
    return entry, num


def test_header_fields_are_set_and_create_only_ones_ignored(erp: Engine) -> None:
    entry, num = _created(erp)
    orders = ErpOrders()
    with erp.begin() as conn:
        orders.update(conn, entry, {
            "notes": "改为周四发货", "customer_po": "PO-4712",
            "requested_date": dt.date(2026, 5, 1), "promised_date": dt.date(2026, 5, 3),
            "confirmed": False,
            # create-only or derived: none of these may change the stored order
            "currency": "USD", "customer": "C00043", "crm_id": "someone-else",
            "order_date": dt.date(2020, 1, 1), "erp_doc_num": 999, "total_amount": D("1"),
        }, None)
    with erp.connect() as conn:
        got, raw = orders.read(conn, entry), header(conn, entry)
    assert got is not None
    assert (got.notes, got.customer_po) == ("改为周四发货", "PO-4712")
    assert (got.requested_date, got.promised_date) == (dt.date(2026, 5, 1), dt.date(2026, 5, 3))
    assert got.confirmed is False and got.status == "on_hold"
    assert (got.currency, got.customer, got.erp_doc_num) == ("EUR", "C00042", num)
    assert got.crm_id != "someone-else" and got.order_date != dt.date(2020, 1, 1)
    assert got.total_amount == D("12.50"), "DocTotal is the lines' sum, not what was sent"
    assert raw["UpdateDate"] > T0 and raw["UserSign2"] == "hub"


def test_lines_are_added_changed_and_removed_by_line_no(erp: Engine) -> None:
    entry, _ = _created(erp, line(1), line(2, "MEK-995"), line(3, "IPA-999", "5", "2"))
    orders = ErpOrders()
    with erp.begin() as conn:
        orders.update(conn, entry, {"requested_date": dt.date(2026, 6, 1)}, [
            line(1, quantity="12.5"),                       # more of it
            line(3, "IPA-999", "5", "2.1", unit="drum"),    # dearer, in drums
            line(4, "TOL-995", "1", "100", description="甲苯"),  # new
        ])
    with erp.connect() as conn:
        got, raw, raw_lines = orders.read(conn, entry), header(conn, entry), lines_of(conn, entry)
    assert got is not None
    assert [(ln.line_no, ln.erp_line, ln.product_code, ln.quantity, ln.unit_price)
            for ln in got.lines] == [
        (1, 0, "ETAC-99", D("12.5"), D("1.25")),
        (3, 2, "IPA-999", D("5"), D("2.1")),
        (4, 3, "TOL-995", D("1"), D("100")),  # LineNum 1 of the removed line is not reused
    ]
    assert got.lines[1].unit == "drum" and got.lines[2].description == "甲苯"
    assert [r["OpenQty"] for r in raw_lines] == [D("12.5"), D("5"), D("1")]
    assert raw_lines[2]["ShipDate"] == dt.date(2026, 6, 1)
    assert raw_lines[2]["U_CRM_LINE"] == 4 and raw_lines[2]["LineStatus"] == "O"
    assert got.total_amount == D("126.13")  # 12.5 x 1.25 + 5 x 2.1 + 100 = 126.125, half up
    assert raw["DocStatus"] == "O" and raw["UserSign2"] == "hub" and raw["UpdateDate"] > T0


def test_delivered_lines_cannot_shrink_below_delivery_change_item_or_go(erp: Engine) -> None:
    entry, num = _created(erp, line(1, quantity="10"), line(2, "MEK-995"))
    orders = ErpOrders()
    with erp.begin() as conn:
        deliver(conn, entry, [(0, "4", [("LOT-1", "4")])])
    refusals = [
        ([line(1, quantity="3"), line(2, "MEK-995")],
         f"order {num} line 1 has already shipped 4; its quantity cannot be reduced to 3"),
        ([line(2, "MEK-995")],
         f"order {num} line 1 (ETAC-99) has already shipped; it cannot be removed"),
        ([line(1, "ACE-995", "10"), line(2, "MEK-995")],
         f"order {num} line 1 has already shipped 4 of ETAC-99; its item cannot be changed to "
         "ACE-995"),
    ]
    for wanted, message in refusals:
        with erp.begin() as conn, pytest.raises(ForbiddenTransition) as caught:
            orders.update(conn, entry, {}, wanted)
        assert str(caught.value) == message
    with erp.connect() as conn:
        assert [r["Quantity"] for r in lines_of(conn, entry)] == [D("10"), D("10")]
    with erp.begin() as conn:  # down to exactly what shipped: the line is done
        orders.update(conn, entry, {}, [line(1, quantity="4")])
    with erp.connect() as conn:
        raw_lines, raw = lines_of(conn, entry), header(conn, entry)
        got = orders.read(conn, entry)
    assert [(r["LineNum"], r["OpenQty"], r["LineStatus"]) for r in raw_lines] == [(0, 0, "C")]
    assert raw["DocStatus"] == "C" and raw["DocTotal"] == D("5.00")
    assert got is not None and got.status == "shipped"
    with erp.begin() as conn:  # and more again: open once more
        orders.update(conn, entry, {}, [line(1, quantity="6")])
    with erp.connect() as conn:
        assert [(r["OpenQty"], r["LineStatus"]) for r in lines_of(conn, entry)] == [(2, "O")]
        assert header(conn, entry)["DocStatus"] == "O"


def test_bad_updates_are_refused_with_reasons(erp: Engine) -> None:
    entry, _ = _created(erp)
    orders = ErpOrders()
    cases: list[tuple[int, dict[str, Any], list[OrderLine] | None, type[Exception], str]] = [
        (entry + 99, {"notes": "x"}, None, UnknownReference,
         f"the ERP has no sales order with DocEntry {entry + 99}"),
        (entry, {}, [line(1), line(2, "NOPE-1")], UnknownReference,
         "item(s) NOPE-1 do not exist in the ERP"),
        (entry, {}, [], InvalidMessage, "the order has no lines"),
        (entry, {}, [line(None)], InvalidMessage,
         "every line of an order update needs its line number"),
        (entry, {"notes": "n" * 300}, None, MappingError,
         "order notes too long for the ERP: 300 characters where ORDR.Comments holds at most "
         "254 (nothing was truncated)"),
    ]
    for doc_entry, fields, wanted, error, message in cases:
        with erp.begin() as conn, pytest.raises(error) as caught:
            orders.update(conn, doc_entry, fields, wanted)
        assert str(caught.value) == message
    with erp.connect() as conn:
        raw = header(conn, entry)
    assert raw["UpdateDate"] == T0 and raw["Comments"] == "请于周五前发货"


def test_cancelled_through_fields_cancels_and_never_reopens(erp: Engine) -> None:
    entry, num = _created(erp)
    orders = ErpOrders()
    with erp.begin() as conn:
        orders.update(conn, entry, {"cancelled": True, "notes": "客户取消"}, None)
    with erp.connect() as conn:
        got = orders.read(conn, entry)
    assert got is not None and got.status == "cancelled" and got.notes == "客户取消"
    with erp.begin() as conn, pytest.raises(ForbiddenTransition, match="cannot be reopened"):
        orders.update(conn, entry, {"cancelled": False}, None)
    with erp.begin() as conn, pytest.raises(
            ForbiddenTransition, match=f"order {num} is cancelled in the ERP; its lines"):
        orders.update(conn, entry, {}, [line(1, quantity="2")])
