"""Order sync end to end, on the embedded and the real stack."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal as D
from typing import Any

from sqlalchemy import func, select, update

from connectors.crm.schema import (
    crm_account,
    crm_order,
    crm_order_line,
    crm_shipment,
    crm_shipment_line,
)
from connectors.crm.sync import ERP_DOC, CrmApplier
from connectors.erp.documents import ErpDeliveries
from connectors.erp.schema import ocrd, oitm, ordr, rdr1
from hub.demo.people import Line
from hub.model.messages import DeliveryPosted
from hub.replay import replay
from hub.store.deadletters import DeadLetter, DeadLetters
from hub.store.tables import conflict, id_xref
from hub.store.types import utcnow
from hub.sync.state import SyncState
from hub.sync.xref import Xref
from tests.helpers import wait_for
from tests.sync.conftest import Stack

LINES = [Line("ETAC-99", D("1200.000"), D("1.2500")), Line("MEK-995", D("800"), D("1.9")),
         Line("IPA-999", D("15"), D("2.1"), unit="drum")]


def crm_row(stack: Stack, order_id: str) -> Any:
    with stack.crm.connect() as conn:
        return conn.execute(select(crm_order).where(crm_order.c.order_id == order_id)).one()


def erp_row(stack: Stack, order_id: str) -> Any:
    with stack.erp.connect() as conn:
        return conn.execute(select(ordr).where(order_id == ordr.c.U_CRM_ID)).one_or_none()


def erp_lines(stack: Stack, doc_entry: int) -> list[Any]:
    with stack.erp.connect() as conn:
        return conn.execute(select(rdr1).where(rdr1.c.DocEntry == doc_entry)
                            .order_by(rdr1.c.LineNum)).all()


def synced(stack: Stack, order_id: str) -> Any:
    wait_for(lambda: crm_row(stack, order_id).integration_status == "synced", 30,
             "the ERP's answer in the CRM")
    row = erp_row(stack, order_id)
    assert row is not None
    return row


def test_a_submitted_order_appears_once_in_the_erp_with_all_lines(stack: Stack) -> None:
    order_id = stack.sales().submit_order(stack.account(), LINES, customer_po="PO-7781",
                                          requested_date=dt.date(2026, 12, 15),
                                          notes="请在周五前交货")
    header = synced(stack, order_id)
    crm = crm_row(stack, order_id)
    assert header.NumAtCard == crm.order_number and header.CardCode == "C00042"
    assert header.U_CustPO == "PO-7781" and header.U_ReqDate == dt.date(2026, 12, 15)
    assert header.Comments == "请在周五前交货" and header.Confirmed == "N"
    assert crm.erp_order_number == str(header.DocNum) and crm.status == "on_hold"
    lines = erp_lines(stack, header.DocEntry)
    assert [(ln.ItemCode, ln.Quantity, ln.Price, ln.U_CRM_LINE) for ln in lines] == [
        ("ETAC-99", D("1200.000"), D("1.2500"), 1), ("MEK-995", D("800.000"), D("1.9000"), 2),
        ("IPA-999", D("15.000"), D("2.1000"), 3)]
    with stack.erp.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ordr).where(
            order_id == ordr.c.U_CRM_ID)).scalar_one() == 1


def test_erp_progress_flows_back_to_the_crm(stack: Stack) -> None:
    order_id = stack.sales().submit_order(stack.account(), LINES[:2])
    doc = synced(stack, order_id).DocEntry
    erp = stack.erp_user()
    erp.confirm(doc)
    erp.promise(doc, dt.date(2026, 12, 20))
    wait_for(lambda: crm_row(stack, order_id).status == "confirmed", 30, "confirmed")
    wait_for(lambda: crm_row(stack, order_id).promised_date == dt.date(2026, 12, 20), 30)
    erp.hold(doc)
    wait_for(lambda: crm_row(stack, order_id).status == "on_hold", 30, "on hold")
    erp.confirm(doc)
    first = erp.deliver(doc, [(0, D("700"), "B2611-0001")])
    wait_for(lambda: crm_row(stack, order_id).status == "partially_shipped", 30, "partial")
    second = erp.deliver(doc, [(0, D("500"), "B2611-0002"), (1, D("800"), "B2611-0003")])
    wait_for(lambda: crm_row(stack, order_id).status == "shipped", 30, "shipped")

    def batches() -> list[Any]:
        return shipped_lines(stack, order_id)

    wait_for(lambda: len(batches()) == 3, 30, "both shipments with their batches")
    with stack.crm.connect() as conn:
        shipped = dict(conn.execute(select(crm_order_line.c.line_no,
                                           crm_order_line.c.shipped_quantity).where(
            crm_order_line.c.order_id == order_id)).all())
    assert shipped == {1: D("1200.000"), 2: D("800.000")}
    assert batches() == [(1, "B2611-0001", D("700.000")), (1, "B2611-0002", D("500.000")),
                       (2, "B2611-0003", D("800.000"))]
    erp.invoice(first)
    erp.invoice(second)
    wait_for(lambda: crm_row(stack, order_id).status == "invoiced", 30, "invoiced")


def test_an_order_entered_in_the_erp_appears_in_the_crm(stack: Stack) -> None:
    doc, num = stack.erp_user().enter_order("C00043", LINES[:1])

    def crm_copy() -> Any:
        with stack.crm.connect() as conn:
            return conn.execute(select(crm_order).where(
                crm_order.c.order_number == f"ERP-{num}")).one_or_none()

    wait_for(lambda: crm_copy() is not None, 30, "the ERP order in the CRM")
    row = crm_copy()
    assert row.erp_order_number == str(num) and row.status == "confirmed"
    assert row.total_amount == D("1500.00")
    stack.erp_user().promise(doc, dt.date(2027, 1, 5))
    wait_for(lambda: crm_copy().promised_date == dt.date(2027, 1, 5), 30, "the ERP edit")


def test_edits_flow_both_ways_and_a_conflict_is_won_by_the_owner(stack: Stack) -> None:
    sales, erp = stack.sales(), stack.erp_user()
    order_id = sales.submit_order(stack.account(), LINES[:1], notes="first")
    doc = synced(stack, order_id).DocEntry
    sales.edit(order_id, customer_po="PO-NEW")
    wait_for(lambda: erp_row(stack, order_id).U_CustPO == "PO-NEW", 30, "CRM edit in ERP")
    erp.comment(doc, "from the plant")
    wait_for(lambda: crm_row(stack, order_id).notes == "from the plant", 30, "ERP edit in CRM")
    # Both change the notes before either change is synced: the CRM owns notes.
    stack.daemon.stop.set()
    stack.daemon.shutdown()
    sales.edit(order_id, notes="sales says")
    erp.comment(doc, "plant says")
    from hub.daemon import Daemon
    from hub.parts import build_parts
    from tests.sync.conftest import SYNC_PARTS
    stack.daemon = Daemon(stack.runtime, [p for p in build_parts(stack.runtime)
                                          if p.name in SYNC_PARTS])
    stack.daemon.prepare()
    stack.daemon.start()
    wait_for(lambda: erp_row(stack, order_id).Comments == "sales says"
             and crm_row(stack, order_id).notes == "sales says", 30, "the owner's value")
    with stack.runtime.store.begin() as hub:
        rows = hub.execute(select(conflict).where(conflict.c.field == "notes")).all()
    assert rows and rows[0].winner == "crm"
    assert "plant says" in rows[0].erp_value and "sales says" in rows[0].crm_value


def shipped_lines(stack: Stack, order_id: str) -> list[Any]:
    """(line_no, batch_number, quantity) of every shipment line of the CRM order."""
    with stack.crm.connect() as conn:
        return sorted(conn.execute(
            select(crm_shipment_line.c.line_no, crm_shipment_line.c.batch_number,
                   crm_shipment_line.c.quantity)
            .join(crm_shipment, crm_shipment.c.shipment_id == crm_shipment_line.c.shipment_id)
            .where(crm_shipment.c.order_id == order_id)).all())


def test_a_delivery_ships_the_crm_lines_whatever_their_numbers(stack: Stack) -> None:
    sales = stack.sales()
    order_id = sales.submit_order(stack.account(), LINES, status="draft")
    with stack.crm.begin() as conn:  # numbered in tens, as some sales people do
        conn.execute(update(crm_order_line).where(crm_order_line.c.order_id == order_id)
                     .values(line_no=crm_order_line.c.line_no * 10))
    sales.edit(order_id, status="submitted")
    doc = synced(stack, order_id).DocEntry
    assert [ln.U_CRM_LINE for ln in erp_lines(stack, doc)] == [10, 20, 30]
    erp = stack.erp_user()
    erp.confirm(doc)
    erp.deliver(doc, [(1, D("800"), "B2611-0007"), (2, D("5"), "B2611-0008")])
    wait_for(lambda: len(shipped_lines(stack, order_id)) == 2, 30, "the shipment in the CRM")
    assert shipped_lines(stack, order_id) == [(20, "B2611-0007", D("800.000")),
                                              (30, "B2611-0008", D("5.000"))]
    with stack.runtime.store.begin() as hub:
        cid = Xref.canonical(hub, "order", "crm", order_id)
        assert cid is not None
        assert SyncState.load(hub, "order", cid).lines == {0: 10, 1: 20, 2: 30}
        assert hub.scalar(select(func.count()).select_from(id_xref).where(
            id_xref.c.kind == "order_line")) == 0, "lines are bound in the sync state"


def test_a_delivery_of_an_order_whose_lines_an_earlier_hub_bound(stack: Stack) -> None:
    """Earlier versions of the hub bound lines in id_xref rows, not in the sync state."""
    order_id = stack.sales().submit_order(stack.account(), LINES[:2])
    doc = synced(stack, order_id).DocEntry
    erp = stack.erp_user()
    erp.confirm(doc)
    wait_for(lambda: crm_row(stack, order_id).status == "confirmed", 30, "confirmed")
    stack.daemon.shutdown()  # the rest by hand, so that nothing binds the lines again
    erp_key = ERP_DOC.format(doc)
    with stack.runtime.store.begin() as hub:
        cid = Xref.canonical(hub, "order", "crm", order_id)
        assert cid is not None
        state = SyncState.load(hub, "order", cid)
        state.lines.clear()
        state.save(hub)
        for line_no, erp_line in ((1, 0), (2, 1)):
            Xref.bind(hub, "order_line", Xref.child(cid, line_no),
                      crm=f"{order_id}/{line_no}", erp=f"{erp_key}/{erp_line}")
    delivery = erp.deliver(doc, [(1, D("800"), "B2611-0009")])
    with stack.erp.connect() as conn:
        posted = ErpDeliveries().read(conn, delivery)
    assert posted is not None
    CrmApplier(stack.runtime).apply(
        DeliveryPosted(correlation_key=erp_key, source="erp", source_version="1",
                       delivery=posted), final=False)
    assert shipped_lines(stack, order_id) == [(2, "B2611-0009", D("800.000"))]


def open_letters(stack: Stack, key: str, what: str) -> list[DeadLetter]:
    """The open dead letters under ``key``, once there is one. The applier commits its error
    answer to the CRM with its own work and the bus dead-letters the message after that, so
    the CRM can show the error a moment before the letter is stored."""
    found: list[DeadLetter] = []

    def check() -> bool:
        with stack.runtime.store.begin() as hub:
            found[:] = [d for d in DeadLetters.list(hub) if d.correlation_key == key]
        return bool(found)

    wait_for(check, 30, what)
    return found


def test_cancellation_and_cancel_after_shipment(stack: Stack) -> None:
    sales, erp = stack.sales(), stack.erp_user()
    order_id = sales.submit_order(stack.account(), LINES[:1])
    doc = synced(stack, order_id).DocEntry
    sales.cancel(order_id)
    wait_for(lambda: erp_row(stack, order_id).CANCELED == "Y", 30, "cancelled in the ERP")
    shipped_id = sales.submit_order(stack.account(), LINES[:1])
    shipped_doc = synced(stack, shipped_id).DocEntry
    erp.confirm(shipped_doc)
    erp.deliver(shipped_doc, [(0, D("1200"), "B2611-0001")])
    wait_for(lambda: crm_row(stack, shipped_id).status == "shipped", 30, "shipped")
    sales.cancel(shipped_id)
    wait_for(lambda: crm_row(stack, shipped_id).integration_status == "error", 30, "refusal")
    row = crm_row(stack, shipped_id)
    assert "cannot be cancelled" in row.integration_message
    assert erp_row(stack, shipped_id).CANCELED == "N"
    # Refused once, not again on every poll (the hub's own error note is a new CRM version).
    time.sleep(8 * stack.settings.poll_interval)
    assert crm_row(stack, shipped_id).version == row.version
    with stack.runtime.store.begin() as hub:
        refusals = [d for d in DeadLetters.list(hub) if d.correlation_key == row.order_number]
    assert len(refusals) == 1, [d.reason for d in refusals]
    assert doc != shipped_doc


def test_an_edit_and_a_cancel_in_one_change_cancel_the_order(stack: Stack) -> None:
    order_id = stack.sales().submit_order(stack.account(), LINES[:2])
    synced(stack, order_id)
    with stack.crm.begin() as conn:  # both before the hub polls again
        conn.execute(update(crm_order_line).where(
            crm_order_line.c.order_id == order_id, crm_order_line.c.line_no == 1,
        ).values(quantity=D("900")))
        conn.execute(update(crm_order).where(crm_order.c.order_id == order_id).values(
            status="cancelled", version=crm_order.c.version + 1, modified_at=utcnow()))
    wait_for(lambda: erp_row(stack, order_id).CANCELED == "Y", 30, "cancelled in the ERP")
    # The CRM first, then the hub: holding the hub's write lock while asking for the CRM's
    # (embedded SQLite) deadlocks with a CRM applier that holds the CRM's and records in
    # the hub before it commits, until one side's 30 s busy timeout gives up.
    number = crm_row(stack, order_id).order_number
    with stack.runtime.store.begin() as hub:
        assert not [d for d in DeadLetters.list(hub) if d.correlation_key == number]


def test_unknown_item_is_an_error_the_sales_person_can_fix_and_replay(stack: Stack) -> None:
    order_id = stack.sales().submit_order(stack.account(), [Line("ETAC-99X", D("5"), D("1"))])
    wait_for(lambda: crm_row(stack, order_id).integration_status == "error", 30, "the error")
    assert "ETAC-99X" in crm_row(stack, order_id).integration_message
    assert erp_row(stack, order_id) is None
    number = crm_row(stack, order_id).order_number  # the CRM first (see above)
    letters = open_letters(stack, number, "the order's dead letter")
    assert "ETAC-99X" in letters[0].reason
    other = stack.sales().submit_order(stack.account(), LINES[:1])
    synced(stack, other)  # other orders keep flowing
    # Refused once, not again on every poll: the hub's error note is a new CRM version of an
    # order the ERP never took (it had no cross-reference, and each poll gave it a new id).
    version = crm_row(stack, order_id).version
    time.sleep(8 * stack.settings.poll_interval)
    assert crm_row(stack, order_id).version == version
    number = crm_row(stack, order_id).order_number  # the CRM first (see above)
    with stack.runtime.store.begin() as hub:
        letters = [d for d in DeadLetters.list(hub) if d.correlation_key == number]
    assert len(letters) == 1, [d.reason for d in letters]

    with stack.erp.begin() as conn:  # the item is created in the ERP; then a replay
        conn.execute(oitm.insert().values(ItemCode="ETAC-99X", ItemName="Ethyl acetate X",
                                          InvntryUom="kg", ManBtchNum="Y"))
    outcome = replay(stack.runtime.store, stack.runtime.bus, [letters[0].id], by="ops")
    assert [o.ok for o in outcome] == [True]
    assert len(erp_lines(stack, synced(stack, order_id).DocEntry)) == 1


def test_unknown_customer_is_an_error_until_the_customer_reaches_the_erp(stack: Stack) -> None:
    """A new CRM account whose name the ERP cannot hold (OCRD.CardName: 100 characters) does
    not reach the ERP, so its first order cannot either: after its retries the order shows
    why, and both messages are in dead letters. Once the sales person shortens the name the
    account syncs, and replaying the order's dead letter brings the order into the ERP."""
    account_id = str(uuid.uuid4())
    with stack.crm.begin() as conn:
        conn.execute(crm_account.insert().values(
            account_id=account_id, account_number="C09001", name="Zhejiang " + "长" * 120,
            country="CN", modified_at=utcnow(), modified_by="anna"))
    order_id = stack.sales().submit_order(account_id, LINES[:1])
    wait_for(lambda: crm_row(stack, order_id).integration_status == "error", 60, "the error")
    message = crm_row(stack, order_id).integration_message
    assert "customer C09001 does not exist in the ERP" in message, message
    assert erp_row(stack, order_id) is None
    number = crm_row(stack, order_id).order_number
    account_letter = open_letters(stack, "C09001", "the account's dead letter")
    order_letter = open_letters(stack, number, "the order's dead letter")
    assert "too long" in account_letter[0].reason
    assert "C09001" in order_letter[0].reason
    synced(stack, stack.sales().submit_order(stack.account(), LINES[:1]))  # others flow

    with stack.crm.begin() as conn:  # the fix, made where the mistake was
        conn.execute(update(crm_account).where(crm_account.c.account_id == account_id)
                     .values(name="Zhejiang Changxing Coatings", modified_at=utcnow()))

    def partner() -> Any:
        with stack.erp.connect() as conn:
            return conn.execute(select(ocrd).where(ocrd.c.CardCode == "C09001")).first()

    wait_for(partner, 30, "the account in the ERP")
    outcome = replay(stack.runtime.store, stack.runtime.bus, [order_letter[0].id], by="ops")
    assert [o.ok for o in outcome] == [True]
    row = synced(stack, order_id)
    assert row.CardCode == "C09001"
    with stack.erp.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ordr).where(
            order_id == ordr.c.U_CRM_ID)).scalar_one() == 1
