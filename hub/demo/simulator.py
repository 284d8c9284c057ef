"""The people of the three systems at work, one action per tick (:class:`Simulator`), for
``python -m hub demo simulate`` (:mod:`hub.demo.simulate`).

Each tick one person does one thing, chosen by weight among the things there is something to
do for: sales people enter, edit and now and then cancel CRM orders; ERP users confirm the
orders the hub brought in (held, ``Confirmed = N``), hold one now and then, promise dates,
deliver open orders in part or in full with batches of authorised lots of the same product,
and invoice deliveries; the lab tests new lots and authorises them. Everything is found by
reading the systems' tables, so the simulation only acts on what exists, whoever made it, and
it writes through :mod:`hub.demo.people`, exactly as those people's systems would.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

import click
from sqlalchemy import Connection, Engine, and_, exists, func, or_, select

from connectors.crm.schema import crm_account, crm_order, crm_order_line
from connectors.erp.schema import dln1, inv1, ocrd, odln, oinv, ordr, rdr1
from connectors.lims.schema import lot, sample
from hub.demo.people import ErpUser, LabPerson, Line, SalesPerson
from hub.demo.seed_data import ITEMS, SPECS
from hub.store.engine import READ_ONLY
from hub.store.types import utcnow

__all__ = ["ACTIONS", "Action", "Simulator", "Summary", "reading"]


@dataclass(frozen=True)
class Action:
    """One kind of thing a person does, how often, and how the output names it."""

    key: str
    system: str
    #: The summary's name for what was done.
    label: str
    #: What the person tried to do, for the line of a failure: "could not <attempt>".
    attempt: str
    weight: float
    people: tuple[str, ...]


_SALES = ("anna", "wang.fang", "lars", "priya")
_ERP_USERS = ("manager", "zhang.min", "k.becker")
_ANALYSTS = ("LWANG", "MCHEN", "JLI")
_REVIEWERS = ("HZHOU", "KTANAKA")

ACTIONS: tuple[Action, ...] = (
    Action("submit", "CRM", "orders submitted", "submit an order", 4, _SALES),
    Action("edit", "CRM", "orders edited", "edit an order", 1.5, _SALES),
    Action("cancel", "CRM", "orders cancelled", "cancel an order", 0.2, _SALES),
    Action("confirm", "ERP", "orders confirmed", "confirm an order", 3, _ERP_USERS),
    Action("hold", "ERP", "orders put on hold", "hold an order", 0.3, _ERP_USERS),
    Action("promise", "ERP", "dates promised", "promise a date", 1.5, _ERP_USERS),
    Action("deliver", "ERP", "deliveries", "deliver an order", 3, _ERP_USERS),
    Action("invoice", "ERP", "invoices", "invoice a delivery", 2, _ERP_USERS),
    Action("test_lot", "LIMS", "lots tested", "test a new lot", 0.4, _ANALYSTS),
    # Also counts the lots the lab releases on the spot for a delivery that has none.
    Action("release", "LIMS", "lots released", "release a lot", 0.6, _REVIEWERS),
)
_BY_KEY = {a.key: a for a in ACTIONS}

#: CRM order statuses in which the customer may still change or cancel the order.
_OPEN_CRM = ("submitted", "on_hold", "confirmed")
#: Round order quantities, in kg.
_QUANTITIES = (200, 250, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 2400, 2500, 3000, 4000,
               5000, 6000, 8000, 10000, 12000, 15000, 16000, 18000, 20000)
#: List prices in EUR per kg.
_PRICES = {
    "ETAC-99": Decimal("1.05"), "MEK-995": Decimal("1.40"), "IPA-999": Decimal("1.15"),
    "TOL-995": Decimal("0.95"), "XYL-MIX": Decimal("0.90"), "NBAC-995": Decimal("1.30"),
    "ACE-995": Decimal("0.85"), "MEOH-999": Decimal("0.45"), "PGMEA-995": Decimal("1.90"),
    "BUOH-995": Decimal("1.35"),
}
#: Customer country -> (currency, units per EUR, price step).
_CURRENCIES = {
    "CN": ("CNY", Decimal("7.8"), Decimal("0.01")), "JP": ("JPY", Decimal(160), Decimal(1)),
    "US": ("USD", Decimal("1.08"), Decimal("0.01")),
    "BR": ("USD", Decimal("1.08"), Decimal("0.01")),
    "IN": ("USD", Decimal("1.08"), Decimal("0.01")),
}
_EUR = ("EUR", Decimal(1), Decimal("0.01"))
_NOTES = ("Deliver in IBC totes", "请在周五前交货", "Call the warehouse before delivery",
          "ISO tank, bottom discharge", "Certificate of analysis with every lot",
          "Dock 3, mornings only")
#: Candidates read per look at a table: enough to choose from, few enough to stay quick.
_LOOK = 30
@dataclass
class Summary:
    """What a simulation did: how many of each action (by :attr:`Action.key`), failures."""

    counts: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    actions: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"simulated {self.actions} action{_s(self.actions)} in {self.seconds:.1f} s:"]
        out += [f"  {a.system:<5} {a.label:<20} {self.counts[a.key]:>6}" for a in ACTIONS]
        out.append(f"  {'':<5} {'failed':<20} {self.failed:>6}")
        return out


class Simulator:
    """Does one action per :meth:`step`; reads and writes through the engines given.

    ``weights`` replaces the actions' weights (an action left out is never done); ``settle``
    is how many seconds an order must rest untouched before the warehouse ships it (ERP) or
    the customer cancels it (CRM), time for the hub to carry the last change across.
    """

    def __init__(self, crm: Engine, erp: Engine, lims: Engine, *,
                 rng: random.Random | None = None, echo: Callable[[str], None] = click.echo,
                 quiet: bool = False, weights: Mapping[str, float] | None = None,
                 settle: float = 5.0) -> None:
        unknown = set(weights or {}) - set(_BY_KEY)
        if unknown:
            raise ValueError(f"unknown actions {sorted(unknown)}; known: {sorted(_BY_KEY)}")
        self.crm, self.erp, self.lims = crm, erp, lims
        self.rng = rng or random.Random()
        self.echo = echo
        self.quiet = quiet
        self.weights = {a.key: (weights.get(a.key, 0.0) if weights is not None else a.weight)
                        for a in ACTIONS}
        self.settle = settle
        self.summary = Summary()

    # -- the loop's unit -------------------------------------------------------------------

    def step(self) -> str | None:
        """Do one action, chosen by weight among those with something to act on; returns its
        key, ``"failed"`` when it failed, None when there was nothing to do at all."""
        left = {key: w for key, w in self.weights.items() if w > 0}
        while left:
            key = self.rng.choices(list(left), weights=list(left.values()))[0]
            action = _BY_KEY[key]
            who = self.rng.choice(action.people)
            try:
                message = getattr(self, f"_{key}")(who)
            except Exception as exc:  # any failure is reported and the simulation goes on
                self.summary.failed += 1
                self.summary.actions += 1
                self._say(action.system, f"{who} could not {action.attempt}: {_short(exc)}",
                          failure=True)
                return "failed"
            if message is None:
                del left[key]
                continue
            self.summary.counts[key] += 1
            self.summary.actions += 1
            self._say(action.system, message)
            return key
        return None

    def _say(self, system: str, message: str, *, failure: bool = False) -> None:
        if self.quiet and not failure:
            return
        self.echo(f"{dt.datetime.now():%H:%M:%S}  {system:<5} {message}")

    # -- CRM ---------------------------------------------------------------------------------

    def _submit(self, who: str) -> str | None:
        with reading(self.crm) as conn:
            accounts = conn.execute(
                select(crm_account.c.account_id, crm_account.c.name, crm_account.c.country)
                .where(crm_account.c.erp_customer_code.is_not(None))
                .order_by(crm_account.c.account_number)).all()
            number = _next_order_number(conn, dt.date.today().year)
        if not accounts:
            return None
        account = self.rng.choice(accounts)
        currency, per_eur, step = _CURRENCIES.get(account.country or "", _EUR)
        count = self.rng.choices((1, 2, 3, 4, 5), weights=(30, 30, 20, 12, 8))[0]
        lines = []
        for item in self.rng.sample(ITEMS, count):
            discount = Decimal(100 - self.rng.randint(-3, 6)) / 100
            price = (_PRICES.get(item.code, Decimal(1)) * per_eur * discount).quantize(step)
            lines.append(Line(item.code, Decimal(self.rng.choice(_QUANTITIES)), price,
                              unit=item.uom, description=item.name))
        requested = dt.date.today() + dt.timedelta(days=self.rng.choice((7, 10, 14, 21, 28, 42)))
        notes = self.rng.choice(_NOTES) if self.rng.random() < 0.2 else None
        SalesPerson(self.crm, who).submit_order(
            account.account_id, lines, order_number=number, currency=currency,
            customer_po=self._customer_po(), requested_date=requested, notes=notes)
        kg = sum((ln.quantity for ln in lines), Decimal(0))
        return (f"{who} submitted {number} for {account.name}: {len(lines)} line{_s(len(lines))}"
                f", {_kg(kg)} kg")

    def _edit(self, who: str) -> str | None:
        orders = self._open_crm_orders()
        if not orders:
            return None
        order = self.rng.choice(orders)
        sales = SalesPerson(self.crm, who)
        what = self.rng.choices(("po", "date", "quantity"), weights=(3, 3, 4))[0]
        if what == "quantity" and not self._erp_delivered(order.order_id):
            with reading(self.crm) as conn:
                lines = conn.execute(select(crm_order_line).where(
                    crm_order_line.c.order_id == order.order_id,
                ).order_by(crm_order_line.c.line_no)).all()
            if lines:
                line = self.rng.choice(lines)
                choices = [q for q in _QUANTITIES if Decimal(q) != line.quantity]
                quantity = Decimal(self.rng.choice(choices))
                sales.change_quantity(order.order_id, line.line_no, quantity)
                return (f"{who} changed {order.order_number} line {line.line_no} "
                        f"({line.product_code}) from {_kg(line.quantity)} to {_kg(quantity)} kg")
        if what == "po":
            po = self._customer_po()
            sales.edit(order.order_id, customer_po=po)
            return f"{who} changed the customer PO of {order.order_number} to {po}"
        earliest = dt.date.today() + dt.timedelta(days=3)
        moved = (order.requested_date or earliest) + dt.timedelta(
            days=self.rng.choice((-7, -3, 4, 7, 14)))
        requested = max(moved, earliest)
        if requested == order.requested_date:
            requested += dt.timedelta(days=7)
        sales.edit(order.order_id, requested_date=requested)
        return f"{who} moved the requested date of {order.order_number} to {requested}"

    def _cancel(self, who: str) -> str | None:
        # Customers cancel before the plant commits (orders the ERP holds, or has not yet),
        # and not in the same breath as their last change: that one has reached the ERP.
        rested = utcnow() - dt.timedelta(seconds=self.settle)
        candidates = [o for o in self._open_crm_orders() if o.modified_at <= rested]
        committed = self._erp_committed([o.order_id for o in candidates])
        orders = [o for o in candidates if o.order_id not in committed]
        if not orders:
            return None
        order = self.rng.choice(orders)
        SalesPerson(self.crm, who).cancel(order.order_id)
        return f"{who} cancelled {order.order_number} for {order.name}"

    def _open_crm_orders(self) -> Sequence[Any]:
        """The newest CRM orders a customer may still change: not shipped, not failed."""
        query = (select(crm_order.c.order_id, crm_order.c.order_number,
                        crm_order.c.requested_date, crm_order.c.modified_at,
                        crm_account.c.name)
                 .join(crm_account, crm_account.c.account_id == crm_order.c.account_id)
                 .where(crm_order.c.status.in_(_OPEN_CRM),
                        or_(crm_order.c.integration_status.is_(None),
                            crm_order.c.integration_status != "error"))
                 .order_by(crm_order.c.order_number.desc()).limit(_LOOK))
        with reading(self.crm) as conn:
            return conn.execute(query).all()

    def _erp_delivered(self, order_id: str) -> bool:
        """Whether the ERP has delivered any of the CRM order's lines (the CRM may not know
        yet): such an order's lines are the ERP's, and cancelling it would be refused."""
        query = select(func.count()).select_from(dln1).join(
            ordr, and_(ordr.c.DocEntry == dln1.c.BaseEntry, dln1.c.BaseType == 17),
        ).where(ordr.c.U_CRM_ID == order_id)  # noqa: SIM300
        with reading(self.erp) as conn:
            return bool(conn.execute(query).scalar_one())

    def _erp_committed(self, order_ids: Sequence[str]) -> set[str]:
        """Those of the CRM orders that the ERP has confirmed or delivered from."""
        if not order_ids:
            return set()
        query = select(ordr.c.U_CRM_ID).where(ordr.c.U_CRM_ID.in_(order_ids),
                                              or_(ordr.c.Confirmed == "Y", _has_delivery()))
        with reading(self.erp) as conn:
            return set(conn.execute(query).scalars())

    def _customer_po(self) -> str:
        styles = (f"PO-{self.rng.randint(10000, 99999)}", f"45{self.rng.randint(0, 99999999):08d}",
                  f"CG{dt.date.today():%Y%m%d}-{self.rng.randint(1, 99):02d}")
        return self.rng.choice(styles)

    # -- ERP ---------------------------------------------------------------------------------

    def _confirm(self, who: str) -> str | None:
        order = self._pick_erp_order(ordr.c.U_CRM_ID.is_not(None), ordr.c.Confirmed == "N")
        if order is None:
            return None
        ErpUser(self.erp, who).confirm(order.DocEntry)
        return f"{who} confirmed order {_erp_order(order)}"

    def _hold(self, who: str) -> str | None:
        order = self._pick_erp_order(ordr.c.Confirmed == "Y", ~_has_delivery())
        if order is None:
            return None
        ErpUser(self.erp, who).hold(order.DocEntry)
        return f"{who} put order {_erp_order(order)} on hold"

    def _promise(self, who: str) -> str | None:
        order = (self._pick_erp_order(ordr.c.DocDueDate.is_(None))
                 or self._pick_erp_order())
        if order is None:
            return None
        tomorrow = dt.date.today() + dt.timedelta(days=1)
        wanted = order.U_ReqDate or dt.date.today() + dt.timedelta(days=14)
        date = max(wanted + dt.timedelta(days=self.rng.choice((-2, 0, 0, 3, 7))), tomorrow)
        if date == order.DocDueDate:
            date += dt.timedelta(days=2)
        ErpUser(self.erp, who).promise(order.DocEntry, date)
        return f"{who} promised order {_erp_order(order)} for {date}"

    def _deliver(self, who: str) -> str | None:
        open_line = exists().where(rdr1.c.DocEntry == ordr.c.DocEntry, rdr1.c.LineStatus == "O",
                                   rdr1.c.OpenQty > 0)
        # The warehouse needs a moment: it ships orders nobody touched for ``settle`` seconds,
        # by when the hub has brought in any change the CRM made meanwhile.
        settled = ordr.c.UpdateDate <= utcnow() - dt.timedelta(seconds=self.settle)
        order = self._pick_erp_order(ordr.c.Confirmed == "Y", open_line, settled)
        if order is None:
            return None
        with reading(self.erp) as conn:
            lines = conn.execute(select(rdr1.c.LineNum, rdr1.c.ItemCode, rdr1.c.OpenQty).where(
                rdr1.c.DocEntry == order.DocEntry, rdr1.c.LineStatus == "O", rdr1.c.OpenQty > 0,
            ).order_by(rdr1.c.LineNum)).all()
        if not lines:
            return None
        if self.rng.random() < 0.55:
            chosen = [(ln, ln.OpenQty) for ln in lines]
        else:
            picked = sorted(self.rng.sample(lines, self.rng.randint(1, len(lines))),
                            key=lambda ln: ln.LineNum)
            chosen = [(ln, self._part_of(ln.OpenQty)) for ln in picked]
        batches: dict[str, str] = {}
        for ln, _ in chosen:
            if ln.ItemCode not in batches:
                batches[ln.ItemCode] = self._batch_for(ln.ItemCode, order)
        shipped = [(ln.LineNum, quantity, batches[ln.ItemCode]) for ln, quantity in chosen]
        user = ErpUser(self.erp, who)
        delivery = user.deliver(order.DocEntry, shipped)
        with reading(self.erp) as conn:
            number = conn.execute(select(odln.c.DocNum).where(
                odln.c.DocEntry == delivery)).scalar_one()
        full = len(chosen) == len(lines) and all(q == ln.OpenQty for ln, q in chosen)
        kg = sum((q for _, q in chosen), Decimal(0))
        return (f"{who} delivered order {_erp_order(order)} {'in full' if full else 'in part'}: "
                f"delivery {number}, {len(chosen)} line{_s(len(chosen))}, {_kg(kg)} kg, "
                f"batch{'es' if len(set(batches.values())) > 1 else ''} "
                f"{', '.join(sorted(set(batches.values())))}")

    def _part_of(self, open_quantity: Decimal) -> Decimal:
        """A round part of what is open (all of it when little is left)."""
        share = Decimal(self.rng.choice((25, 40, 50, 60, 75))) / 100
        part = (open_quantity * share / 100).to_integral_value(rounding=ROUND_DOWN) * 100
        return part if 0 < part < open_quantity and open_quantity >= 200 else open_quantity

    def _batch_for(self, item: str, order: Any) -> str:
        """An authorised lot of ``item``; when there is none the lab releases a new one."""
        today = dt.date.today()
        released = exists().where(sample.c.LOT == lot.c.LOT_NUMBER, sample.c.STATUS == "A",
                                  sample.c.SAMPLING_POINT == "RELEASE")
        with reading(self.lims) as conn:
            names = conn.execute(select(lot.c.LOT_NAME).where(
                lot.c.PRODUCT == item, lot.c.STATUS == "A", released,  # noqa: SIM300
                or_(lot.c.X_EXPIRY_DATE.is_(None), today <= lot.c.X_EXPIRY_DATE),
            ).order_by(lot.c.LOT_NUMBER.desc()).limit(5)).scalars().all()
        if names:
            return str(self.rng.choice(names))
        reviewer = self.rng.choice(_REVIEWERS)
        name = LabPerson(self.lims, reviewer).new_lot(item)
        self.summary.counts["release"] += 1
        self._say("LIMS", f"{reviewer} released new lot {name} of {item}, needed for order "
                          f"{order.DocNum}")
        return name

    def _invoice(self, who: str) -> str | None:
        invoiced = exists().where(inv1.c.BaseEntry == odln.c.DocEntry, inv1.c.BaseType == 15)
        query = (select(odln.c.DocEntry, odln.c.DocNum, ocrd.c.CardName)
                 .outerjoin(ocrd, ocrd.c.CardCode == odln.c.CardCode)
                 .where(~invoiced).order_by(odln.c.DocEntry).limit(_LOOK))
        with reading(self.erp) as conn:
            deliveries = conn.execute(query).all()
        if not deliveries:
            return None
        delivery = self.rng.choice(deliveries)
        invoice = ErpUser(self.erp, who).invoice(delivery.DocEntry)
        with reading(self.erp) as conn:
            number = conn.execute(select(oinv.c.DocNum).where(
                oinv.c.DocEntry == invoice)).scalar_one()
        return f"{who} invoiced delivery {delivery.DocNum} ({delivery.CardName}): invoice {number}"

    def _pick_erp_order(self, *conditions: Any) -> Any | None:
        """One of the oldest open orders meeting ``conditions``, or None."""
        query = (select(ordr.c.DocEntry, ordr.c.DocNum, ordr.c.NumAtCard, ordr.c.DocDueDate,
                        ordr.c.U_ReqDate, ocrd.c.CardName)
                 .outerjoin(ocrd, ocrd.c.CardCode == ordr.c.CardCode)
                 .where(ordr.c.DocStatus == "O", ordr.c.CANCELED == "N", *conditions)
                 .order_by(ordr.c.DocEntry).limit(_LOOK))
        with reading(self.erp) as conn:
            orders = conn.execute(query).all()
        return self.rng.choice(orders) if orders else None

    # -- LIMS --------------------------------------------------------------------------------

    def _test_lot(self, who: str) -> str | None:
        with reading(self.erp) as conn:
            wanted = conn.execute(select(rdr1.c.ItemCode).where(
                rdr1.c.LineStatus == "O").group_by(rdr1.c.ItemCode).order_by(rdr1.c.ItemCode)
            ).scalars().all()
        specified = sorted({product for product, _ in SPECS})
        products = [p for p in wanted if p in specified]
        product = self.rng.choice(products if products and self.rng.random() < 0.6
                                  else specified)
        name = LabPerson(self.lims, who).new_lot(product, authorise=False)
        return f"{who} finished testing new lot {name} of {product}: in spec, awaiting review"

    def _release(self, who: str) -> str | None:
        complete = exists().where(sample.c.LOT == lot.c.LOT_NUMBER, sample.c.STATUS == "C",
                                  sample.c.SAMPLING_POINT == "RELEASE")
        out_of_spec = exists().where(sample.c.LOT == lot.c.LOT_NUMBER, sample.c.STATUS == "C",
                                     sample.c.SAMPLING_POINT == "RELEASE",
                                     or_(sample.c.IN_SPEC.is_(None), sample.c.IN_SPEC != "T"))
        with reading(self.lims) as conn:
            waiting = conn.execute(select(lot.c.LOT_NAME, lot.c.PRODUCT).where(
                lot.c.STATUS == "C", complete, ~out_of_spec,
            ).order_by(lot.c.LOT_NUMBER).limit(_LOOK)).all()
        if not waiting:
            return None
        chosen = waiting[0]
        LabPerson(self.lims, who).authorise(chosen.LOT_NAME)
        return f"{who} authorised lot {chosen.LOT_NAME} of {chosen.PRODUCT}: released"


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection that only reads (on SQLite it takes no write lock)."""
    with engine.connect() as conn:
        yield conn.execution_options(**{READ_ONLY: True})


