"""Randomized interleaved edits of one order on both sides end with the CRM and the ERP agreeing.

Each hypothesis example submits a fresh order in the CRM, waits until the ERP has it (the CRM
shows its ``erp_order_number``), then runs 3-12 steps, each one of:

- CRM (sales person): customer PO, requested date, notes, a line's quantity, add a line,
  remove a line. Line edits happen only before the test's first delivery (the ERP owns the
  lines from then on, ``mappings/ownership.yaml``); a removal keeps at least one line.
- ERP (order manager): confirm, hold, promise a date, comment, partially deliver an open line
  from a seeded batch of the line's item (``hub.demo.seed_data.LOTS``).
- a pause of 0.25-1.5 s that lets the hub sync; without one, the next edit lands before the
  hub has carried the previous one over, so edits on both sides interleave.

What "agree" means (:func:`crm_side` and :func:`erp_side` build the same shape from each
system's own tables, read directly, not through the connectors):

===================  ==========================  =========================================
field                CRM (crm_order, ..._line)   ERP (ORDR, RDR1, DLN1, IBT1)
===================  ==========================  =========================================
customer_po          customer_po                 U_CustPO
requested_date       requested_date              U_ReqDate
notes                notes                       Comments
promised_date        promised_date               DocDueDate
erp_order_number     erp_order_number            str(DocNum)
status               status                      ``mappings.rules.erp_order_status`` of
                                                 CANCELED, Confirmed and per-line ordered /
                                                 delivered (DLN1) / invoiced (none here)
lines, by line_no    line_no, product_code,      U_CRM_LINE (else LineNum + 1), ItemCode,
                     description, quantity,      Dscription, Quantity, unitMsr, Price,
                     unit, unit_price,           delivered = sum of DLN1.Quantity
                     shipped_quantity
batches              crm_shipment_line summed    IBT1 of the order's delivery lines summed
                     per (line_no, batch)        per (U_CRM_LINE, BatchNum)
===================  ==========================  =========================================

Decimals compare by value. Not compared: ``total_amount``/DocTotal (not carried by either
direction, ``hub.sync.orders.TO_ERP``/``TO_CRM``: each side derives it from its lines, and
the demo ``SalesPerson.change_quantity`` does not recompute the CRM's), the order date,
currency and customer (create-only), and RDR1.ShipDate (unmapped).

Agreement is awaited for up to 30 s, and it must then hold, unchanged, for a second with the
outbox and the running parts' queues empty: a transient agreement while a stale message is
still on its way does not count. A disagreement that stands unchanged for 6 s with the hub
idle fails at once (nothing is left that could change it).

On top of agreement, each example checks that nothing was lost or doubled:

- fields only one side edits end with that side's last value (customer PO, requested date and
  the lines: the CRM's; promised date, confirmed/held and the shipped quantities and batches:
  the ERP's), so the status is the one the ERP's last confirm/hold and deliveries give;
- notes, edited on both sides, end as the last value one of the two sides wrote (a conflict
  is won by the CRM, a later uncontested edit by either side wins);
- the CRM shows ``integration_status = synced``; exactly one ORDR carries the order's
  U_CRM_ID; no message went to dead letters (no step is deliberately invalid: CRM line edits
  stop at the first delivery, deliveries are small enough that a quantity edit still on its
  way never shrinks a line below what shipped, and only lines the CRM still has, with the
  same item, are delivered);
- the ERP's own bookkeeping holds: OpenQty = Quantity - delivered on every line.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import and_, delete, func, select, update

from connectors.crm.schema import crm_order, crm_order_line, crm_shipment, crm_shipment_line
from connectors.erp.schema import dln1, ibt1, ordr, rdr1
from hub.demo.people import Line
from hub.demo.seed_data import LOTS
from hub.outbox import Outbox
from hub.store.deadletters import DeadLetters
from hub.store.types import utcnow
from mappings.rules import LineProgress, erp_order_status
from tests.helpers import wait_for
from tests.sync.conftest import Stack

#: Batch numbers per item, from the seeded lots.
LOTS_BY_ITEM: dict[str, list[str]] = defaultdict(list)
for _lot in LOTS:
    LOTS_BY_ITEM[_lot.product].append(_lot.name)
PRODUCTS = sorted(LOTS_BY_ITEM)

START_LINES = (Line("ETAC-99", Decimal("1200"), Decimal("1.25")),
               Line("MEK-995", Decimal("800"), Decimal("1.9")))
START_PO, START_DATE, START_NOTES = "PO-START", dt.date(2026, 12, 1), "start"
#: No line is ever edited below this quantity, and all deliveries together stay below it, so
#: a quantity edit still on its way to the ERP never shrinks a line below what shipped.
MIN_QUANTITY = 100
MAX_DELIVERY = 5
#: ORDR.U_CRM_ID, the CRM order an ERP order belongs to
crm_id_of_order = ordr.c.U_CRM_ID
SETTLE_TIMEOUT = 30.0
STABLE_FOR = 1.0
#: A disagreement that has not changed for this long with the hub idle (outbox and queues
#: empty, pollers every 0.2 s) is final: fail then rather than at SETTLE_TIMEOUT, which keeps
#: hypothesis's shrinking of a failure affordable.
STUCK_FOR = 6.0


# -- steps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrmPo:
    value: str


@dataclass(frozen=True)
class CrmRequestedDate:
    value: dt.date


@dataclass(frozen=True)
class CrmNotes:
    value: str


@dataclass(frozen=True)
class CrmQuantity:
    pick: int
    quantity: int


@dataclass(frozen=True)
class CrmAddLine:
    product: str
    quantity: int
    price_cents: int


@dataclass(frozen=True)
class CrmRemoveLine:
    pick: int


@dataclass(frozen=True)
class ErpConfirm:
    pass


@dataclass(frozen=True)
class ErpHold:
    pass


@dataclass(frozen=True)
class ErpPromise:
    value: dt.date


@dataclass(frozen=True)
class ErpComment:
    value: str


@dataclass(frozen=True)
class ErpDeliver:
    pick: int
    quantity: int
    lot_pick: int


@dataclass(frozen=True)
class Pause:
    seconds: float


Step = (CrmPo | CrmRequestedDate | CrmNotes | CrmQuantity | CrmAddLine | CrmRemoveLine
        | ErpConfirm | ErpHold | ErpPromise | ErpComment | ErpDeliver | Pause)

# Small pools, so that the two sides sometimes write the same value, or a value comes back.
_texts = st.sampled_from(["rush", "call first", "请在周五前交货", "pallets only"])
_dates = st.sampled_from([dt.date(2026, 12, 1), dt.date(2026, 12, 15), dt.date(2027, 1, 10)])
_picks = st.integers(0, 5)

CRM_STEPS = st.one_of(
    st.builds(CrmPo, st.sampled_from([START_PO, "PO-7781", "PO-7782"])),
    st.builds(CrmRequestedDate, _dates),
    st.builds(CrmNotes, _texts),
    st.builds(CrmQuantity, _picks, st.integers(MIN_QUANTITY, 3000)),
    st.builds(CrmAddLine, st.sampled_from(PRODUCTS), st.integers(MIN_QUANTITY, 3000),
              st.integers(50, 500)),
    st.builds(CrmRemoveLine, _picks),
)
ERP_STEPS = st.one_of(
    st.just(ErpConfirm()),
    st.just(ErpHold()),
    st.builds(ErpPromise, _dates),
    st.builds(ErpComment, _texts),
    st.builds(ErpDeliver, _picks, st.integers(1, MAX_DELIVERY), _picks),
)
PAUSES = st.builds(Pause, st.sampled_from([0.25, 0.75, 1.5]))
STEPS = st.lists(st.one_of(CRM_STEPS, ERP_STEPS, PAUSES), min_size=3, max_size=12)


# -- one example -------------------------------------------------------------------------


@dataclass
class Example:
    """One order, and what each person last did to it: the expected single-writer values."""

    stack: Stack
    order_id: str
    order_number: str
    doc_entry: int
    doc_num: int
    po: str | None = START_PO
    requested: dt.date | None = START_DATE
    crm_notes: str | None = START_NOTES
    erp_notes: str | None = START_NOTES
    #: line_no -> (product, quantity, price) as the sales person left them
    lines: dict[int, tuple[str, Decimal, Decimal]] = field(default_factory=dict)
    promised: dt.date | None = None
    confirmed: bool = False  # CRM orders arrive held
    shipped: dict[int, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    batches: dict[tuple[int, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    skipped: list[str] = field(default_factory=list)
    #: dead letters that existed before this example started
    dead_before: set[int] = field(default_factory=set)

    @property
    def delivered(self) -> bool:
        return bool(self.shipped)


def start(stack: Stack) -> Example:
    with stack.runtime.store.begin() as hub:
        dead_before = {d.id for d in DeadLetters.list(hub, status=None, limit=10_000)}
    order_id = stack.sales().submit_order(
        stack.account(), START_LINES, customer_po=START_PO, requested_date=START_DATE,
        notes=START_NOTES)

    def bound() -> Any:
        with stack.crm.connect() as conn:
            row = conn.execute(select(crm_order).where(crm_order.c.order_id == order_id)).one()
        return row if row.erp_order_number and row.integration_status == "synced" else None

    wait_for(bound, 30, "the new order in the ERP")
    with stack.crm.connect() as conn:
        number = conn.execute(select(crm_order.c.order_number)
                              .where(crm_order.c.order_id == order_id)).scalar_one()
    with stack.erp.connect() as conn:
        head = conn.execute(select(ordr.c.DocEntry, ordr.c.DocNum)
                            .where(crm_id_of_order == order_id)).one()
    example = Example(stack, order_id, number, head.DocEntry, head.DocNum,
                      dead_before=dead_before)
    example.lines = {n: (ln.product_code, ln.quantity, ln.unit_price)
                     for n, ln in enumerate(START_LINES, start=1)}
    note(f"order {number} ({order_id}), ERP DocEntry {head.DocEntry} DocNum {head.DocNum}")
    return example


def _touch_crm(ex: Example) -> dict[str, Any]:
    return {"version": crm_order.c.version + 1, "modified_at": utcnow(), "modified_by": "anna"}


def crm_add_line(ex: Example, product: str, quantity: Decimal, price: Decimal) -> int:
    """What the sales person's CRM does: a line numbered after the highest, version bumped."""
    with ex.stack.crm.begin() as conn:
        highest = conn.execute(select(func.max(crm_order_line.c.line_no)).where(
            crm_order_line.c.order_id == ex.order_id)).scalar_one()
        line_no = int(highest or 0) + 1
        conn.execute(crm_order_line.insert().values(
            order_id=ex.order_id, line_no=line_no, product_code=product, quantity=quantity,
            unit="kg", unit_price=price, shipped_quantity=Decimal(0)))
        conn.execute(update(crm_order).where(crm_order.c.order_id == ex.order_id)
                     .values(**_touch_crm(ex)))
    return line_no


