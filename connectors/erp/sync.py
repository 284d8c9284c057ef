"""The ERP connector's parts: a poller of the ERP, and an applier of CRM changes into it.

The poller publishes partners, orders (with their delivery and invoice progress) and
deliveries with batches. The applier creates and updates business partners and sales orders
from the CRM, merging three ways with field ownership, and answers each order with an
``order.status`` (its DocNum and status, or why it could not be synced).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Connection, func, select

from connectors.erp.documents import ErpDeliveries
from connectors.erp.orders import ErpOrders
from connectors.erp.partners import ErpPartners
from connectors.erp.schema import dln1, inv1, odln, oinv, ordr
from hub.errors import DependencyMissing, HubError, InvalidMessage, PermanentError
from hub.model.messages import (
    DeliveryPosted,
    Message,
    OrderChanged,
    OrderStatusChanged,
    PartyChanged,
)
from hub.model.records import Order
from hub.outbox import Outbox
from hub.sync.conflicts import Conflicts
from hub.sync.merge import decide, project
from hub.sync.orders import (
    ALL_FIELDS,
    TO_CRM,
    TO_ERP,
    older,
    order_owner,
    party_fields,
    remember_source,
    remember_written,
)
from hub.sync.parts import Applier, Poller, Stream, reject_source_row
from hub.sync.state import Side, SyncState
from hub.sync.xref import Xref
from hub.watermark import Change, Watermark

__all__ = ["ErpApplier", "ErpPoller", "erp_version", "order_key"]

log = logging.getLogger(__name__)


def doc_key(doc_entry: int) -> str:
    return f"{doc_entry:012d}"


def order_key(order: Order) -> str:
    """The correlation key of an ERP order: the CRM's order number, or ``ERP-<DocNum>``."""
    return order.order_number or f"ERP-{order.erp_doc_num}"


def erp_version(conn: Connection, doc_entry: int) -> str:
    """The order's version as its poller sees it: the newest UpdateDate of the order and of
    the deliveries and invoices that refer to it."""
    deliveries = select(dln1.c.DocEntry).where(dln1.c.BaseType == 17,
                                               dln1.c.BaseEntry == doc_entry)
    invoices = select(inv1.c.DocEntry).where(inv1.c.BaseType == 15,
                                             inv1.c.BaseEntry.in_(deliveries))
    stamps = [
        conn.execute(select(ordr.c.UpdateDate).where(ordr.c.DocEntry == doc_entry)).scalar(),
        conn.execute(select(func.max(odln.c.UpdateDate)).where(
            odln.c.DocEntry.in_(deliveries))).scalar(),
        conn.execute(select(func.max(oinv.c.UpdateDate)).where(
            oinv.c.DocEntry.in_(invoices))).scalar(),
    ]
    newest = max(s for s in stamps if s is not None)
    return str(newest.isoformat(timespec="microseconds"))


