"""The ERP connector's poller: partners, orders (with their delivery and invoice progress)
and deliveries with batches, published as they change. Orders the hub created itself are
recognised by the version it remembered and never read back
(:func:`hub.sync.orders.known_whole`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from connectors.erp.common import doc_key
from connectors.erp.documents import ErpDeliveries
from connectors.erp.orders import ErpOrders
from connectors.erp.partners import ErpPartners
from hub.errors import InvalidMessage
from hub.journal import observed, record
from hub.model.messages import DeliveryPosted, Message, OrderChanged
from hub.model.records import Order
from hub.sync.merge import project
from hub.sync.orders import FROM_ERP, known_whole
from hub.sync.parts import Poller, Stream, party_messages, reject_source_row
from hub.sync.state import SyncState
from hub.sync.xref import Xref
from hub.watermark import Change, Watermark

__all__ = ["ErpPoller", "order_key"]


def order_key(order: Order) -> str:
    """The correlation key of an ERP order: the CRM's order number, or ``ERP-<DocNum>``."""
    return order.order_number or f"ERP-{order.erp_doc_num}"


class ErpPoller(Poller):
    """Reads ERP partners, orders and deliveries into the outbox."""

    name = "erp-poller"
    system = "erp"

    def streams(self) -> Sequence[Stream]:
        orders, partners, deliveries = ErpOrders(), ErpPartners(), ErpDeliveries()
        return [
            Stream(Watermark("erp.OCRD"), partners.changes,
                   functools.partial(party_messages, system="erp")),
            Stream(Watermark("erp.ORDR"), orders.changed_keys, self._order_messages,
                   load=orders.load, own=functools.partial(known_whole, system="erp")),
            Stream(Watermark("erp.ODLN"), deliveries.changes, self._delivery_messages),
        ]

    def _order_messages(self, hub: Connection, _erp: Connection,
                        changes: Sequence[Change[Any]]) -> list[Message]:
        out: list[Message] = []
        good: list[Change[Any]] = []
        for change in changes:
            if isinstance(change.row, InvalidMessage):
                reject_source_row(hub, "erp.order.changed", change, change.row)
            else:
                good.append(change)
        cids = Xref.resolve_many(hub, "order", [
            {"erp": doc_key(c.row.erp_doc_entry or 0), "crm": c.row.crm_id} for c in good])
        states = SyncState.load_many(hub, "order", cids)
        for change, cid in zip(good, cids, strict=True):
            order: Order = change.row
            state = states[cid]
            known = state.side("erp").fields
            if state.exists and all(known.get(k) == v
                                    for k, v in project(order, FROM_ERP).items()):
                continue  # an echo of the hub's own write, or nothing the CRM shows
            out.append(OrderChanged(correlation_key=order_key(order), source="erp",
                                    source_version=change.version, order=order,
                                    occurred_at=change.changed_at))
        return out

    def _delivery_messages(self, hub: Connection, erp: Connection,
                           changes: Sequence[Change[Any]]) -> list[Message]:
        orders = ErpOrders()
        out: list[Message] = []
        for change in changes:
            delivery = change.row
            first = orders.read(erp, delivery.lines[0].order_doc_entry)
            key = order_key(first) if first else f"ERP-DLV-{delivery.doc_num}"
            out.append(DeliveryPosted(correlation_key=key, source="erp",
                                      source_version=change.version, delivery=delivery,
                                      occurred_at=change.changed_at))
        record(hub, observed(out))  # the batches, for hub.trace (under order and batch keys)
        return out