def crm_remove_line(ex: Example, line_no: int) -> None:
    with ex.stack.crm.begin() as conn:
        conn.execute(delete(crm_order_line).where(crm_order_line.c.order_id == ex.order_id,
                                                  crm_order_line.c.line_no == line_no))
        conn.execute(update(crm_order).where(crm_order.c.order_id == ex.order_id)
                     .values(**_touch_crm(ex)))


def erp_deliver(ex: Example, step: ErpDeliver) -> str | None:
    """Ship part of an open ERP line that the CRM still has with the same item; returns what
    was done, or None when no line qualifies."""
    with ex.stack.erp.connect() as conn:
        rows = conn.execute(select(rdr1).where(rdr1.c.DocEntry == ex.doc_entry)
                            .order_by(rdr1.c.LineNum)).all()
    candidates = [
        r for r in rows
        if r.OpenQty > MAX_DELIVERY and LOTS_BY_ITEM.get(r.ItemCode)
        and ex.lines.get(_line_no(r), ("",))[0] == r.ItemCode
    ]
    if not candidates:
        return None
    row = candidates[step.pick % len(candidates)]
    lots = LOTS_BY_ITEM[row.ItemCode]
    batch = lots[step.lot_pick % len(lots)]
    quantity = Decimal(step.quantity)
    ex.stack.erp_user().deliver(ex.doc_entry, [(row.LineNum, quantity, batch)])
    line_no = _line_no(row)
    ex.shipped[line_no] += quantity
    ex.batches[(line_no, batch)] += quantity
    return f"delivered {quantity} of line {line_no} (LineNum {row.LineNum}) from {batch}"