class ErpPoller(Poller):
    """Reads ERP partners, orders and deliveries into the outbox."""

    name = "erp-poller"
    system = "erp"

    def streams(self) -> Sequence[Stream]:
        orders, partners, deliveries = ErpOrders(), ErpPartners(), ErpDeliveries()
        return [
            Stream(Watermark("erp.OCRD"), partners.changes, self._party_messages),
            Stream(Watermark("erp.ORDR"), orders.changed_keys, self._order_messages,
                   load=orders.load),
            Stream(Watermark("erp.ODLN"), deliveries.changes, self._delivery_messages),
        ]

    def _party_messages(self, hub: Connection, _erp: Connection,
                        changes: Sequence[Change[Any]]) -> list[Message]:
        out: list[Message] = []
        for change in changes:
            party = change.row
            cid = Xref.resolve(hub, "party", erp=party.erp_code, crm=party.crm_id)
            state = SyncState.load(hub, "party", cid)
            if state.exists and state.side("erp").fields == party_fields(party):
                continue  # the hub wrote it, or nothing the CRM cares about changed
            out.append(PartyChanged(correlation_key=party.number, source="erp",
                                    source_version=change.version, party=party))
        return out

    def _order_messages(self, hub: Connection, _erp: Connection,
                        changes: Sequence[Change[Any]]) -> list[Message]:
        out: list[Message] = []
        for change in changes:
            if isinstance(change.row, InvalidMessage):
                reject_source_row(hub, "erp.order.changed", change, change.row)
                continue
            order: Order = change.row
            cid = Xref.resolve(hub, "order", erp=doc_key(order.erp_doc_entry or 0),
                               crm=order.crm_id)
            state = SyncState.load(hub, "order", cid)
            known = state.side("erp").fields
            if state.exists and all(known.get(k) == v
                                    for k, v in project(order, TO_CRM).items()):
                continue  # an echo of the hub's own write
            out.append(OrderChanged(correlation_key=order_key(order), source="erp",
                                    source_version=change.version, order=order))
        return out

    def _delivery_messages(self, _hub: Connection, erp: Connection,
                           changes: Sequence[Change[Any]]) -> list[Message]:
        orders = ErpOrders()
        out: list[Message] = []
        for change in changes:
            delivery = change.row
            first = orders.read(erp, delivery.lines[0].order_doc_entry)
            key = order_key(first) if first else f"ERP-DLV-{delivery.doc_num}"
            out.append(DeliveryPosted(correlation_key=key, source="erp",
                                      source_version=change.version, delivery=delivery))
        return out


#: What writing one order did: (DocEntry, the order as now in the ERP, its version,
#: conflicts, a note for the CRM).
Written = tuple[int | None, Order | None, str | None, list[Any], str | None]


@dataclass
class OrderPlan:
    """One CRM order change and what the hub knows of it, read before writing to the ERP."""

    message: OrderChanged
    cid: str
    state: SyncState
    bound: str | None
    stale: bool


