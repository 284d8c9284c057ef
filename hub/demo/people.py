"""The people who use the three systems, as code: what ``demo simulate`` does and what the
end-to-end tests do. They write the reference tables exactly as their users would (the hub is
not involved), following each system's conventions: a CRM writer bumps ``version``; an ERP
user takes DocNums from the series, closes delivered lines and stamps ``UpdateDate``; the lab
numbers LIMS rows after the highest ones there and stamps ``CHANGED_ON``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Column, Connection, Engine, func, select, update

from connectors.crm.schema import crm_order, crm_order_line
from connectors.erp.schema import (
    dln1,
    ibt1,
    insert_with_doc_num,
    inv1,
    odln,
    oinv,
    ordr,
    rdr1,
)
from connectors.lims.schema import lot, result, sample, test
from hub.demo.seed_data import SPECS, LotPlan
from hub.demo.seed_rows import (
    _FIRST_LOT,
    _FIRST_RESULT,
    _FIRST_SAMPLE,
    _FIRST_TEST,
    _QualityControl,
)
from hub.store.types import utcnow

__all__ = ["ErpUser", "LabPerson", "Line", "SalesPerson"]


@dataclass(frozen=True)
class Line:
    product_code: str
    quantity: Decimal
    unit_price: Decimal
    unit: str = "kg"
    description: str | None = None


class SalesPerson:
    """Someone working in the CRM."""

    def __init__(self, crm: Engine, name: str = "anna") -> None:
        self.crm = crm
        self.name = name

    def submit_order(
        self, account_id: str, lines: Sequence[Line], *, order_number: str | None = None,
        currency: str = "EUR", customer_po: str | None = None,
        requested_date: dt.date | None = None, notes: str | None = None,
        status: str = "submitted",
    ) -> str:
        """Enter an order and send it to the ERP; returns its order_id."""
        order_id = str(uuid.uuid4())
        number = order_number or f"SO-{utcnow():%Y}-{uuid.uuid4().int % 10**6:06d}"
        with self.crm.begin() as conn:
            conn.execute(crm_order.insert().values(
                order_id=order_id, order_number=number, account_id=account_id, status=status,
                currency=currency, customer_po=customer_po, requested_date=requested_date,
                notes=notes, total_amount=sum((ln.quantity * ln.unit_price for ln in lines),
                                              Decimal(0)).quantize(Decimal("0.01")),
                version=1, modified_at=utcnow(), modified_by=self.name,
            ))
            conn.execute(crm_order_line.insert(), [
                {"order_id": order_id, "line_no": i, "product_code": ln.product_code,
                 "description": ln.description, "quantity": ln.quantity, "unit": ln.unit,
                 "unit_price": ln.unit_price, "shipped_quantity": Decimal(0)}
                for i, ln in enumerate(lines, start=1)
            ])
        return order_id

    def edit(self, order_id: str, **fields: object) -> None:
        """Change header fields (customer_po, requested_date, notes, status ...)."""
        with self.crm.begin() as conn:
            conn.execute(update(crm_order).where(crm_order.c.order_id == order_id).values(
                **fields, version=crm_order.c.version + 1, modified_at=utcnow(),
                modified_by=self.name))

    def change_quantity(self, order_id: str, line_no: int, quantity: Decimal) -> None:
        with self.crm.begin() as conn:
            conn.execute(update(crm_order_line).where(
                crm_order_line.c.order_id == order_id, crm_order_line.c.line_no == line_no,
            ).values(quantity=quantity))
            conn.execute(update(crm_order).where(crm_order.c.order_id == order_id).values(
                version=crm_order.c.version + 1, modified_at=utcnow(), modified_by=self.name))

    def cancel(self, order_id: str) -> None:
        self.edit(order_id, status="cancelled")


class ErpUser:
    """Someone working in the ERP."""

    def __init__(self, erp: Engine, name: str = "manager") -> None:
        self.erp = erp
        self.name = name

    def _touch(self, conn: Connection, doc_entry: int, **values: object) -> None:
        conn.execute(update(ordr).where(ordr.c.DocEntry == doc_entry).values(
            **values, UpdateDate=utcnow(), UserSign2=self.name))

    def confirm(self, doc_entry: int) -> None:
        with self.erp.begin() as conn:
            self._touch(conn, doc_entry, Confirmed="Y")

    def hold(self, doc_entry: int) -> None:
        with self.erp.begin() as conn:
            self._touch(conn, doc_entry, Confirmed="N")

    def promise(self, doc_entry: int, date: dt.date) -> None:
        with self.erp.begin() as conn:
            self._touch(conn, doc_entry, DocDueDate=date)

    def comment(self, doc_entry: int, text: str) -> None:
        with self.erp.begin() as conn:
            self._touch(conn, doc_entry, Comments=text)

    def cancel(self, doc_entry: int) -> None:
        with self.erp.begin() as conn:
            self._touch(conn, doc_entry, CANCELED="Y", DocStatus="C")

    def enter_order(self, customer: str, lines: Sequence[Line], *, currency: str = "EUR",
                    reference: str | None = None) -> tuple[int, int]:
        """An order typed straight into the ERP; returns (DocEntry, DocNum)."""
        now = utcnow()
        with self.erp.begin() as conn:
            doc_entry, doc_num = insert_with_doc_num(conn, ordr, {
                "CardCode": customer, "NumAtCard": reference, "DocDate": now.date(),
                "DocCur": currency, "DocStatus": "O", "CANCELED": "N", "Confirmed": "Y",
                "DocTotal": sum((ln.quantity * ln.unit_price for ln in lines),
                                Decimal(0)).quantize(Decimal("0.01")),
                "UpdateDate": now, "UserSign2": self.name,
            })
            conn.execute(rdr1.insert(), [
                {"DocEntry": doc_entry, "LineNum": i, "ItemCode": ln.product_code,
                 "Dscription": ln.description, "Quantity": ln.quantity,
                 "OpenQty": ln.quantity, "Price": ln.unit_price, "unitMsr": ln.unit,
                 "LineStatus": "O"}
                for i, ln in enumerate(lines)
            ])
        return doc_entry, doc_num

    def deliver(self, doc_entry: int, lines: Sequence[tuple[int, Decimal, str]]) -> int:
        """Ship ``(order LineNum, quantity, batch)`` lines of an order; returns the delivery's
        DocEntry. Delivered lines are closed when nothing is left open."""
        now = utcnow()
        with self.erp.begin() as conn:
            card = conn.execute(select(ordr.c.CardCode).where(
                ordr.c.DocEntry == doc_entry)).scalar_one()
            delivery, _ = insert_with_doc_num(conn, odln, {
                "CardCode": card, "DocDate": now.date(), "UpdateDate": now})
            for n, (line_num, quantity, batch) in enumerate(lines):
                item = conn.execute(select(rdr1.c.ItemCode).where(
                    rdr1.c.DocEntry == doc_entry, rdr1.c.LineNum == line_num)).scalar_one()
                conn.execute(dln1.insert().values(
                    DocEntry=delivery, LineNum=n, BaseType=17, BaseEntry=doc_entry,
                    BaseLine=line_num, ItemCode=item, Quantity=quantity))
                conn.execute(ibt1.insert().values(
                    BaseEntry=delivery, BaseLinNum=n, BatchNum=batch, ItemCode=item,
                    BaseType=15, Quantity=quantity, CardCode=card))
                conn.execute(update(rdr1).where(
                    rdr1.c.DocEntry == doc_entry, rdr1.c.LineNum == line_num,
                ).values(OpenQty=rdr1.c.OpenQty - quantity))
            conn.execute(update(rdr1).where(rdr1.c.DocEntry == doc_entry, rdr1.c.OpenQty <= 0)
                         .values(LineStatus="C"))
            still_open = conn.execute(select(func.count()).select_from(rdr1).where(
                rdr1.c.DocEntry == doc_entry, rdr1.c.LineStatus == "O")).scalar_one()
            self._touch(conn, doc_entry, **({} if still_open else {"DocStatus": "C"}))
        return delivery

    def invoice(self, delivery: int) -> int:
        """Invoice a whole delivery; returns the invoice's DocEntry."""
        now = utcnow()
        with self.erp.begin() as conn:
            card = conn.execute(select(odln.c.CardCode).where(
                odln.c.DocEntry == delivery)).scalar_one()
            lines = conn.execute(select(dln1).where(dln1.c.DocEntry == delivery)).all()
            invoice, _ = insert_with_doc_num(conn, oinv, {
                "CardCode": card, "DocDate": now.date(), "UpdateDate": now,
                "DocTotal": Decimal(0)})
            conn.execute(inv1.insert(), [
                {"DocEntry": invoice, "LineNum": n, "BaseType": 15, "BaseEntry": delivery,
                 "BaseLine": line.LineNum, "ItemCode": line.ItemCode, "Quantity": line.Quantity}
                for n, line in enumerate(lines)
            ])
        return invoice