def run_step(ex: Example, step: Step) -> None:
    sales, erp = ex.stack.sales(), ex.stack.erp_user()
    done: str | None = None
    match step:
        case CrmPo(value=value):
            sales.edit(ex.order_id, customer_po=value)
            ex.po = value
        case CrmRequestedDate(value=value):
            sales.edit(ex.order_id, requested_date=value)
            ex.requested = value
        case CrmNotes(value=value):
            sales.edit(ex.order_id, notes=value)
            ex.crm_notes = value
        case CrmQuantity(pick=pick, quantity=quantity) if not ex.delivered:
            line_no = sorted(ex.lines)[pick % len(ex.lines)]
            sales.change_quantity(ex.order_id, line_no, Decimal(quantity))
            product, _, price = ex.lines[line_no]
            ex.lines[line_no] = (product, Decimal(quantity), price)
        case CrmAddLine(product=product, quantity=quantity, price_cents=cents) if (
                not ex.delivered):
            price = Decimal(cents) / 100
            line_no = crm_add_line(ex, product, Decimal(quantity), price)
            ex.lines[line_no] = (product, Decimal(quantity), price)
            done = f"added line {line_no}"
        case CrmRemoveLine(pick=pick) if not ex.delivered and len(ex.lines) > 1:
            line_no = sorted(ex.lines)[pick % len(ex.lines)]
            crm_remove_line(ex, line_no)
            del ex.lines[line_no]
            done = f"removed line {line_no}"
        case ErpConfirm():
            erp.confirm(ex.doc_entry)
            ex.confirmed = True
        case ErpHold():
            erp.hold(ex.doc_entry)
            ex.confirmed = False
        case ErpPromise(value=value):
            erp.promise(ex.doc_entry, value)
            ex.promised = value
        case ErpComment(value=value):
            erp.comment(ex.doc_entry, value)
            ex.erp_notes = value
        case ErpDeliver():
            done = erp_deliver(ex, step)
            if done is None:
                ex.skipped.append(repr(step))
        case Pause(seconds=seconds):
            time.sleep(seconds)
        case _:
            ex.skipped.append(repr(step))  # a line edit after the first delivery
    if done:
        note(f"{step!r}: {done}")


