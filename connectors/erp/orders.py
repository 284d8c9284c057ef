"""ERP sales orders (ORDR header, RDR1 lines): what the sync engine reads and writes.

Every method takes an open connection to the ERP database; the caller owns the transaction,
nothing here commits. Plain field copies and value tables come from ``mappings/erp.yaml``
(entities ``order`` and ``order_line``); only the bookkeeping the ERP itself would do
(document status, line status, open quantities, totals, who changed it and when) is code.

Everything a sales person could have got wrong is checked before anything is written, and
refused with a PermanentError that says what to fix: an unknown customer or item, an order
without lines, a text too long for its column, a change the ERP's deliveries forbid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from connectors.erp.common import (
    HUB_USER,
    check_lengths,
    chunked,
    db_errors,
    doc_key,
    field_label,
    key_entry,
    version_of,
)
from connectors.erp.order_lines import check_items, check_line_numbers, plan_lines
from connectors.erp.order_reads import (
    BASE_ORDER,
    changed_orders,
    deliveries_of,
    read_orders,
)
from connectors.erp.schema import dln1, insert_many_with_doc_nums, ocrd, oitm, ordr, rdr1
from hub.errors import ForbiddenTransition, InvalidMessage, MappingError, UnknownReference
from hub.mapping import EntityMapping, SystemMapping, load_mapping
from hub.model.records import Order, OrderLine
from hub.store.types import utcnow
from hub.watermark import Change

__all__ = ["ErpOrders", "NewOrder", "order_total"]

_OPEN, _CLOSED = "O", "C"
_CUSTOMER = "C"
_CENT = Decimal("0.01")


def order_total(lines: Sequence[tuple[Decimal, Decimal]]) -> Decimal:
    """DocTotal of ``(quantity, price)`` pairs: the sum of their products, to the cent."""
    total = sum((quantity * price for quantity, price in lines), Decimal(0))
    return total.quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class NewOrder:
    """An order ready to insert: its ORDR row (no numbers yet) and its RDR1 rows."""

    label: str
    header: dict[str, Any]
    lines: list[dict[str, Any]]


class ErpOrders:
    """Reads, creates, updates and cancels sales orders; lists the orders that changed."""

    def __init__(self, mapping: SystemMapping | None = None) -> None:
        self.mapping = mapping if mapping is not None else load_mapping("erp")
        self._header: EntityMapping = self.mapping.entity("order")
        self._line: EntityMapping = self.mapping.entity("order_line")

    # -- reading -------------------------------------------------------------------------

    def read(self, conn: Connection, doc_entry: int) -> Order | None:
        """The order with its lines, shipped quantities and derived status; None if absent.

        Raises MappingError for a row the canonical model cannot hold, DatabaseUnavailable
        or PermanentError for database failures.
        """
        with db_errors(f"ERP: read order {doc_entry}"):
            return read_orders(conn, self.mapping, [doc_entry]).get(doc_entry)

    def find_by_crm_id(self, conn: Connection, crm_id: str) -> int | None:
        """The DocEntry of the order carrying CRM order id ``crm_id`` (ORDR.U_CRM_ID)."""
        column = ordr.c[self._header.fields["crm_id"]]
        with db_errors(f"ERP: find order of CRM order {crm_id}"):
            found = conn.scalars(
                select(ordr.c.DocEntry).where(column == crm_id).order_by(ordr.c.DocEntry)
                .limit(1)
            ).first()
        return None if found is None else int(found)

    def has_deliveries(self, conn: Connection, doc_entry: int) -> bool:
        """Whether any delivery line ships a line of order ``doc_entry``."""
        query = select(dln1.c.DocEntry).where(
            dln1.c.BaseType == BASE_ORDER, dln1.c.BaseEntry == doc_entry).limit(1)
        with db_errors(f"ERP: deliveries of order {doc_entry}"):
            return conn.execute(query).first() is not None

    def changes(
        self,
        conn: Connection,
        lower: dt.datetime | None,
        after: tuple[dt.datetime, str] | None,
        limit: int,
    ) -> list[Change[Order | InvalidMessage]]:
        """Orders whose header, deliveries or invoices changed at or after ``lower`` and
        whose ``(changed_at, key)`` is beyond ``after``, oldest first, at most ``limit``
        (the :data:`hub.watermark.Fetch` contract): :meth:`changed_keys`, then :meth:`load`."""
        return self.load(conn, self.changed_keys(conn, lower, after, limit))

    def changed_keys(
        self,
        conn: Connection,
        lower: dt.datetime | None,
        after: tuple[dt.datetime, str] | None,
        limit: int,
    ) -> list[Change[None]]:
        """As :meth:`changes`, keys and versions only (one query): the poller reads the rows
        of the changes it has not seen yet with :meth:`load`."""
        with db_errors("ERP: list changed orders"):
            changed = changed_orders(conn, lower, after, limit)
        return [Change(key=doc_key(entry), version=version_of(stamp), changed_at=stamp,
                       row=None) for entry, stamp in changed]

    def load(self, conn: Connection, changes: Sequence[Change[Any]]
             ) -> list[Change[Order | InvalidMessage]]:
        """``changes`` with their orders read (four queries per 500); an order gone since is
        left out. An order that cannot be expressed canonically comes back with the
        InvalidMessage as its row, so one bad order cannot stall the stream."""
        entries = [key_entry(c.key) for c in changes]
        orders: dict[int, Order | InvalidMessage]
        with db_errors("ERP: read changed orders"):
            try:
                orders = dict(read_orders(conn, self.mapping, entries))
            except (MappingError, InvalidMessage):
                orders = {}
                for entry in entries:  # find the bad ones, one by one
                    try:
                        orders.update(read_orders(conn, self.mapping, [entry]))
                    except (MappingError, InvalidMessage) as exc:
                        orders[entry] = InvalidMessage(f"ERP order {entry}: {exc}")
        return [c._replace(row=orders[key_entry(c.key)]) for c in changes
                if key_entry(c.key) in orders]

    # -- writing -------------------------------------------------------------------------

    def create(self, conn: Connection, order: Order, *, confirmed: bool) -> tuple[int, int]:
        """Insert ``order`` as a new open sales order; returns ``(DocEntry, DocNum)``.

        Raises InvalidMessage (no lines, repeated line numbers), MappingError (a text too
        long for the ERP), UnknownReference (customer or items unknown to the ERP), and
        DatabaseUnavailable / PermanentError for database failures.
        """
        new = self.prepare(order, confirmed=confirmed)
        with db_errors(f"ERP: create order {new.label}"):
            _check_customer(conn, order.customer)
            check_items(conn, [line.product_code for line in order.lines])
        return self.insert(conn, [new])[0]

    def prepare(self, order: Order, *, confirmed: bool) -> NewOrder:
        """The rows that create ``order``, checked against the columns (no database work).
        Raises InvalidMessage and MappingError as :meth:`create` does."""
        check_line_numbers(order.lines, required=False)
        now = utcnow()
        header = self._header.to_columns({
            "customer": order.customer, "order_number": order.order_number,
            "crm_id": order.crm_id, "order_date": now.date(),
            "promised_date": order.promised_date, "currency": order.currency,
            "total_amount": order_total([(ln.quantity, ln.unit_price) for ln in order.lines]),
            "confirmed": confirmed, "cancelled": False, "notes": order.notes,
            "customer_po": order.customer_po, "requested_date": order.requested_date,
        }, creating=True)
        header.update(DocStatus=_OPEN, UpdateDate=now, UserSign2=HUB_USER)
        lines = [
            {**self._line.to_columns({
                "erp_line": number, "line_no": line.line_no,
                "product_code": line.product_code, "description": line.description,
                "quantity": line.quantity, "open_quantity": line.quantity,
                "unit_price": line.unit_price, "unit": line.unit,
            }, creating=True), "LineStatus": _OPEN, "ShipDate": order.requested_date}
            for number, line in enumerate(order.lines)
        ]
        check_lengths(ordr, header, self._header_label)
        for line, columns in zip(order.lines, lines, strict=True):
            check_lengths(rdr1, columns, self._line_label(line.line_no))
        label = f"{order.order_number or order.crm_id or ''}".strip()
        return NewOrder(label, header, lines)

    def insert(self, conn: Connection, new: Sequence[NewOrder]) -> list[tuple[int, int]]:
        """Insert prepared orders (customers and items already checked), numbered in one
        go; returns ``(DocEntry, DocNum)`` of each. The series stays locked until the caller
        commits, so do everything else first."""
        if not new:  # an INSERT of no rows would be one row of defaults
            return []
        with db_errors(f"ERP: create {len(new)} order(s)"):
            numbered = insert_many_with_doc_nums(conn, ordr, [n.header for n in new])
            conn.execute(insert(rdr1), [{**columns, "DocEntry": entry}
                                        for n, (entry, _) in zip(new, numbered, strict=True)
                                        for columns in n.lines])
        return numbered

    def find_many_by_crm_id(self, conn: Connection, crm_ids: Sequence[str]) -> dict[str, int]:
        """CRM order id -> DocEntry of the orders that carry one of ``crm_ids``."""
        column = ordr.c[self._header.fields["crm_id"]]
        found: dict[str, int] = {}
        with db_errors("ERP: find orders of CRM orders"):
            for chunk in chunked(crm_ids):
                found.update((str(crm_id), int(entry)) for crm_id, entry in conn.execute(
                    select(column, ordr.c.DocEntry).where(column.in_(chunk))))
        return {k: v for k, v in found.items() if k in set(crm_ids)}

    def missing_references(self, conn: Connection, orders: Sequence[Order]
                           ) -> tuple[set[str], set[str]]:
        """(customers, items) that ``orders`` name and the ERP does not hold as such; two
        queries for the lot."""
        customers = list(dict.fromkeys(o.customer for o in orders))
        items = list(dict.fromkeys(ln.product_code for o in orders for ln in o.lines))
        with db_errors("ERP: look up customers and items"):
            known_customers = {
                r.CardCode for r in conn.execute(select(ocrd.c.CardCode, ocrd.c.CardType)
                                                 .where(ocrd.c.CardCode.in_(customers)))
                if (r.CardType or "").strip() == _CUSTOMER}
            known_items = set(conn.scalars(select(oitm.c.ItemCode)
                                           .where(oitm.c.ItemCode.in_(items))))
        # Exact comparison: MariaDB's collation would let "c00042" match "C00042".
        return ({c for c in customers if c not in known_customers},
                {i for i in items if i not in known_items})

    def update(
        self,
        conn: Connection,
        doc_entry: int,
        fields: Mapping[str, Any],
        lines: Sequence[OrderLine] | None,
    ) -> None:
        """Set the canonical header ``fields`` given (create-only ones are ignored) and, when
        ``lines`` is not None, make the order's lines exactly ``lines`` (keyed by line_no).

        ``total_amount`` is never taken from ``fields``: DocTotal is recomputed from the
        lines. ``cancelled: True`` cancels as :meth:`cancel` does.
        Raises UnknownReference (no such order, unknown items), ForbiddenTransition
        (shrinking or removing what was delivered, changing or reopening a cancelled
        order, cancelling a shipped one), InvalidMessage (no lines, lines without or with
        repeated line numbers), MappingError (text too long), and database errors.
        """
        with db_errors(f"ERP: update order {doc_entry}"):
            head = self._locked(conn, doc_entry)
            current = self._header.to_canonical(head._asdict())
            wanted = dict(fields)
            cancel = wanted.pop("cancelled", None)
            wanted.pop("total_amount", None)
            if current["cancelled"] and cancel is False:
                raise ForbiddenTransition(
                    f"order {head.DocNum} is cancelled in the ERP; it cannot be reopened")
            if current["cancelled"] and lines is not None:
                raise ForbiddenTransition(
                    f"order {head.DocNum} is cancelled in the ERP; its lines cannot be changed")
            columns = self._header.to_columns(wanted, creating=False)
            check_lengths(ordr, columns, self._header_label)
            if cancel and not current["cancelled"]:
                _refuse_if_shipped(conn, head)
            requested = self._header.fields.get("requested_date")
            ship_date = None if requested is None else columns.get(
                requested, head._mapping.get(requested))
            plan = plan_lines(conn, self._line, head, lines, ship_date, self._line_label)
            plan.apply(conn, doc_entry)
            columns["DocTotal"] = order_total(plan.priced)
            if lines is not None and not current["cancelled"]:
                columns["DocStatus"] = _OPEN if plan.any_open else _CLOSED
            columns.update(UpdateDate=utcnow(), UserSign2=HUB_USER)
            conn.execute(update(ordr).where(ordr.c.DocEntry == doc_entry).values(columns))
            if cancel and not current["cancelled"]:
                self._close_cancelled(conn, doc_entry)

    def cancel(self, conn: Connection, doc_entry: int) -> None:
        """Cancel order ``doc_entry`` (a no-op when it already is).

        Raises UnknownReference when there is no such order, ForbiddenTransition when any
        delivery shipped from it, and database errors.
        """
        with db_errors(f"ERP: cancel order {doc_entry}"):
            head = self._locked(conn, doc_entry)
            if self._header.to_canonical(head._asdict())["cancelled"]:
                return
            _refuse_if_shipped(conn, head)
            self._close_cancelled(conn, doc_entry)

    # -- helpers -------------------------------------------------------------------------

    def _locked(self, conn: Connection, doc_entry: int) -> Row[Any]:
        # NO KEY UPDATE on PostgreSQL: the order's own new lines take a key-share lock on it.
        query = select(ordr).where(ordr.c.DocEntry == doc_entry).with_for_update(key_share=True)
        head = conn.execute(query).first()
        if head is None:
            raise UnknownReference(f"the ERP has no sales order with DocEntry {doc_entry}")
        return head

    def _close_cancelled(self, conn: Connection, doc_entry: int) -> None:
        columns = self._header.to_columns({"cancelled": True}, creating=False)
        columns.update(DocStatus=_CLOSED, UpdateDate=utcnow(), UserSign2=HUB_USER)
        conn.execute(update(ordr).where(ordr.c.DocEntry == doc_entry).values(columns))
        conn.execute(update(rdr1).where(rdr1.c.DocEntry == doc_entry)
                     .values(LineStatus=_CLOSED))

    def _header_label(self, column: str) -> str:
        return f"order {field_label(self._header, column)}"

    def _line_label(self, line_no: int | None) -> Callable[[str], str]:
        def label(column: str) -> str:
            where = f"line {line_no}" if line_no is not None else "a line"
            return f"{where} {field_label(self._line, column)}"
        return label


def _check_customer(conn: Connection, code: str) -> None:
    card = conn.execute(
        select(ocrd.c.CardCode, ocrd.c.CardType).where(ocrd.c.CardCode == code)).first()
    # Compared here, not only in SQL: a case-insensitive collation (MariaDB) must not let
    # "c00042" pass for "C00042" when the other dialects would refuse it.
    if card is None or card.CardCode != code:
        raise UnknownReference(f"customer {code} does not exist in the ERP")
    if (card.CardType or "").strip() != _CUSTOMER:
        raise UnknownReference(
            f"customer {code} does not exist in the ERP as a customer "
            f"(its business partner type is {card.CardType!r})")


def _refuse_if_shipped(conn: Connection, head: Row[Any]) -> None:
    shipped = deliveries_of(conn, head.DocEntry)
    if shipped:
        which = ("delivery " if len(shipped) == 1 else "deliveries ") + ", ".join(
            map(str, shipped))
        raise ForbiddenTransition(
            f"order {head.DocNum} has already shipped ({which}); it cannot be cancelled")

