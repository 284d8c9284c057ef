"""ERP deliveries recorded as CRM shipments: once per delivery, per line and batch, summed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from connectors.crm import UNBATCHED, CrmShipments
from connectors.crm.schema import crm_shipment, crm_shipment_line
from hub.errors import UnknownReference
from hub.model.records import BatchAllocation, Delivery, DeliveryLine
from tests.connectors.crm.kit import insert_order, line

SHIPPED_ON = dt.date(2026, 3, 20)


def _delivery(*lines: DeliveryLine, doc_num: int = 9001) -> Delivery:
    return Delivery(doc_entry=501, doc_num=doc_num, customer="C00042",
                    delivery_date=SHIPPED_ON, lines=lines)


def _line(num: int, order_line: int, quantity: str, *batches: tuple[str, str],
          order: int = 31, product: str = "ETAC-99") -> DeliveryLine:
    return DeliveryLine(
        line_num=num, order_doc_entry=order, order_line=order_line, product_code=product,
        quantity=D(quantity),
        batches=tuple(BatchAllocation(batch_number=b, quantity=D(q)) for b, q in batches))


def _recorded(conn: Connection) -> tuple[list[Any], dict[Any, Any]]:
    shipments = list(conn.execute(select(crm_shipment)).all())
    lines = {
        (r.line_no, r.batch_number): (r.product_code, r.quantity)
        for r in conn.execute(select(crm_shipment_line))
    }
    return shipments, lines


def test_a_delivery_is_recorded_once_with_batches_summed(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(conn, "SO-1", lines=[line(1), line(2, "MEK-99"), line(3)])
    delivery = _delivery(
        _line(0, 0, "600", ("ETAC-2603-001", "400.125"), ("ETAC-2603-002", "199.875")),
        _line(1, 0, "100.5", ("ETAC-2603-001", "100.5")),
        _line(2, 1, "20", product="MEK-99"),
        _line(3, 7, "5"),  # an ERP line the hub has no CRM line for
    )
    with crm.begin() as conn:
        first = CrmShipments().record(conn, order_id, delivery, {0: 1, 1: 2})
    with crm.begin() as conn:
        again = CrmShipments().record(conn, order_id, delivery, {0: 1, 1: 2})
    with crm.connect() as conn:
        shipments, lines = _recorded(conn)
    assert (first, again) == (True, False)
    assert len(shipments) == 1
    shipment = shipments[0]
    assert (shipment.order_id, shipment.erp_delivery_number, shipment.shipped_on) == (
        order_id, "9001", SHIPPED_ON)
    assert lines == {
        (1, "ETAC-2603-001"): ("ETAC-99", D("500.625")),
        (1, "ETAC-2603-002"): ("ETAC-99", D("199.875")),
        (2, UNBATCHED): ("MEK-99", D("20")),
    }
    assert UNBATCHED == "-"


def test_a_delivery_of_several_orders_can_be_narrowed_to_one(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(conn, "SO-2", lines=[line(1)])
    delivery = _delivery(_line(0, 0, "5", ("B-1", "5"), order=31),
                         _line(1, 0, "7", ("B-2", "7"), order=32), doc_num=9002)
    with crm.begin() as conn:
        assert CrmShipments().record(conn, order_id, delivery, {0: 1}, order_doc_entry=32)
    with crm.connect() as conn:
        _, lines = _recorded(conn)
    assert lines == {(1, "B-2"): ("ETAC-99", D("7"))}


def test_unknown_orders_and_deliveries_of_nothing_known_are_refused(crm: Engine) -> None:
    with crm.begin() as conn:
        order_id = insert_order(conn, "SO-3", lines=[line(1)])
    delivery = _delivery(_line(0, 4, "5"), doc_num=9003)
    with crm.connect() as conn:
        with pytest.raises(UnknownReference, match="the CRM has no order nope"):
            CrmShipments().record(conn, "nope", delivery, {4: 1})
        with pytest.raises(UnknownReference, match="9003 ships none of the lines of order SO-3"):
            CrmShipments().record(conn, order_id, delivery, {0: 1})
        shipments, lines = _recorded(conn)
    assert shipments == [] and lines == {}