# -- the two sides' views ------------------------------------------------------------------


def _q(value: Decimal | None) -> str | None:
    """A decimal by value, for comparing and for readable diffs."""
    if value is None:
        return None
    return format(Decimal(value).normalize(), "f")


def _line_no(row: Any) -> int:
    return int(row.U_CRM_LINE) if row.U_CRM_LINE is not None else int(row.LineNum) + 1


def crm_side(ex: Example) -> dict[str, Any]:
    with ex.stack.crm.connect() as conn:
        head = conn.execute(select(crm_order).where(crm_order.c.order_id == ex.order_id)).one()
        lines = conn.execute(select(crm_order_line).where(
            crm_order_line.c.order_id == ex.order_id).order_by(crm_order_line.c.line_no)).all()
        shipped = conn.execute(
            select(crm_shipment_line.c.line_no, crm_shipment_line.c.batch_number,
                   func.sum(crm_shipment_line.c.quantity))
            .join(crm_shipment, crm_shipment.c.shipment_id == crm_shipment_line.c.shipment_id)
            .where(crm_shipment.c.order_id == ex.order_id)
            .group_by(crm_shipment_line.c.line_no, crm_shipment_line.c.batch_number)).all()
    return {
        "customer_po": head.customer_po, "requested_date": head.requested_date,
        "notes": head.notes, "promised_date": head.promised_date,
        "erp_order_number": head.erp_order_number, "status": head.status,
        "lines": [(ln.line_no, ln.product_code, ln.description, _q(ln.quantity), ln.unit,
                   _q(ln.unit_price), _q(ln.shipped_quantity)) for ln in lines],
        "batches": sorted((int(no), batch, _q(qty)) for no, batch, qty in shipped),
    }