class LabPerson:
    """Someone working in the LIMS: tests new production lots and authorises their release.

    ``name`` is the LabWare user who reviews (``SAMPLE.REVIEWER``); results are entered by the
    seed data's analysts, as the seeded lots' are.
    """

    def __init__(self, lims: Engine, name: str = "HZHOU") -> None:
        self.lims = lims
        self.name = name

    def new_lot(self, product: str, *, grade: str | None = None, authorise: bool = True,
                name: str | None = None) -> str:
        """Log a lot of ``product`` made a day ago, with a release sample whose tests are all
        done and in spec, and return its LOT_NAME. With ``authorise`` (the default) the lot is
        released at once; otherwise it awaits review (see :meth:`authorise`).

        ``grade`` defaults to ``STANDARD`` (else the product's first graded spec); ``name``
        defaults to ``B<yymm>-<n>``, n following the highest LOT_NUMBER. Lot, sample, test and
        result numbers follow the highest in the LIMS; the newest ``CHANGED_ON`` is now.
        Raises ValueError for a product (or grade) without specs.
        """
        grades = [g for (p, g) in SPECS if p == product]
        chosen = grade or ("STANDARD" if "STANDARD" in grades else next(iter(grades), None))
        if chosen is None or (product, chosen) not in SPECS:
            raise ValueError(f"the LIMS has no spec for product {product!r} grade {chosen!r}")
        now = utcnow()
        state: Literal["released", "awaiting_review"] = (
            "released" if authorise else "awaiting_review")
        with self.lims.begin() as conn:
            lot_number = max(_next(conn, lot.c.LOT_NUMBER), _FIRST_LOT)
            lot_name = name or f"B{now:%y%m}-{lot_number - _FIRST_LOT + 1:04d}"
            plan = LotPlan(lot_name, product, chosen, made_days_ago=0, state=state)
            built = _build_lot(plan, lot_number - _FIRST_LOT, now)
            # Move the whole history back so that its last step happens now.
            built = _build_lot(plan, lot_number - _FIRST_LOT, now - (_latest(built) - now))
            # The builder numbers from the seed's first numbers: move them past the LIMS's.
            samples_by = max(_next(conn, sample.c.SAMPLE_NUMBER), _FIRST_SAMPLE) - _FIRST_SAMPLE
            shift = {
                "SAMPLE_NUMBER": samples_by, "ORIGINAL_SAMPLE": samples_by,
                "TEST_NUMBER": max(_next(conn, test.c.TEST_NUMBER), _FIRST_TEST) - _FIRST_TEST,
                "RESULT_NUMBER": max(_next(conn, result.c.RESULT_NUMBER), _FIRST_RESULT)
                - _FIRST_RESULT,
            }
            samples = [_shifted(row, shift) for row in built.samples]
            if authorise:
                for row in samples:
                    row["REVIEWER"] = self.name
            conn.execute(lot.insert(), built.lots)
            conn.execute(sample.insert(), samples)
            conn.execute(test.insert(), [_shifted(row, shift) for row in built.tests])
            conn.execute(result.insert(), [_shifted(row, shift) for row in built.results])
        return lot_name

    def authorise(self, lot_name: str) -> None:
        """Review a lot whose release samples are complete: authorise them, their tests and
        results, and release the lot. Raises ValueError when the lot has no complete release
        sample, or one is out of spec; NoResultFound when there is no such lot."""
        now = utcnow()
        with self.lims.begin() as conn:
            number = conn.execute(select(lot.c.LOT_NUMBER).where(
                lot.c.LOT_NAME == lot_name)).scalar_one()  # noqa: SIM300
            waiting = conn.execute(select(sample.c.SAMPLE_NUMBER, sample.c.IN_SPEC).where(
                number == sample.c.LOT, sample.c.SAMPLING_POINT == "RELEASE",
                sample.c.STATUS == "C")).all()
            if not waiting:
                raise ValueError(f"lot {lot_name} has no release sample awaiting review")
            if any(row.IN_SPEC != "T" for row in waiting):
                raise ValueError(f"lot {lot_name} has a release sample out of spec")
            numbers = [row.SAMPLE_NUMBER for row in waiting]
            conn.execute(update(result).where(
                result.c.SAMPLE_NUMBER.in_(numbers), result.c.STATUS == "E",
            ).values(STATUS="A", CHANGED_ON=now))
            conn.execute(update(test).where(
                test.c.SAMPLE_NUMBER.in_(numbers), test.c.STATUS == "C",
            ).values(STATUS="A", CHANGED_ON=now))
            conn.execute(update(sample).where(sample.c.SAMPLE_NUMBER.in_(numbers)).values(
                STATUS="A", DATE_REVIEWED=now, REVIEWER=self.name, CHANGED_ON=now))
            conn.execute(update(lot).where(number == lot.c.LOT_NUMBER).values(
                STATUS="A", CHANGED_ON=now))


def _next(conn: Connection, column: Column[int]) -> int:
    """One more than the highest value of ``column`` (1 in an empty table)."""
    return int(conn.execute(select(func.coalesce(func.max(column), 0) + 1)).scalar_one())


def _build_lot(plan: LotPlan, index: int, now: dt.datetime) -> _QualityControl:
    built = _QualityControl(now)
    built.add_lot(index, plan)
    return built


def _latest(built: _QualityControl) -> dt.datetime:
    """The newest timestamp of any row ``built`` holds."""
    return max(value for rows in (built.lots, built.samples, built.tests, built.results)
               for row in rows for value in row.values() if isinstance(value, dt.datetime))


def _shifted(row: dict[str, Any], shift: dict[str, int]) -> dict[str, Any]:
    """``row`` with its LIMS numbers moved up by ``shift`` (the seed numbers from 5001 ...)."""
    return {key: value + shift[key] if key in shift and value is not None else value
            for key, value in row.items()}
