"""Making an ERP order's lines (RDR1) match the line set the CRM wants, without undoing a delivery.

Lines are matched by the CRM's ``line_no`` (``U_CRM_LINE``, or ``LineNum + 1`` for lines the
ERP entered without one). New lines take LineNums after every number the order ever used, so
a removed line's number is never handed to another product. What was delivered bounds what
may change: a delivered line keeps its item, cannot shrink below the delivered quantity and
cannot be removed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, insert, select, update

from connectors.erp.common import check_lengths, chunked
from connectors.erp.order_reads import delivered_by_line
from connectors.erp.schema import oitm, rdr1
from hub.errors import ForbiddenTransition, InvalidMessage, UnknownReference
from hub.mapping import EntityMapping
from hub.model.records import OrderLine

__all__ = ["LinePlan", "check_items", "check_line_numbers", "plan_lines"]

_OPEN, _CLOSED = "O", "C"
#: The canonical line fields the CRM may change on an existing line.
_EDITABLE = ("product_code", "description", "quantity", "unit_price", "unit")

Label = Callable[[int | None], Callable[[str], str]]


@dataclass
class LinePlan:
    """The writes that bring an order's lines to the wanted set, and what they amount to."""

    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    #: (Quantity, Price) of every line the order has afterwards, for DocTotal.
    priced: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    #: Whether any line is left with something to deliver.
    any_open: bool = False

    def apply(self, conn: Connection, doc_entry: int) -> None:
        """Run the writes: one statement per kind, whatever the number of lines."""
        if self.deletes:
            conn.execute(delete(rdr1).where(
                rdr1.c.DocEntry == doc_entry, rdr1.c.LineNum.in_(self.deletes)))
        if self.updates:
            conn.execute(
                update(rdr1).where(rdr1.c.DocEntry == bindparam("key_entry"),
                                   rdr1.c.LineNum == bindparam("key_line")),
                [{**row, "key_entry": doc_entry} for row in self.updates],
            )
        if self.inserts:
            conn.execute(insert(rdr1), [{**row, "DocEntry": doc_entry} for row in self.inserts])


def check_items(conn: Connection, codes: Sequence[str]) -> None:
    """Raise UnknownReference naming every code in ``codes`` that OITM does not hold."""
    wanted = list(dict.fromkeys(codes))
    known: set[str] = set()
    for chunk in chunked(wanted):
        known.update(conn.scalars(select(oitm.c.ItemCode).where(oitm.c.ItemCode.in_(chunk))))
    # Exact comparison: MariaDB's case-insensitive collation would otherwise let "etac-99"
    # stand for "ETAC-99", which SQLite and PostgreSQL refuse.
    missing = [code for code in wanted if code not in known]
    if missing:
        raise UnknownReference(f"item(s) {', '.join(missing)} do not exist in the ERP")


def plan_lines(
    conn: Connection,
    mapping: EntityMapping,
    head: Row[Any],
    lines: Sequence[OrderLine] | None,
    ship_date: dt.date | None,
    label: Label,
) -> LinePlan:
    """What to write so order ``head`` has exactly ``lines`` (None: keep the lines as they are).

    Raises InvalidMessage (no lines, a line without a line number or repeated), MappingError
    (text too long), UnknownReference (unknown items), ForbiddenTransition (a delivered line
    removed, shrunk below what was delivered, or given another item).
    """
    existing = conn.execute(
        select(rdr1).where(rdr1.c.DocEntry == head.DocEntry).order_by(rdr1.c.LineNum)
    ).all()
    if lines is None:
        return LinePlan(
            priced=[(row.Quantity, row.Price) for row in existing],
            any_open=any(row.OpenQty > 0 for row in existing),
        )
    check_line_numbers(lines, required=True)
    check_items(conn, [line.product_code for line in lines])
    delivered = delivered_by_line(conn, [head.DocEntry])
    by_number: dict[int, Row[Any]] = {}
    for row in existing:
        number = mapping.to_canonical(row._asdict()).get("line_no")
        by_number[number if number is not None else row.LineNum + 1] = row
    next_num = max((row.LineNum for row in existing), default=-1) + 1
    plan = LinePlan()
    for line in lines:
        assert line.line_no is not None  # check_line_numbers made sure
        old = by_number.pop(line.line_no, None)
        shipped = Decimal(0) if old is None else delivered.get(
            (head.DocEntry, old.LineNum), Decimal(0))
        if old is not None:
            _refuse_undoing(mapping, head, old, line, shipped)
        columns = mapping.to_columns({
            **{name: getattr(line, name) for name in _EDITABLE},
            "line_no": line.line_no, "open_quantity": line.quantity - shipped,
        }, creating=old is None)
        columns["LineStatus"] = _OPEN if line.quantity > shipped else _CLOSED
        check_lengths(rdr1, columns, label(line.line_no))
        plan.priced.append((line.quantity, line.unit_price))
        plan.any_open = plan.any_open or line.quantity > shipped
        if old is None:
            plan.inserts.append({**columns, "LineNum": next_num, "ShipDate": ship_date})
            next_num += 1
        elif any(old._mapping[name] != value for name, value in columns.items()):
            plan.updates.append({**columns, "key_line": old.LineNum})
    for number, old in by_number.items():
        if delivered.get((head.DocEntry, old.LineNum), Decimal(0)) > 0:
            raise ForbiddenTransition(
                f"order {head.DocNum} line {number} ({old.ItemCode}) has already shipped; "
                "it cannot be removed")
        plan.deletes.append(old.LineNum)
    return plan


def check_line_numbers(lines: Sequence[OrderLine], *, required: bool) -> None:
    """Raise InvalidMessage when there are no lines, a line number repeats, or (``required``)
    a line has none."""
    if not lines:
        raise InvalidMessage("the order has no lines")
    numbers = [line.line_no for line in lines]
    if required and any(number is None for number in numbers):
        raise InvalidMessage("every line of an order update needs its line number")
    repeated = sorted({n for n in numbers if n is not None and numbers.count(n) > 1})
    if repeated:
        raise InvalidMessage(
            f"line number(s) {', '.join(map(str, repeated))} appear more than once")


def _refuse_undoing(
    mapping: EntityMapping, head: Row[Any], old: Row[Any], line: OrderLine, shipped: Decimal
) -> None:
    if shipped <= 0:
        return
    before = mapping.to_canonical(old._asdict())
    if before["product_code"] != line.product_code:
        raise ForbiddenTransition(
            f"order {head.DocNum} line {line.line_no} has already shipped "
            f"{_qty(shipped)} of {before['product_code']}; its item cannot be changed to "
            f"{line.product_code}")
    if line.quantity < shipped:
        raise ForbiddenTransition(
            f"order {head.DocNum} line {line.line_no} has already shipped {_qty(shipped)}; "
            f"its quantity cannot be reduced to {_qty(line.quantity)}")


def _qty(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