def crm_integration(ex: Example) -> tuple[str | None, str | None]:
    with ex.stack.crm.connect() as conn:
        row = conn.execute(select(crm_order.c.integration_status,
                                  crm_order.c.integration_message)
                           .where(crm_order.c.order_id == ex.order_id)).one()
    return row.integration_status, row.integration_message


def erp_side(ex: Example) -> dict[str, Any]:
    doc = ex.doc_entry
    with ex.stack.erp.connect() as conn:
        head = conn.execute(select(ordr).where(ordr.c.DocEntry == doc)).one()
        lines = conn.execute(select(rdr1).where(rdr1.c.DocEntry == doc)
                             .order_by(rdr1.c.LineNum)).all()
        delivered = {int(line): Decimal(qty) for line, qty in conn.execute(
            select(dln1.c.BaseLine, func.sum(dln1.c.Quantity))
            .where(dln1.c.BaseType == 17, dln1.c.BaseEntry == doc)
            .group_by(dln1.c.BaseLine))}
        batches = conn.execute(
            select(dln1.c.BaseLine, ibt1.c.BatchNum, func.sum(ibt1.c.Quantity))
            .select_from(ibt1.join(dln1, and_(ibt1.c.BaseEntry == dln1.c.DocEntry,
                                              ibt1.c.BaseLinNum == dln1.c.LineNum)))
            .where(dln1.c.BaseType == 17, dln1.c.BaseEntry == doc)
            .group_by(dln1.c.BaseLine, ibt1.c.BatchNum)).all()
    by_num = {int(ln.LineNum): _line_no(ln) for ln in lines}
    status = erp_order_status(
        cancelled=head.CANCELED == "Y", confirmed=head.Confirmed == "Y",
        lines=[LineProgress(ordered=ln.Quantity,
                            delivered=delivered.get(int(ln.LineNum), Decimal(0)))
               for ln in lines])
    return {
        "customer_po": head.U_CustPO, "requested_date": head.U_ReqDate, "notes": head.Comments,
        "promised_date": head.DocDueDate, "erp_order_number": str(head.DocNum),
        "status": status,
        "lines": sorted((_line_no(ln), ln.ItemCode, ln.Dscription, _q(ln.Quantity), ln.unitMsr,
                         _q(ln.Price), _q(delivered.get(int(ln.LineNum), Decimal(0))))
                        for ln in lines),
        "batches": sorted((by_num.get(int(line), -1), batch, _q(qty))
                          for line, batch, qty in batches),
    }


def erp_open_quantities(ex: Example) -> list[tuple[int, str | None, str | None]]:
    """(line, OpenQty, Quantity - delivered) of every ERP line: the ERP's own bookkeeping."""
    with ex.stack.erp.connect() as conn:
        lines = conn.execute(select(rdr1).where(rdr1.c.DocEntry == ex.doc_entry)).all()
        delivered = dict(conn.execute(
            select(dln1.c.BaseLine, func.sum(dln1.c.Quantity))
            .where(dln1.c.BaseType == 17, dln1.c.BaseEntry == ex.doc_entry)
            .group_by(dln1.c.BaseLine)).all())
    return sorted((_line_no(ln), _q(ln.OpenQty),
                   _q(ln.Quantity - Decimal(delivered.get(ln.LineNum) or 0))) for ln in lines)


