"""An order's progress through real ERP documents: status, shipped quantities, cancelling."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import Engine

from connectors.erp import ErpOrders
from connectors.erp.schema import ordr
from hub.errors import ForbiddenTransition, UnknownReference
from tests.connectors.erp.kit import T0, deliver, header, invoice, line, lines_of, order, stamp


def _status(erp: Engine, entry: int) -> tuple[str, list[tuple[Any, Any]]]:
    with erp.connect() as conn:
        got = ErpOrders().read(conn, entry)
    assert got is not None
    return got.status, [(ln.shipped_quantity, ln.open_quantity) for ln in got.lines]


def test_status_follows_deliveries_and_invoices(erp: Engine) -> None:
    orders = ErpOrders()
    with erp.begin() as conn:
        entry, _ = orders.create(conn, order(line(1, quantity="10"), line(2, "MEK-995", "5")),
                                 confirmed=False)
        # Another order delivered and invoiced on the same documents must not count here.
        other, _ = orders.create(conn, order(line(1, quantity="3"), crm_id="other"),
                                 confirmed=True)
    assert _status(erp, entry) == ("on_hold", [(0, D(10)), (0, D(5))])

    with erp.begin() as conn:
        first, _ = deliver(conn, entry, [(0, "4", [("LOT-A", "4")])])
    assert _status(erp, entry) == ("partially_shipped", [(D(4), D(6)), (0, D(5))])

    with erp.begin() as conn:
        second, _ = deliver(conn, entry, [(0, "6", [("LOT-B", "6")]), (1, "5", [])])
        shared, _ = deliver(conn, other, [(0, "3", [])])
    assert _status(erp, entry) == ("shipped", [(D(10), D(0)), (D(5), D(0))])

    with erp.begin() as conn:
        invoice(conn, first, [(0, "4")])
        invoice(conn, second, [(0, "6")])  # the MEK line of delivery 2 is not invoiced yet
        invoice(conn, shared, [(0, "3")])
    assert _status(erp, entry)[0] == "shipped"
    assert _status(erp, other)[0] == "invoiced"

    with erp.begin() as conn:
        invoice(conn, second, [(1, "5")])
    assert _status(erp, entry)[0] == "invoiced"


def test_cancel_closes_the_order_and_its_lines_once(erp: Engine) -> None:
    orders = ErpOrders()
    with erp.begin() as conn:
        entry, _ = orders.create(conn, order(line(1), line(2, "MEK-995")), confirmed=True)
        stamp(conn, ordr, entry, T0)
    with erp.begin() as conn:
        orders.cancel(conn, entry)
    with erp.connect() as conn:
        raw, raw_lines = header(conn, entry), lines_of(conn, entry)
        got = orders.read(conn, entry)
    assert (raw["CANCELED"], raw["DocStatus"], raw["UserSign2"]) == ("Y", "C", "hub")
    assert raw["UpdateDate"] > T0
    assert [r["LineStatus"] for r in raw_lines] == ["C", "C"]
    assert got is not None and got.cancelled and got.status == "cancelled"
    with erp.begin() as conn:
        stamp(conn, ordr, entry, T0)
        orders.cancel(conn, entry)  # again: nothing happens
    with erp.connect() as conn:
        assert header(conn, entry)["UpdateDate"] == T0


def test_an_order_that_shipped_cannot_be_cancelled(erp: Engine) -> None:
    orders = ErpOrders()
    with erp.begin() as conn:
        entry, num = orders.create(conn, order(line(1), line(2, "MEK-995")), confirmed=True)
        _, first = deliver(conn, entry, [(0, "1", [])])
        stamp(conn, ordr, entry, T0)
    with erp.begin() as conn, pytest.raises(ForbiddenTransition) as caught:
        orders.cancel(conn, entry)
    assert str(caught.value) == (
        f"order {num} has already shipped (delivery {first}); it cannot be cancelled")
    with erp.begin() as conn:
        _, second = deliver(conn, entry, [(1, "1", [])])
    with erp.begin() as conn, pytest.raises(ForbiddenTransition) as caught:
        orders.update(conn, entry, {"cancelled": True}, None)
    assert f"(deliveries {first}, {second})" in str(caught.value)
    with erp.connect() as conn:
        raw = header(conn, entry)
    assert (raw["CANCELED"], raw["DocStatus"], raw["UpdateDate"]) == ("N", "O", T0)
    with erp.begin() as conn, pytest.raises(UnknownReference, match="no sales order"):
        orders.cancel(conn, entry + 50)