def _has_delivery() -> Any:
    return exists().where(dln1.c.BaseEntry == ordr.c.DocEntry, dln1.c.BaseType == 17)


def _next_order_number(conn: Connection, year: int) -> str:
    """``SO-<year>-<n>``, n one more than the highest of the year's six-digit numbers."""
    prefix = f"SO-{year}-"
    numbers = conn.execute(select(crm_order.c.order_number).where(
        crm_order.c.order_number.like(f"{prefix}______"))).scalars()
    highest = max((int(n[len(prefix):]) for n in numbers if n[len(prefix):].isdigit()),
                  default=0)
    return f"{prefix}{highest + 1:06d}"


def _erp_order(order: Any) -> str:
    """``7 (SO-2026-000123, Rheinland Lacke GmbH)``: the DocNum people see, with context."""
    context = ", ".join(str(v) for v in (order.NumAtCard, order.CardName) if v)
    return f"{order.DocNum} ({context})" if context else str(order.DocNum)


def _kg(quantity: Decimal) -> str:
    return f"{quantity:,.0f}" if quantity == quantity.to_integral_value() else f"{quantity:,.3f}"


def _s(count: float) -> str:
    return "" if count == 1 else "s"


def _short(exc: BaseException) -> str:
    """The error's kind and first line, short enough for one line of output."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return detail if len(detail) <= 200 else detail[:199] + "…"