def new_dead_letters(ex: Example) -> list[tuple[str | None, str | None, str]]:
    with ex.stack.runtime.store.begin() as hub:
        return [(d.correlation_key, d.type, d.reason)
                for d in DeadLetters.list(hub, status=None, limit=10_000)
                if d.id not in ex.dead_before]


def hub_idle(stack: Stack) -> bool:
    """Nothing in the outbox, nothing waiting in a queue a running part consumes (or in the
    broker's dead-letter queue). Queues of parts this stack does not run are left out: every
    delivery also goes to the certificates queue, which nobody consumes here."""
    with stack.runtime.store.begin() as hub:
        if Outbox.pending(hub):
            return False
    consumed = {sub.queue for part in stack.daemon.parts for sub in part.subscriptions()}
    return not any(depth for queue, depth in stack.runtime.bus.queue_depths().items()
                   if queue in consumed or "dead-letter" in queue)


def diff(crm: dict[str, Any], erp: dict[str, Any]) -> str:
    out = []
    for name in crm:
        if crm[name] != erp[name]:
            out.append(f"  {name}:\n    CRM {crm[name]!r}\n    ERP {erp[name]!r}")
    return "\n".join(out) or "  (none)"


def settle(ex: Example) -> dict[str, Any]:
    """Wait until both sides agree, the CRM shows synced and the hub is idle, and it stays so
    for STABLE_FOR seconds; returns the agreed view. Fails with the difference after
    SETTLE_TIMEOUT, or once the same difference has stood STUCK_FOR seconds with the hub idle.
    """
    begun = time.monotonic()
    deadline = begun + SETTLE_TIMEOUT
    seen: tuple[Any, ...] | None = None
    since = 0.0
    while True:
        crm, erp = crm_side(ex), erp_side(ex)
        integration = crm_integration(ex)
        idle = hub_idle(ex.stack)
        now = time.monotonic()
        if (crm, erp, integration, idle) != seen:
            seen, since = (crm, erp, integration, idle), now
        settled = crm == erp and integration[0] == "synced" and idle
        if settled and now - since >= STABLE_FOR:
            return crm
        if now > deadline or (not settled and idle and now - since >= STUCK_FOR):
            raise AssertionError(
                f"order {ex.order_number}: CRM and ERP do not agree after {now - begun:.1f}s "
                f"(CRM integration {integration}; hub idle {idle}; "
                f"new dead letters {new_dead_letters(ex)}):\n{diff(crm, erp)}")
        time.sleep(0.1)


def expected_status(ex: Example) -> str:
    # Deliveries are partial by construction: no line is ever fully shipped.
    if ex.delivered:
        return "partially_shipped"
    return "confirmed" if ex.confirmed else "on_hold"


def check_example(stack: Stack, steps: list[Step]) -> None:
    ex = start(stack)
    for step in steps:
        run_step(ex, step)
    if ex.skipped:
        note(f"skipped steps: {ex.skipped}")
    final = settle(ex)
    note(f"agreed: {final}")

    with stack.erp.connect() as conn:
        copies = conn.execute(select(func.count()).select_from(ordr).where(
            crm_id_of_order == ex.order_id)).scalar_one()
    assert copies == 1, f"{copies} ERP orders carry CRM order {ex.order_id}"
    dead = new_dead_letters(ex)
    assert not dead, f"order {ex.order_number}: dead letters {dead}"

    # No lost update: what only one side edits ends as that side's last value.
    expected_lines = [(no, product, None, _q(qty), "kg", _q(price), _q(ex.shipped.get(no)
                                                                       or Decimal(0)))
                      for no, (product, qty, price) in sorted(ex.lines.items())]
    wanted = {
        "customer_po": ex.po, "requested_date": ex.requested, "promised_date": ex.promised,
        "erp_order_number": str(ex.doc_num), "status": expected_status(ex),
        "lines": expected_lines,
        "batches": sorted((no, batch, _q(qty)) for (no, batch), qty in ex.batches.items()),
    }
    lost = {k: (final[k], v) for k, v in wanted.items() if final[k] != v}
    assert not lost, f"order {ex.order_number}: agreed on (got, expected): {lost}"
    assert final["notes"] in (ex.crm_notes, ex.erp_notes), (
        f"order {ex.order_number}: notes {final['notes']!r} is neither side's last edit "
        f"(CRM {ex.crm_notes!r}, ERP {ex.erp_notes!r})")
    bookkeeping = [(no, open_qty, due) for no, open_qty, due in erp_open_quantities(ex)
                   if open_qty != due]
    assert not bookkeeping, f"ERP OpenQty != Quantity - delivered: {bookkeeping}"


