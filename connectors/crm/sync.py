"""The CRM connector's parts: a poller of the CRM, and an applier of ERP changes into it.

The poller publishes accounts and submitted orders; an order the canonical model rejects is
marked ``integration_status = error`` with the reason instead. The applier writes what comes
from the ERP: numbers, status, promised date, shipped quantities and shipments with batches,
orders and customers entered in the ERP, and the ERP's answer to each CRM order.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import Connection

from connectors.crm.accounts import CrmAccounts
from connectors.crm.orders import Answer, CrmOrders
from connectors.crm.shipments import CrmShipments
from hub.components import AWAITING_KEY, OLDEST_KEY
from hub.errors import DependencyMissing, InvalidMessage, UnknownReference, db_errors
from hub.model.messages import (
    DeliveryPosted,
    Message,
    OrderChanged,
    OrderStatusChanged,
    PartyChanged,
)
from hub.model.records import Order
from hub.runtime import Runtime, SystemName
from hub.store.bulk import insert_ignore
from hub.store.inbox import Inbox
from hub.store.tables import id_xref
from hub.sync.conflicts import Conflicts
from hub.sync.merge import decide, project
from hub.sync.orders import (
    ALL_FIELDS,
    REFUSED,
    TO_CRM,
    TO_ERP,
    known_whole,
    older,
    order_owner,
    party_fields,
    refused_before,
    remember_source,
    remember_written,
)
from hub.sync.parts import Applier, Poller, Stream, party_messages
from hub.sync.state import PENDING, Side, SyncState
from hub.sync.xref import Xref
from hub.watermark import Change, Watermark

__all__ = ["CrmApplier", "CrmPoller"]

log = logging.getLogger(__name__)

ERP_DOC = "{:012d}"


class CrmPoller(Poller):
    """Reads CRM accounts and submitted orders into the outbox."""

    name = "crm-poller"
    system = "crm"

    #: Seconds between two counts of the orders awaiting the ERP (:meth:`after_round`).
    count_every = 30.0

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self._rejected: list[tuple[str, str]] = []
        self._awaiting: dict[str, Any] = {}
        self._count_due = 0.0  # monotonic

    def streams(self) -> Sequence[Stream]:
        orders = CrmOrders()
        return [
            Stream(Watermark("crm.crm_account"), CrmAccounts().changes,
                   functools.partial(party_messages, system="crm")),
            Stream(Watermark("crm.crm_order"), orders.changed_keys, self._order_messages,
                   load=orders.load, own=functools.partial(known_whole, system="crm")),
        ]

    def _order_messages(self, hub: Connection, _crm: Connection,
                        changes: Sequence[Change[Any]]) -> list[Message]:
        out: list[Message] = []
        rejected = [(c.key, str(c.row)) for c in changes if isinstance(c.row, InvalidMessage)]
        orders: list[Order] = [c.row for c in changes if not isinstance(c.row, InvalidMessage)]
        cids = Xref.resolve_many(hub, "order", [{"crm": o.crm_id} for o in orders])
        states = SyncState.load_many(hub, "order", cids)
        versions = [(c.version, c.changed_at) for c in changes
                    if not isinstance(c.row, InvalidMessage)]
        for order, cid, (version, changed_at) in zip(orders, cids, versions, strict=True):
            state = states[cid]
            known = state.side("crm").fields
            if state.exists and all(known.get(k) == v for k, v in project(order, TO_ERP).items()):
                continue  # an echo of the hub's own write, or nothing the ERP cares about
            if state.exists and refused_before(state.side(REFUSED), order):
                continue  # the ERP refused this content already; the CRM shows why
            out.append(OrderChanged(correlation_key=order.order_number or order.crm_id or "?",
                                    source="crm", source_version=version, order=order,
                                    occurred_at=changed_at))
        self._rejected.extend(rejected)
        return out

    def detail(self) -> dict[str, Any]:
        return dict(self._awaiting)

    def after_round(self) -> None:
        """Every :attr:`count_every` seconds, count the CRM orders awaiting the ERP (see
        :meth:`CrmOrders.awaiting_erp`) for the heartbeat, so ``hub status`` and ``/metrics``
        show an order the sync has not finished, however quiet the systems are."""
        if time.monotonic() < self._count_due:
            return
        with db_errors("count CRM orders awaiting the ERP"), \
                self.runtime.system("crm").connect() as crm:
            count, oldest = CrmOrders().awaiting_erp(crm)
        self._awaiting = {AWAITING_KEY: count,
                          OLDEST_KEY: None if oldest is None else oldest.isoformat()}
        self._count_due = time.monotonic() + self.count_every

    def after_poll(self) -> None:
        """Mark orders the canonical model rejects as errors, once per reason."""
        rejected, self._rejected = self._rejected, []
        orders = CrmOrders()
        for order_id, reason in rejected:
            with self.runtime.system("crm").begin() as crm:
                with self.runtime.store.begin() as hub:
                    state = SyncState.load(hub, "rejected_order", order_id)
                    if state.side("crm").fields.get("reason") == reason:
                        continue
                    state.sides["crm"] = Side(None, {"reason": reason})
                    state.save(hub)
                orders.set_integration(crm, order_id, "error", reason)
            log.warning("CRM order rejected", extra={"order_id": order_id, "reason": reason})


class CrmApplier(Applier):
    """Applies ERP partners, orders, answers and deliveries to the CRM."""

    name = "crm-applier"
    consumes: ClassVar[tuple[str, ...]] = (
        "erp.party.changed", "erp.order.changed", "erp.order.status", "erp.delivery.posted")
    needs: ClassVar[tuple[SystemName, ...]] = ("crm",)

    def apply(self, message: Message, *, final: bool) -> None:
        if isinstance(message, OrderChanged):
            self._order(message)
        elif isinstance(message, OrderStatusChanged):
            self._answer(message)
        elif isinstance(message, DeliveryPosted):
            self._delivery(message)
        elif isinstance(message, PartyChanged):
            self._party(message)
        else:
            with self.runtime.store.begin() as hub:
                self.done(hub, message)

    # -- customers -------------------------------------------------------------------------

    def _party(self, message: PartyChanged) -> None:
        party = message.party
        code = party.erp_code or party.number
        accounts = CrmAccounts()
        with self.runtime.system("crm").begin() as crm:
            account_id = accounts.find_by_erp_code(crm, code)
            if account_id is None:
                account_id = accounts.create(crm, party.model_copy(
                    update={"number": code, "erp_code": code}))
            else:
                current = accounts.read(crm, account_id)
                if current is not None and current.erp_code != code:
                    accounts.set_erp_code(crm, account_id, code)
        with self.runtime.store.begin() as hub:
            cid = Xref.resolve(hub, "party", erp=code, crm=account_id)
            Xref.bind(hub, "party", cid, crm=account_id, erp=code)
            state = SyncState.load(hub, "party", cid)
            state.sides["erp"] = Side(message.source_version, party_fields(party))
            state.save(hub)
            self.done(hub, message)

    # -- orders ----------------------------------------------------------------------------

    def _order(self, message: OrderChanged) -> None:
        order = message.order
        erp_key = ERP_DOC.format(order.erp_doc_entry or 0)
        with self.runtime.store.begin() as hub:
            cid = Xref.resolve(hub, "order", erp=erp_key, crm=order.crm_id)
            state = SyncState.load(hub, "order", cid)
            bound = Xref.local(hub, "order", cid, "crm")
        if state.exists and older(message.source_version, state.side("erp").version):
            with self.runtime.store.begin() as hub:
                self.done(hub, message)
            return
        orders = CrmOrders()
        conflicts: list[Any] = []
        with self.runtime.system("crm").begin() as crm:
            order_id = order.crm_id or bound
            current = orders.read(crm, order_id) if order_id else None
            if current is None and not order.crm_id:
                # Not bound yet, or bound to a CRM order the CRM lost with the transaction
                # that created it (the hub remembers before the CRM commits): find, or create.
                order_id = orders.find_by_number(crm, f"ERP-{order.erp_doc_num}")
                current = orders.read(crm, order_id) if order_id else None
            if PENDING in state.sides and state.settle(
                    orders.version(crm, order_id) if order_id and current else None):
                log.warning("order %s: the hub's last write to the CRM was lost before its "
                            "commit; merging against what the CRM holds", order_id)
            if order_id is None or current is None:
                if order.crm_id:
                    raise UnknownReference(f"CRM order {order.crm_id} does not exist")
                account_id = CrmAccounts().find_by_erp_code(crm, order.customer)
                if account_id is None:
                    raise DependencyMissing(f"customer {order.customer} is not in the CRM yet")
                order_id = orders.create(crm, order, account_id=account_id)
                created = orders.read(crm, order_id)
                written: dict[str, Any] = project(created, ALL_FIELDS) if created else {}
                version = None
            else:
                delivered = any(line.shipped_quantity > 0 for line in order.lines)
                decision = decide(
                    source="erp", incoming=project(order, TO_CRM),
                    incoming_base=state.side("erp").fields,
                    current=project(current, TO_CRM), current_base=state.side("crm").fields,
                    owner=order_owner(delivered=delivered, crm_status=current.status),
                )
                conflicts = decision.conflicts
                written = dict(decision.writes)
                lines = order.lines if "lines" in written else None
                header = {name: getattr(order, name) for name in written if name != "lines"}
                shipped = _shipped(order, current)
                version = None
                if header or lines is not None or shipped:
                    version = str(orders.update(crm, order_id, header, lines, shipped=shipped))
            # Remember what was written before the CRM commits it (see the ERP applier).
            self._remember(message, cid, state, order_id, erp_key, version, written, conflicts,
                           bound)
        with self.runtime.store.begin() as hub:
            if state.sides.pop(PENDING, None) is not None:
                state.save(hub)  # committed
            self.done(hub, message)

    def _remember(self, message: OrderChanged, cid: str, state: SyncState, order_id: str,
                  erp_key: str, version: str | None, written: dict[str, Any],
                  conflicts: list[Any], bound: str | None) -> None:
        order = message.order
        before = state.snapshot() if version is not None else None  # only an update can be undone
        with self.runtime.store.begin() as hub:
            # What the CRM holds now overrules a binding lost with an earlier transaction
            # (this order bound to a CRM order the CRM never committed).
            rows = Xref.rows("order", cid, crm=order_id, erp=erp_key)
            state.bind_lines(order.lines)
            if bound not in (None, order_id):
                Xref.rebind(hub, rows, "crm")
            else:
                insert_ignore(hub, id_xref, rows)
            remember_source(state.side("erp"), message.source_version, order)
            remember_written(state.side("crm"), version, written)
            if before is not None:  # an update: undone at the next write if the CRM lost it
                state.pending(before, "crm")
            state.save(hub)
            Conflicts.record(hub, kind="order", canonical_id=cid, key=message.correlation_key,
                             source="erp", conflicts=conflicts,
                             message_id=str(message.message_id))

    def apply_batch(self, messages: Sequence[Message], finals: Sequence[bool]
                    ) -> list[BaseException | None]:
        return self.apply_grouped(messages, finals, OrderStatusChanged, self._answers)

    def _answer(self, message: OrderStatusChanged) -> None:
        """The ERP's answer to a CRM order: its number and status, or why it failed."""
        self._answers([message], [False])

    def _answers(self, messages: Sequence[OrderStatusChanged], _finals: Sequence[bool]
                 ) -> list[BaseException | None]:
        """Answers to different orders in one CRM transaction; any failure fails them all
        (and they are applied again one by one)."""
        orders = CrmOrders()
        stale = self._overtaken(messages)
        with self.runtime.system("crm").begin() as crm:
            answers = [self._answer_of(crm, orders, message, keep_status=overtaken)
                       for message, overtaken in zip(messages, stale, strict=True)]
            versions = list(zip([a.order_id for a in answers],
                                orders.answer_many(crm, answers), strict=True))
            with self.runtime.store.begin() as hub:
                cids = Xref.resolve_many(hub, "order", [{"crm": order_id}
                                                        for order_id, _ in versions])
                states = SyncState.load_many(hub, "order", cids)
                for message, (_, version), cid, overtaken in zip(messages, versions, cids,
                                                                 stale, strict=True):
                    state = states[cid]
                    # An error note is not content: the order's CRM version it carries must
                    # not make a replay of the refused change look stale to the ERP applier.
                    written = {"erp_doc_num": message.erp_doc_num,
                               "status": None if overtaken else message.status}
                    side = state.side("crm")
                    new = None if message.integration_status == "error" else str(version)
                    # Right after a version known whole, the new one is the hub's alone.
                    whole = (new is not None and side.whole and side.version is not None
                             and side.version.isdigit() and version == int(side.version) + 1)
                    remember_written(side, new,
                                     {k: v for k, v in written.items() if v is not None},
                                     whole=whole)
                SyncState.save_many(hub, list(states.values()))
        with self.runtime.store.begin() as hub:
            Inbox.claim(hub, self.name, [str(m.message_id) for m in messages])
        return [None] * len(messages)

    def _overtaken(self, messages: Sequence[OrderStatusChanged]) -> list[bool]:
        """Which answers carry a status older than an ERP change of the same order that the
        CRM already has: an answer retried (a CRM or hub store outage) can arrive after the
        ERP's own later change, and must not put the older status back."""
        keyed = [(i, m) for i, m in enumerate(messages)
                 if m.crm_id and m.status is not None and m.integration_status != "error"]
        stale = [False] * len(messages)
        if not keyed:
            return stale
        with self.runtime.store.begin() as hub:
            cids = Xref.resolve_many(hub, "order", [{"crm": m.crm_id} for _, m in keyed])
            known = SyncState.versions_many(hub, "order", cids)
        for (index, message), cid in zip(keyed, cids, strict=True):
            erp = known.get(cid, {}).get("erp")
            stale[index] = cid in known and older(message.source_version,
                                                  erp.version if erp else None)
        return stale

    @staticmethod
    def _answer_of(crm: Connection, orders: CrmOrders, message: OrderStatusChanged,
                   *, keep_status: bool = False) -> Answer:
        """What the ERP's answer writes to its CRM order."""
        order_id = message.crm_id or (
            orders.find_by_number(crm, message.order_number) if message.order_number
            else None)
        if order_id is None:
            raise UnknownReference(f"no CRM order for {message.correlation_key}")
        fields: dict[str, Any] = {}
        if message.erp_doc_num is not None:
            fields["erp_doc_num"] = message.erp_doc_num
        if message.status is not None and not keep_status:
            fields["status"] = message.status
        return Answer(order_id, fields, message.integration_status,
                      message.integration_message)

    def _delivery(self, message: DeliveryPosted) -> None:
        delivery = message.delivery
        by_order: dict[tuple[str, int], dict[int, int]] = {}
        with self.runtime.store.begin() as hub:
            cids = Xref.canonical_many(hub, "order", "erp", [
                ERP_DOC.format(line.order_doc_entry) for line in delivery.lines])
            order_ids = Xref.local_many(hub, "order", list(cids.values()), "crm")
            states = SyncState.load_many(hub, "order", list(cids.values()))
            for line in delivery.lines:
                erp_key = ERP_DOC.format(line.order_doc_entry)
                cid = cids.get(erp_key)
                order_id = order_ids.get(cid) if cid else None
                line_no = states[cid].lines.get(line.order_line) if cid else None
                if order_id is not None and line_no is None:
                    line_no = _line_bound_before(hub, erp_key, line.order_line)
                if order_id is None or line_no is None:
                    raise DependencyMissing(
                        f"ERP order line {line.order_doc_entry}/{line.order_line} is not in "
                        "the CRM yet")
                by_order.setdefault((order_id, line.order_doc_entry), {})[line.order_line] = (
                    line_no)
        shipments = CrmShipments()
        with self.runtime.system("crm").begin() as crm:
            # The CRM keeps one shipment per ERP delivery number: a delivery that serves
            # several orders is recorded against the first (a limit of the CRM's schema).
            for (order_id, doc), line_nos in by_order.items():
                shipments.record(crm, order_id, delivery, line_nos, order_doc_entry=doc)
        with self.runtime.store.begin() as hub:
            self.done(hub, message)


def _line_bound_before(hub: Connection, erp_key: str, erp_line: int) -> int | None:
    """The CRM line_no of an order's ERP line as earlier versions of the hub bound it, in
    ``id_xref`` rows of kind ``order_line``; the sync states they wrote have no lines."""
    cid = Xref.canonical(hub, "order_line", "erp", f"{erp_key}/{erp_line}")
    crm_line = Xref.local(hub, "order_line", cid, "crm") if cid else None
    return int(crm_line.rsplit("/", 1)[1]) if crm_line else None


def _shipped(order: Order, current: Order) -> dict[int, Decimal]:
    """Shipped quantities the ERP reports that the CRM does not show yet."""
    have = {line.line_no: line.shipped_quantity for line in current.lines}
    # A line the CRM removed meanwhile (its removal still on its way to the ERP) with
    # nothing shipped is not news; one that shipped is, and is refused where it is written.
    return {line.line_no: line.shipped_quantity for line in order.lines
            if line.line_no is not None and have.get(line.line_no) != line.shipped_quantity
            and (line.line_no in have or line.shipped_quantity)}
