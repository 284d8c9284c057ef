"""The ERP connector's applier of CRM changes (its poller is :mod:`connectors.erp.poller`).

It creates and updates business partners and sales orders from the CRM, merging three ways
with field ownership, and answers each order with an ``order.status`` (its DocNum and
status, or why it could not be synced).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine

from connectors.erp.common import doc_key, version_of
from connectors.erp.order_reads import order_versions, read_orders
from connectors.erp.orders import ErpOrders, NewOrder
from connectors.erp.partners import ErpPartners
from hub.errors import (
    DependencyMissing,
    HubError,
    PermanentError,
    UnknownReference,
)
from hub.model.messages import (
    Message,
    OrderChanged,
    OrderStatusChanged,
    PartyChanged,
)
from hub.model.records import Order
from hub.outbox import Outbox
from hub.runtime import SystemName
from hub.store.bulk import insert_ignore
from hub.store.inbox import Inbox
from hub.store.tables import id_xref
from hub.sync.conflicts import Conflicts
from hub.sync.merge import decide, project
from hub.sync.orders import (
    ALL_FIELDS,
    REFUSED,
    TO_ERP,
    older,
    order_owner,
    party_fields,
    remember_refused,
    remember_source,
    remember_written,
)
from hub.sync.parts import Applier
from hub.sync.state import PENDING, Side, SyncState
from hub.sync.xref import Xref

__all__ = ["ErpApplier"]

log = logging.getLogger(__name__)


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
    #: The canonical fields the hub wrote into the ERP order (None: it created all of it).
    wrote: tuple[str, ...] | None = None


class ErpApplier(Applier):
    """Applies CRM customers and orders to the ERP."""

    name = "erp-applier"
    consumes: ClassVar[tuple[str, ...]] = ("crm.party.changed", "crm.order.changed")
    needs: ClassVar[tuple[SystemName, ...]] = ("erp",)
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
        return self.apply_grouped(messages, finals, OrderChanged, self._orders_together)

    def _orders_together(self, messages: Sequence[OrderChanged], finals: Sequence[bool]
                         ) -> list[BaseException | None]:
        """Apply orders of different keys in one ERP transaction.

        Changes to orders the ERP has are merged one by one, each in a savepoint. New
        orders are checked together (customers and items in two queries) and inserted
        together, last, so the document series stays locked for as short a time as possible.
        Everything written is read back in one go and remembered in the hub before the ERP
        commits (see :meth:`_order`)."""
        store, orders = self.runtime.store, ErpOrders()
        with store.begin() as hub:
            plans = self._plans(hub, messages)
        written: dict[int, Written] = {}
        failed: dict[int, HubError] = {}
        with self._erp_writer().begin() as conn:
            live = [i for i, plan in enumerate(plans) if not plan.stale]
            unanswered = [i for i, plan in enumerate(plans) if _unanswered(plan)]
            current = dict(zip(unanswered, self._as_is(conn, [plans[i] for i in unanswered]),
                               strict=True))
            found = orders.find_many_by_crm_id(conn, [
                plans[i].message.order.crm_id or "" for i in live
                if not plans[i].bound and plans[i].message.order.crm_id])
            changed: dict[int, tuple[int, list[Any]]] = {}
            fresh: list[int] = []
            for index in live:
                plan = plans[index]
                order = plan.message.order
                if plan.bound or (order.crm_id or "") in found:
                    savepoint = conn.begin_nested()
                    try:
                        doc, conflicts, note, plan.wrote = self._change(conn, order, plan.state,
                                                                    plan.bound)
                        savepoint.commit()
                    except PermanentError as exc:
                        savepoint.rollback()
                        failed[index] = exc
                        continue
                    if doc is None:
                        written[index] = (None, None, None, [], note)
                    else:
                        changed[index] = (doc, conflicts)
                elif order.cancelled:
                    written[index] = (None, None, None, [], "cancelled before it reached the ERP")
                else:
                    fresh.append(index)
            customers, items = orders.missing_references(
                conn, [plans[i].message.order for i in fresh])
            ready: list[tuple[int, NewOrder]] = []
            for index in fresh:
                order = plans[index].message.order
                unknown = sorted({ln.product_code for ln in order.lines} & items)
                try:
                    if order.customer in customers:
                        raise DependencyMissing(
                            f"customer {order.customer} does not exist in the ERP")
                    if unknown:
                        raise UnknownReference(
                            f"item(s) {', '.join(unknown)} do not exist in the ERP")
                    ready.append((index, orders.prepare(order,
                                                        confirmed=self.confirm_new_orders)))
                except HubError as exc:
                    failed[index] = exc
            numbered = orders.insert(conn, [new for _, new in ready])
            changed.update({index: (entry, []) for (index, _), (entry, _) in
                            zip(ready, numbered, strict=True)})
            back = self._read_back(conn, dict(changed.values()),
                                   new={entry for entry, _ in numbered})
            written.update({index: back[doc] for index, (doc, _) in changed.items()})
            with store.begin() as hub:
                self._remember(hub, [(plans[index], result) for index, result in written.items()])
        with store.begin() as hub:
            answers: list[Message] = []
            for index, plan in enumerate(plans):
                problem = failed.get(index)
                if isinstance(problem, PermanentError) or (problem is not None
                                                           and finals[index]):
                    self._remember_refusal(hub, plan)
                    reason = str(problem) if isinstance(problem, PermanentError) else (
                        _gave_up(problem))
                    answers.append(self._error_answer(plan.message, reason))
                elif index in written:
                    answers.append(self._answer(plan.message, written[index]))
                elif (now := current.get(index)) is not None:
                    answers.append(self._answer(plan.message, now))
            Outbox.add(hub, answers, partitions=self.runtime.settings.partitions)
            Inbox.claim(hub, self.name, [str(plan.message.message_id)
                                         for index, plan in enumerate(plans)
                                         if index not in failed])
            _settled(hub, [plans[index] for index in written])
        self.runtime.outbox_wakeup.set()
        return [failed.get(index) for index in range(len(plans))]

    def _erp_writer(self) -> Engine:
        """The ERP engine for writing. InnoDB reads in a transaction from a snapshot taken at
        its first read, so a writer that looked anything up before numbering saw a stale
        highest DocNum and clashed over numbers with writers that committed since; SAP
        Business One's own database runs READ COMMITTED, and so do the hub's ERP writes."""
        engine = self.runtime.system("erp")
        if engine.dialect.name in ("mysql", "mariadb"):
            return engine.execution_options(isolation_level="READ COMMITTED")
        return engine

    @staticmethod
    def _plans(hub: Connection, messages: Sequence[OrderChanged]) -> list[OrderPlan]:
        """Each message with what the hub knows of its order (a few queries in all): its
        canonical id, sync state, ERP binding, and whether a newer change was applied."""
        cids = Xref.resolve_many(hub, "order", [{"crm": m.order.crm_id} for m in messages])
        states = SyncState.load_many(hub, "order", cids)
        bound = Xref.local_many(hub, "order", cids, "erp")
        return [OrderPlan(m, cid, states[cid], bound.get(cid),
                          states[cid].exists and older(m.source_version,
                                                       states[cid].side("crm").version))
                for m, cid in zip(messages, cids, strict=True)]

    @staticmethod
    def _remember(hub: Connection, written: Sequence[tuple[OrderPlan, Written]]) -> None:
        """Record written orders in the hub: cross-references of orders and (in their sync
        states) lines, what each side now holds, conflicts. A handful of statements for the lot."""
        binds: list[dict[str, Any]] = []
        fresh: dict[str, str] = {}  # DocEntry keys bound here for the first time -> cid
        moved = False  # an order bound before to another DocEntry
        for plan, (doc, after, version, _, _) in written:
            order, cid, state = plan.message.order, plan.cid, plan.state
            before = state.snapshot() if plan.wrote else None  # only an update can be undone
            if doc is not None and after is not None:
                if plan.bound != doc_key(doc):
                    fresh[doc_key(doc)] = cid
                    moved = moved or plan.bound is not None
                binds += Xref.rows("order", cid, crm=order.crm_id or "", erp=doc_key(doc))
                state.bind_lines(after.lines)
                # Only what the hub wrote: an edit someone made in the ERP meanwhile, not yet
                # polled, must still look like that person's change when it is read.
                names = ALL_FIELDS if plan.wrote is None else plan.wrote
                remember_written(state.side("erp"), version, project(after, names),
                                 whole=plan.wrote is None)
                if before is not None:  # an update: undone at the next write if the ERP lost it
                    state.pending(before, "erp")
            remember_source(state.side("crm"), plan.message.source_version, order)
            if doc is not None:
                state.sides.pop(REFUSED, None)  # taken now: that content may come again
        # What the ERP holds overrules a binding lost with an earlier transaction: a DocEntry
        # bound to another order (the ERP gave it out again) or this order bound to another
        # DocEntry. One look-up in the usual case; the full check only when one is seen.
        taken = Xref.canonical_many(hub, "order", "erp", list(fresh))
        if moved or any(taken[key] != cid for key, cid in fresh.items() if key in taken):
            Xref.rebind(hub, binds, "erp")
        else:
            insert_ignore(hub, id_xref, binds)
        SyncState.save_many(hub, [plan.state for plan, _ in written])
        for plan, (_, _, _, conflicts, _) in written:
            if conflicts:
                Conflicts.record(hub, kind="order", canonical_id=plan.cid,
                                 key=plan.message.correlation_key, source="crm",
                                 conflicts=conflicts, message_id=str(plan.message.message_id))

    @staticmethod
    def _remember_refusal(hub: Connection, plan: OrderPlan) -> None:
        order, cid = plan.message.order, plan.cid
        if order.crm_id:
            # An order the ERP never took has no cross-reference yet, and the CRM poller would
            # look its refusal up under a new id: the hub's error note in the CRM (a new
            # version) would send the refused content again, a dead letter on every poll.
            Xref.bind(hub, "order", cid, crm=order.crm_id)
            cid = Xref.resolve(hub, "order", crm=order.crm_id)
        state = SyncState.load(hub, "order", cid)
        remember_refused(state.side(REFUSED), plan.message.source_version, order)
        state.save(hub)

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
            plan = self._plans(hub, [message])[0]
        if plan.stale:  # a newer change of this order was applied: nothing to write
            now = None
            if _unanswered(plan):
                with self._erp_writer().connect() as conn:
                    now = self._as_is(conn, [plan])[0]
            with store.begin() as hub:
                if now is not None:
                    Outbox.add(hub, [self._answer(message, now)],
                               partitions=self.runtime.settings.partitions)
                self.done(hub, message)
            self.runtime.outbox_wakeup.set()
            return
        try:
            with self._erp_writer().begin() as conn:
                result = self._write(conn, plan)
                # Remember what was written before the ERP commits it, so the poller can never
                # read the write without knowing it is the hub's own.
                with store.begin() as hub:
                    self._remember(hub, [(plan, result)])
        except PermanentError as exc:
            self._answer_error(message, str(exc), plan)
            raise
        except HubError as exc:
            if final:
                self._answer_error(message, _gave_up(exc))
            raise
        with store.begin() as hub:
            Outbox.add(hub, [self._answer(message, result)],
                       partitions=self.runtime.settings.partitions)
            _settled(hub, [plan])
            self.done(hub, message)
        self.runtime.outbox_wakeup.set()

    def _write(self, conn: Connection, plan: OrderPlan) -> Written:
        """Create or merge the order in the ERP transaction ``conn``, and read it back."""
        doc, conflicts, note, plan.wrote = self._change(conn, plan.message.order, plan.state,
                                                        plan.bound)
        if doc is None:
            return None, None, None, [], note
        return self._read_back(conn, {doc: conflicts})[doc]

    def _as_is(self, conn: Connection, plans: Sequence[OrderPlan]) -> list[Written | None]:
        """The orders of ``plans`` as the ERP holds them now, found by their CRM ids (None
        where the ERP has none), to answer a stale change with: see :func:`_unanswered`."""
        found = ErpOrders().find_many_by_crm_id(
            conn, [plan.message.order.crm_id for plan in plans if plan.message.order.crm_id])
        back = self._read_back(conn, {doc: [] for doc in found.values()}) if found else {}
        for plan in plans:
            if (crm_id := plan.message.order.crm_id) in found:
                log.info("order %s: answering a change older than the CRM's version with the "
                         "ERP's order as it is (DocEntry %s): the CRM has no ERP number from "
                         "the hub yet", plan.message.correlation_key, found[crm_id])
        return [back[found[crm_id]] if (crm_id := plan.message.order.crm_id) in found
                else None for plan in plans]

    @staticmethod
    def _read_back(conn: Connection, changed: Mapping[int, list[Any]], *,
                   new: Set[int] = frozenset()) -> dict[int, Written]:
        """The orders ``changed`` (DocEntry -> conflicts) as now in the ERP, with versions:
        five queries for the lot, two when all are ``new`` (created in this transaction:
        nothing delivered or invoiced them, and their version is their UpdateDate)."""
        entries = list(changed)
        stamps: dict[int, dt.datetime] = {}
        after = read_orders(conn, ErpOrders().mapping, entries, stamps=stamps, new=new)
        old = [entry for entry in entries if entry not in new]
        versions = {**{entry: stamps[entry] for entry in new if entry in stamps},
                    **(order_versions(conn, old) if old else {})}
        missing = [entry for entry in entries if entry not in after]
        if missing:
            raise DependencyMissing(f"ERP order(s) {missing} not readable after writing")
        return {entry: (entry, after[entry], version_of(versions[entry]), changed[entry], None)
                for entry in entries}

    def _change(self, conn: Connection, order: Order, state: SyncState, bound: str | None
                ) -> tuple[int | None, list[Any], str | None, tuple[str, ...] | None]:
        """Create or merge the order; returns (DocEntry or None, conflicts, note, the fields
        written: None when the order was created)."""
        orders = ErpOrders()
        doc = int(bound) if bound else None
        current = orders.read(conn, doc) if doc is not None else None
        if current is not None and current.crm_id and current.crm_id != order.crm_id:
            # Bound in the hub to a DocEntry that is another order's: the ERP transaction
            # that created this one was lost after the hub had remembered it (see below),
            # and the ERP, recovering its counter from its rows after a crash, gave the same
            # DocEntry to the next order. Taking that order for this one lost this one.
            log.warning("order %s: DocEntry %s is CRM order %s's in the ERP, not this one's; "
                        "looking it up by its CRM id", order.crm_id, doc, current.crm_id)
            current = None
        if current is None and order.crm_id:
            # Not bound yet, or bound in the hub but not in the ERP (the ERP transaction that
            # created it was rolled back after the hub had remembered it): find it, or create.
            doc = orders.find_by_crm_id(conn, order.crm_id)
            current = orders.read(conn, doc) if doc is not None else None
        if current is None or doc is None:
            if order.cancelled:
                return None, [], "cancelled before it reached the ERP", ()
            if ErpPartners().read(conn, order.customer) is None:
                raise DependencyMissing(
                    f"customer {order.customer} does not exist in the ERP")
            doc, _ = orders.create(conn, order, confirmed=self.confirm_new_orders)
            return doc, [], None, None
        if PENDING in state.sides:
            stamp = order_versions(conn, [doc]).get(doc)
            if state.settle(None if stamp is None else version_of(stamp)):
                log.warning("order %s: the hub's last write to the ERP (DocEntry %s) was lost "
                            "before its commit; merging against what the ERP holds",
                            order.crm_id, doc)
        decision = decide(
            source="crm", incoming=project(order, TO_ERP),
            incoming_base=state.side("crm").fields,
            current=project(current, TO_ERP), current_base=state.side("erp").fields,
            owner=order_owner(delivered=orders.has_deliveries(conn, doc)),
        )
        writes = dict(decision.writes)
        if writes.pop("cancelled", False) is True:
            # Cancelled: whatever else changed with it does not matter any more (and a
            # cancelled order's lines cannot be changed).
            orders.cancel(conn, doc)
            return doc, decision.conflicts, None, ("cancelled", "status")
        lines = order.lines if writes.pop("lines", None) is not None else None
        header = {name: getattr(order, name) for name in writes}
        if header or lines is not None:
            orders.update(conn, doc, header, lines)
        return doc, decision.conflicts, None, (*header, *(("lines",) if lines is not None
                                                          else ()))

    def _answer_error(self, message: OrderChanged, reason: str,
                      refused: OrderPlan | None = None) -> None:
        """Tell the CRM why its order did not reach the ERP (the message is dead-lettered);
        with ``refused``, remember the content the ERP refused (see remember_refused)."""
        with self.runtime.store.begin() as hub:
            if refused is not None:
                self._remember_refusal(hub, refused)
            Outbox.add(hub, [self._error_answer(message, reason)],
                       partitions=self.runtime.settings.partitions)
        self.runtime.outbox_wakeup.set()


def _unanswered(plan: OrderPlan) -> bool:
    """A stale change whose order the hub may never have answered: as far as the hub knows,
    the CRM does not hold the ERP's number. The ERP committed the order, and the process
    died before the answer was stored; meanwhile a hub write into the CRM (an ERP change,
    say the clerk confirmed the order) made a new CRM version that the CRM poller rightly
    does not send again, so this change, when it comes again, is older than what the hub
    knows of the CRM. It is answered with the order as the ERP holds it now."""
    if not plan.stale:
        return False
    erp, crm = plan.state.sides.get("erp"), plan.state.sides.get("crm")
    erp_number = erp.fields.get("erp_doc_num") if erp is not None else None
    return erp_number is None or crm is None or crm.fields.get("erp_doc_num") != erp_number


def _settled(hub: Connection, plans: Sequence[OrderPlan]) -> None:
    """The ERP committed: the writes of ``plans`` marked pending are no longer."""
    done = [plan.state for plan in plans if plan.state.sides.pop(PENDING, None) is not None]
    if done:
        SyncState.save_many(hub, done)


def _gave_up(problem: HubError) -> str:
    """Why an order did not reach the ERP after its last retry, for the CRM."""
    if isinstance(problem, DependencyMissing):  # e.g. a customer the ERP never got
        return f"{problem} (gave up waiting for it)"
    return f"the ERP could not be reached: {problem}"