# -- the tests -----------------------------------------------------------------------------

COMMON = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                  print_blob=True)


def known_divergences(test: Any) -> Any:
    """Minimal examples of divergences this test found; each FAILS until the sync is fixed
    (see the comments). They run first, on both stacks, before any generated example."""
    # BUG (deterministic): a delivery that leaves the order's status unchanged never reaches
    # the CRM. The second partial delivery of a line: ERP shows 2 delivered, the CRM line's
    # shipped_quantity stays 1. connectors/erp/sync.py ErpPoller._order_messages (~l.118-121)
    # drops the ERP order as "an echo" when project(order, TO_CRM) equals the remembered ERP
    # side, and that projection (hub/sync/merge.py LINE_FIELDS) has no shipped quantities;
    # only the first delivery gets through, because it also changes the status.
    test = example(steps=[ErpDeliver(0, 1, 0), Pause(1.5), ErpDeliver(0, 1, 0)])(test)
    # BUG (failed every run): the CRM removes line 2 and the ERP delivers part of line 1
    # before the hub has carried the removal over. The ERP's order.changed (still listing
    # line 2, shipped 0) is dead-lettered by the CRM applier: "order SO-... has no line 2 to
    # mark shipped". connectors/crm/sync.py _shipped (~l.306) reports every ERP line whose
    # shipped quantity differs from the CRM's, and a line the CRM no longer has differs
    # (None != 0); CrmOrders._set_shipped then raises UnknownReference, losing the whole
    # ERP change: the CRM line 1 keeps shipped_quantity 0. (On the real stack the same
    # steps sometimes lose the delivery through the next bug instead, without a dead letter.)
    test = example(steps=[CrmRemoveLine(1), ErpDeliver(0, 1, 0), Pause(0.25)])(test)
    # BUG (timing-dependent, fails about one run in two): an ERP edit made after the ERP
    # poller's last poll and before the hub writes a CRM change into the ERP is swallowed:
    # the CRM never gets the promised date (likewise an ERP comment, or a delivery's shipped
    # quantities). connectors/erp/sync.py ErpApplier._remember (~l.321) records
    # project(after, ALL_FIELDS), the whole order read back after the write, person's edit
    # included, as what the hub wrote (with the write's version); the poller then skips the
    # order as an echo (seen in the journal: no erp order.changed is ever published). By
    # the code, a poller read from before the write may also be dropped by the CRM applier
    # as older than that version (connectors/crm/sync.py ~l.177).
    # remember_written's own docstring says it must record only the fields written.
    return example(steps=[CrmPo("PO-7781"), ErpPromise(dt.date(2027, 1, 10)),
                          Pause(0.25)])(test)


# Passing, the file takes about two to three minutes; the longer limit is for shrinking a
# failure, so that hypothesis gets to print the minimal example.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
@settings(COMMON, max_examples=15)
@given(steps=STEPS)
@known_divergences
def test_interleaved_edits_end_in_agreement_embedded(stack: Stack, steps: list[Step]) -> None:
    check_example(stack, steps)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("stack", ["real"], indirect=True)
@settings(COMMON, max_examples=8)
@given(steps=STEPS)
@known_divergences
def test_interleaved_edits_end_in_agreement_real(stack: Stack, steps: list[Step]) -> None:
    check_example(stack, steps)