class ErpApplier(Applier):
    """Applies CRM customers and orders to the ERP."""

    name = "erp-applier"
    consumes: ClassVar[tuple[str, ...]] = ("crm.party.changed", "crm.order.changed")
    #: Orders from the CRM arrive held ("approval pending") until someone confirms them.
    confirm_new_orders = False

    def apply(self, message: Message, *, final: bool) -> None:
        if isinstance(message, PartyChanged):
            self._party(message)
        elif isinstance(message, OrderChanged):
            self._order(message, final=final)
        else:
            with self.runtime.store.begin() as hub:
                self.done(hub, message)

    def _party(self, message: PartyChanged) -> None:
        party = message.party
        store, erp = self.runtime.store, self.runtime.system("erp")
        with store.begin() as hub:
            cid = Xref.resolve(hub, "party", crm=party.crm_id, erp=party.erp_code)
            state = SyncState.load(hub, "party", cid)
        if state.exists and older(message.source_version, state.side("crm").version):
            with store.begin() as hub:
                self.done(hub, message)
            return
        partners = ErpPartners()
        with erp.begin() as conn:
            current = partners.read(conn, party.erp_code or party.number)
            if current is None or party_fields(current) != party_fields(party):
                code = partners.upsert(conn, party)
            else:
                code = current.erp_code or party.number
        with store.begin() as hub:
            Xref.bind(hub, "party", cid, **{k: v for k, v in
                                            (("crm", party.crm_id), ("erp", code)) if v})
            state.sides["crm"] = Side(message.source_version, party_fields(party))
            remember_written(state.side("erp"), None, party_fields(party))
            state.save(hub)
            self.done(hub, message)

    def apply_batch(self, messages: Sequence[Message], finals: Sequence[bool]
                    ) -> list[BaseException | None]:
        """Orders of different keys go to the ERP together, in one ERP transaction (each in
        its own savepoint, so one refused order does not undo the others); anything else,
        and an order whose key is already in the running group, waits for the group."""
        outcomes: list[BaseException | None] = []
        group: list[OrderChanged] = []
        group_finals: list[bool] = []

        def flush() -> None:
            if group:
                outcomes.extend(self._orders(group, group_finals))
                group.clear()
                group_finals.clear()

        for message, final in zip(messages, finals, strict=True):
            if isinstance(message, OrderChanged):
                if any(m.correlation_key == message.correlation_key for m in group):
                    flush()
                group.append(message)
                group_finals.append(final)
                continue
            flush()
            outcomes.extend(super().apply_batch([message], [final]))
        flush()
        return outcomes

    def _orders(self, messages: Sequence[OrderChanged], finals: Sequence[bool]
                ) -> list[BaseException | None]:
        if len(messages) == 1:
            return super().apply_batch(messages, finals)
        try:
            return self._orders_together(messages)
        except HubError as exc:
            # Something beyond one order (the ERP unreachable, a deadlock): one at a time,
            # each with its own retry and dead-letter path.
            log.info("ERP batch of %d orders failed as a whole (%s); applying one by one",
                     len(messages), exc)
            return super().apply_batch(messages, finals)

    def _orders_together(self, messages: Sequence[OrderChanged]) -> list[BaseException | None]:
        store = self.runtime.store
        with store.begin() as hub:
            plans = [self._plan(hub, message) for message in messages]
        written: dict[int, Written] = {}
        refused: dict[int, PermanentError] = {}
        with self.runtime.system("erp").begin() as conn:
            for index, plan in enumerate(plans):
                if plan.stale:
                    continue
                savepoint = conn.begin_nested()
                try:
                    written[index] = self._write(conn, plan.message.order, plan.state,
                                                 plan.bound)
                    savepoint.commit()
                except PermanentError as exc:
                    savepoint.rollback()
                    refused[index] = exc
            # Remembered before the ERP commits (see _order).
            with store.begin() as hub:
                for index, result in written.items():
                    self._remember(hub, plans[index], result)
        with store.begin() as hub:
            answers: list[Message] = []
            for index, plan in enumerate(plans):
                if index in refused:
                    answers.append(self._error_answer(plan.message, str(refused[index])))
                    continue
                if index in written:
                    answers.append(self._answer(plan.message, written[index]))
                self.done(hub, plan.message)
            Outbox.add(hub, answers, partitions=self.runtime.settings.partitions)
        self.runtime.outbox_wakeup.set()
        return [refused.get(index) for index in range(len(plans))]

    def _plan(self, hub: Connection, message: OrderChanged) -> OrderPlan:
        order = message.order
        cid = Xref.resolve(hub, "order", crm=order.crm_id)
        state = SyncState.load(hub, "order", cid)
        bound = Xref.local(hub, "order", cid, "erp")
        stale = state.exists and older(message.source_version, state.side("crm").version)
        return OrderPlan(message, cid, state, bound, stale)

    def _remember(self, hub: Connection, plan: OrderPlan, result: Written) -> None:
        order, cid, state = plan.message.order, plan.cid, plan.state
        doc, after, version, conflicts, _ = result
        if doc is not None and after is not None:
            Xref.bind(hub, "order", cid, crm=order.crm_id or "", erp=doc_key(doc))
            for line in after.lines:
                Xref.bind(hub, "order_line", Xref.child(cid, line.line_no),
                          crm=f"{order.crm_id}/{line.line_no}",
                          erp=f"{doc_key(doc)}/{line.erp_line}")
            remember_written(state.side("erp"), version, project(after, ALL_FIELDS))
        remember_source(state.side("crm"), plan.message.source_version, order)
        state.save(hub)
        Conflicts.record(hub, kind="order", canonical_id=cid, key=plan.message.correlation_key,
                         source="crm", conflicts=conflicts,
                         message_id=str(plan.message.message_id))

    @staticmethod
    def _answer(message: OrderChanged, result: Written) -> OrderStatusChanged:
        doc, after, version, _, note = result
        order = message.order
        return OrderStatusChanged(
            correlation_key=message.correlation_key, source="erp",
            source_version=version or message.source_version,
            causation_id=message.message_id, order_number=order.order_number,
            crm_id=order.crm_id, erp_doc_entry=doc,
            erp_doc_num=after.erp_doc_num if after else None,
            status=after.status if after else "cancelled",
            integration_status="synced", integration_message=note,
        )

    @staticmethod
    def _error_answer(message: OrderChanged, reason: str) -> OrderStatusChanged:
        order = message.order
        return OrderStatusChanged(
            correlation_key=message.correlation_key, source="erp",
            source_version=message.source_version, causation_id=message.message_id,
            order_number=order.order_number, crm_id=order.crm_id,
            integration_status="error", integration_message=reason[:1000],
        )

    def _order(self, message: OrderChanged, *, final: bool) -> None:
        store = self.runtime.store
        with store.begin() as hub:
            plan = self._plan(hub, message)
        if plan.stale:
            with store.begin() as hub:
                self.done(hub, message)  # stale: a newer change of this order was applied
            return
        try:
            with self.runtime.system("erp").begin() as conn:
                result = self._write(conn, message.order, plan.state, plan.bound)
                # Remember what was written before the ERP commits it, so the poller can never
                # read the write without knowing it is the hub's own.
                with store.begin() as hub:
                    self._remember(hub, plan, result)
        except PermanentError as exc:
            self._answer_error(message, str(exc))
            raise
        except HubError as exc:
            if final:
                self._answer_error(message, f"the ERP could not be reached: {exc}")
            raise
        with store.begin() as hub:
            Outbox.add(hub, [self._answer(message, result)],
                       partitions=self.runtime.settings.partitions)
            self.done(hub, message)
        self.runtime.outbox_wakeup.set()

    def _write(self, conn: Connection, order: Order, state: SyncState, bound: str | None
               ) -> Written:
        """Create or merge the order in the ERP transaction ``conn``."""
        orders = ErpOrders()
        doc = int(bound) if bound else None
        if doc is not None and order.crm_id and orders.read(conn, doc) is None:
            # Bound in the hub but not in the ERP: the ERP transaction that created it was
            # rolled back after the hub had remembered it. Find it or create it again.
            doc = None
        if doc is None and order.crm_id:
            doc = orders.find_by_crm_id(conn, order.crm_id)
        conflicts: list[Any] = []
        if doc is None:
            if order.cancelled:
                return None, None, None, [], "cancelled before it reached the ERP"
            if ErpPartners().read(conn, order.customer) is None:
                raise DependencyMissing(
                    f"customer {order.customer} does not exist in the ERP")
            doc, _ = orders.create(conn, order, confirmed=self.confirm_new_orders)
        else:
            current = orders.read(conn, doc)
            if current is None:
                raise DependencyMissing(f"ERP order {doc} is not readable yet")
            decision = decide(
                source="crm", incoming=project(order, TO_ERP),
                incoming_base=state.side("crm").fields,
                current=project(current, TO_ERP), current_base=state.side("erp").fields,
                owner=order_owner(delivered=orders.has_deliveries(conn, doc)),
            )
            conflicts = decision.conflicts
            writes = dict(decision.writes)
            if writes.pop("cancelled", False) is True:
                orders.cancel(conn, doc)
            lines = order.lines if writes.pop("lines", None) is not None else None
            header = {name: getattr(order, name) for name in writes}
            if header or lines is not None:
                orders.update(conn, doc, header, lines)
        after = orders.read(conn, doc)
        version = erp_version(conn, doc)
        return doc, after, version, conflicts, None

    def _answer_error(self, message: OrderChanged, reason: str) -> None:
        """Tell the CRM why its order did not reach the ERP (the message is dead-lettered)."""
        with self.runtime.store.begin() as hub:
            Outbox.add(hub, [self._error_answer(message, reason)],
                       partitions=self.runtime.settings.partitions)
        self.runtime.outbox_wakeup.set()
