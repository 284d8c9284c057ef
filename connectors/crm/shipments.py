"""Shipments in the CRM, written by the hub from ERP deliveries.

A delivery becomes one ``crm_shipment`` (keyed for idempotence by the delivery's DocNum) and
one ``crm_shipment_line`` per CRM order line and batch. ``batch_number`` is part of that
table's primary key, so it must hold a value even for a line shipped without batches; such a
line is recorded under the batch number :data:`UNBATCHED` ("-"), which reads as "no batch" to
a person and can never be mistaken for a real ERP batch number or for a missing value.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import Connection, select

from connectors.crm.schema import crm_order, crm_shipment, crm_shipment_line
from connectors.crm.support import db_errors
from hub.errors import UnknownReference
from hub.model.records import Delivery

__all__ = ["UNBATCHED", "CrmShipments"]

#: The batch number recorded for a delivery line that names no batch.
UNBATCHED = "-"


class CrmShipments:
    """Writer of ``crm_shipment`` and ``crm_shipment_line``."""

    def record(self, conn: Connection, order_id: str, delivery: Delivery,
               line_nos: Mapping[int, int], *, order_doc_entry: int | None = None) -> bool:
        """Record what ``delivery`` shipped of the CRM order ``order_id``; False when the
        delivery was recorded already (nothing changes then).

        ``line_nos`` maps the ERP order line (``DeliveryLine.order_line``) to the CRM line_no;
        only delivery lines it names are recorded, and with ``order_doc_entry`` only those
        of that ERP order (a delivery may ship several orders). Quantities of the same line
        and batch are summed. Raises UnknownReference for an unknown order or when the
        delivery ships none of the lines named.
        """
        delivery_number = str(delivery.doc_num)
        with db_errors(f"record delivery {delivery_number} in the CRM"):
            recorded = conn.execute(
                select(crm_shipment.c.shipment_id)
                .where(crm_shipment.c.erp_delivery_number == delivery_number)).first()
            if recorded is not None:
                return False
            number = conn.execute(select(crm_order.c.order_number)
                                  .where(crm_order.c.order_id == order_id)).scalar()
            if number is None:
                raise UnknownReference(f"delivery {delivery_number}: the CRM has no order "
                                       f"{order_id}")
            shipped = _per_line_and_batch(delivery, line_nos, order_doc_entry)
            if not shipped:
                raise UnknownReference(f"delivery {delivery_number} ships none of the lines "
                                       f"of order {number} that the hub knows")
            shipment_id = str(uuid.uuid4())
            conn.execute(crm_shipment.insert().values(
                shipment_id=shipment_id, order_id=order_id,
                erp_delivery_number=delivery_number, shipped_on=delivery.delivery_date))
            conn.execute(crm_shipment_line.insert(), [
                {"shipment_id": shipment_id, "line_no": line_no, "batch_number": batch,
                 "product_code": product, "quantity": quantity}
                for (line_no, batch), (product, quantity) in sorted(shipped.items())
            ])
        return True


def _per_line_and_batch(delivery: Delivery, line_nos: Mapping[int, int],
                        order_doc_entry: int | None,
                        ) -> dict[tuple[int, str], tuple[str, Decimal]]:
    """(CRM line_no, batch number) → (product code, summed quantity)."""
    out: dict[tuple[int, str], tuple[str, Decimal]] = {}
    for line in delivery.lines:
        if order_doc_entry is not None and line.order_doc_entry != order_doc_entry:
            continue
        line_no = line_nos.get(line.order_line)
        if line_no is None:
            continue
        parts = [(b.batch_number, b.quantity) for b in line.batches] or [
            (UNBATCHED, line.quantity)]
        for batch, quantity in parts:
            _, before = out.get((line_no, batch), (line.product_code, Decimal(0)))
            out[(line_no, batch)] = (line.product_code, before + quantity)
    return out
