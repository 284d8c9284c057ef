"""Sales orders in the CRM: read them as canonical orders, poll their changes, write back.

Plain field copies go through ``mappings/crm.yaml`` (entities ``order`` and ``order_line``;
the customer's code through ``party``). The keys and the bookkeeping columns that the
reference schema fixes — ``order_id``, ``account_id``, ``line_no`` as the line key,
``erp_order_number``, ``integration_*``, ``version``, ``modified_*`` — are the schema's own.

Every method takes an open connection to the CRM and leaves the transaction to the caller;
database errors leave as the hub's errors (:func:`hub.errors.translate_db_error`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple, cast

from pydantic import ValidationError
from sqlalchemy import Connection, RowMapping, Select, delete, func, or_, select, update

from connectors.crm.schema import crm_account, crm_order, crm_order_line
from connectors.crm.support import (
    HUB_USER,
    checked_columns,
    db_errors,
    describe_problems,
    hub_text,
    mapped_column,
    order_total,
)
from hub.errors import InvalidMessage, MappingError, UnknownReference
from hub.mapping import SystemMapping, load_mapping
from hub.model.records import Order, OrderLine
from hub.store.bulk import one_of, update_many
from hub.store.types import utcnow
from hub.watermark import Change, window

__all__ = ["INTEGRATION_STATUSES", "Answer", "CrmOrders", "OrderRow"]

#: What ``changes`` carries per order: the order, or why its row is not a valid order.
OrderRow = Order | InvalidMessage
#: What a driver's or SQLAlchemy's conversion of a stored value raises when the value is not
#: of its column's type.
_UNREADABLE = (TypeError, ValueError, ArithmeticError)

#: The values the hub writes into ``crm_order.integration_status``.
INTEGRATION_STATUSES = ("pending", "synced", "error")

class Answer(NamedTuple):
    """What :meth:`CrmOrders.answer_many` writes to one order."""

    order_id: str
    fields: Mapping[str, Any]
    status: str
    message: str | None


_CUSTOMER_CODE = "hub_customer_code"
_CUSTOMER_NUMBER = "hub_customer_number"


class CrmOrders:
    """Reader and writer of ``crm_order`` and its lines."""

    def __init__(self, mapping: SystemMapping | None = None) -> None:
        system = mapping if mapping is not None else load_mapping("crm")
        self._order = system.entity("order")
        self._line = system.entity("order_line")
        party = system.entity("party")
        where = "mappings/crm.yaml (party)"
        self._code_column = crm_account.c[mapped_column(party, "erp_code", where)]
        self._number_column = crm_account.c[mapped_column(party, "number", where)]
        status_column = mapped_column(self._order, "status", "mappings/crm.yaml (order)")
        self._status = crm_order.c[status_column]
        self._draft = self._order.to_columns({"status": "draft"}, creating=True)[status_column]
        self._cancelled = self._order.to_columns({"status": "cancelled"},
                                                 creating=True)[status_column]

    # -- reading -------------------------------------------------------------------------

    def read(self, conn: Connection, order_id: str) -> Order | None:
        """The order with its lines, or None when there is no such order.

        Raises InvalidMessage when the row is not a valid order (the text names the order
        and the field), MappingError when a value cannot be translated.
        """
        with db_errors(f"read CRM order {order_id}"):
            header = conn.execute(
                self._headers().where(crm_order.c.order_id == order_id)).mappings().first()
            if header is None:
                return None
            lines = conn.execute(
                select(crm_order_line).where(crm_order_line.c.order_id == order_id)
                .order_by(crm_order_line.c.line_no)).mappings().all()
        return self._build(header, lines)

    def find_by_number(self, conn: Connection, order_number: str) -> str | None:
        """The order_id of the order numbered ``order_number``, or None."""
        with db_errors(f"find CRM order {order_number}"):
            return self._id_by_number(conn, order_number)

    def changes(self, conn: Connection, lower: dt.datetime | None,
                after: tuple[dt.datetime, str] | None, limit: int) -> list[Change[OrderRow]]:
        """Orders past draft changed at or after ``lower`` and after ``after``, oldest first.

        The :data:`hub.watermark.Fetch` of the order stream: ordered by (modified_at,
        order_id), at most ``limit``; :meth:`changed_keys`, then :meth:`load`. An order whose
        row is not a valid order comes back in place with the InvalidMessage as its ``row``,
        so one bad order cannot stall the stream.
        """
        return self.load(conn, self.changed_keys(conn, lower, after, limit))

    def awaiting_erp(self, conn: Connection) -> tuple[int, dt.datetime | None]:
        """Orders sent on to the ERP (past draft, not cancelled) that carry no ERP number and
        no error yet: how many, and the oldest last change among them. In flight for
        seconds normally; one that stays is an order the sync has not finished."""
        query = select(func.count(), func.min(crm_order.c.modified_at)).where(
            crm_order.c.erp_order_number.is_(None),
            self._status.not_in([self._draft, self._cancelled]),
            or_(crm_order.c.integration_status.is_(None),
                crm_order.c.integration_status != "error"))
        with db_errors("count CRM orders awaiting the ERP"):
            count, oldest = conn.execute(query).one()
        return int(count or 0), oldest

    def changed_keys(self, conn: Connection, lower: dt.datetime | None,
                     after: tuple[dt.datetime, str] | None, limit: int) -> list[Change[None]]:
        """As :meth:`changes`, ids and versions only (one query on the order table)."""
        query = select(crm_order.c.order_id, crm_order.c.version, crm_order.c.modified_at
                       ).where(self._status != self._draft)
        query = window(query, crm_order.c.modified_at, crm_order.c.order_id, lower, after, limit)
        with db_errors("poll CRM orders"):
            rows = cast("Sequence[tuple[str, int, dt.datetime]]", conn.execute(query).all())
        # Unpacked by position: a listing is read again and again, and a row's attributes
        # by name cost twice the rest of making its change.
        return [Change(key, str(version), at, None) for key, version, at in rows]

    def load(self, conn: Connection, changes: Sequence[Change[Any]]) -> list[Change[OrderRow]]:
        """``changes`` with their orders read (two queries); an order gone since is left out.
        A change carries the version it was read at, which may be newer than the listed one.
        An order holding a value its column's type cannot read (SQLite keeps text in a
        numeric or date column) comes back with an InvalidMessage, like an invalid order."""
        try:
            headers, lines = self._read_many(conn, [c.key for c in changes])
        except _UNREADABLE:
            found = [self._load_one(conn, c) for c in changes]
            return [c for c in found if c is not None]
        return [
            Change(key=c.key, version=str(h["version"]), changed_at=h["modified_at"],
                   row=self._build_or_problem(h, lines[c.key]))
            for c in changes if (h := headers.get(c.key)) is not None
        ]

    def _read_many(self, conn: Connection, ids: Sequence[str]
                   ) -> tuple[dict[str, RowMapping], dict[str, list[RowMapping]]]:
        with db_errors("read changed CRM orders"):
            headers = {h["order_id"]: h for h in conn.execute(
                self._headers().where(one_of(conn, crm_order.c.order_id, ids))).mappings()}
            lines: dict[str, list[RowMapping]] = defaultdict(list)
            if headers:
                for line in conn.execute(
                    select(crm_order_line).where(one_of(conn, crm_order_line.c.order_id, headers))
                    .order_by(crm_order_line.c.order_id, crm_order_line.c.line_no)
                ).mappings():
                    lines[line["order_id"]].append(line)
        return headers, lines

    def _load_one(self, conn: Connection, change: Change[Any]) -> Change[OrderRow] | None:
        try:
            headers, lines = self._read_many(conn, [change.key])
        except _UNREADABLE as exc:
            with db_errors(f"read CRM order {change.key}"):
                number = conn.execute(select(crm_order.c.order_number).where(
                    crm_order.c.order_id == change.key)).scalar()
            problem = InvalidMessage(
                f"order {str(number or change.key)[:40]}: a value stored in the order cannot "
                f"be read ({str(exc)[:200]})")
            problem.__cause__ = exc
            return Change(key=change.key, version=change.version, changed_at=change.changed_at,
                          row=problem)
        header = headers.get(change.key)
        if header is None:
            return None
        return Change(key=change.key, version=str(header["version"]),
                      changed_at=header["modified_at"],
                      row=self._build_or_problem(header, lines[change.key]))

    # -- writing -------------------------------------------------------------------------

    def create(self, conn: Connection, order: Order, *, account_id: str) -> str:
        """Create an order that was entered in the ERP; returns its order_id.

        Numbered ``order.order_number`` or else ``ERP-<DocNum>``; when an order of that
        number exists already, its id is returned and nothing changes. Lines without a
        line_no are numbered after the highest one given. Raises UnknownReference for an
        unknown account, InvalidMessage when the order carries neither number nor DocNum or
        repeats a line_no.
        """
        number = order.order_number
        if number is None and order.erp_doc_num is not None:
            number = f"ERP-{order.erp_doc_num}"
        if number is None:
            raise InvalidMessage("an order from the ERP needs its DocNum (or an order number) "
                                 "to be created in the CRM")
        numbered = _numbered(order.lines, (), f"order {number}")
        with db_errors(f"create CRM order {number}"):
            existing = self._id_by_number(conn, number)
            if existing is not None:
                return existing
            found = conn.execute(select(crm_account.c.account_id)
                                 .where(crm_account.c.account_id == account_id)).first()
            if found is None:
                raise UnknownReference(f"order {number}: the CRM has no customer account "
                                       f"{account_id}")
            order_id = str(uuid.uuid4())
            canonical = order.model_dump(exclude={"lines"})
            canonical.update(
                crm_id=order_id, order_number=number,
                status="cancelled" if order.cancelled else order.status,
                total_amount=order_total(line for _, line in numbered))
            values = self._order.to_columns(canonical, creating=True)
            values.update(
                account_id=account_id,
                erp_order_number=None if order.erp_doc_num is None else str(order.erp_doc_num),
                integration_status="synced", integration_message=None, version=1,
                modified_by=HUB_USER, modified_at=utcnow())
            conn.execute(crm_order.insert().values(checked_columns(crm_order, values)))
            if numbered:
                conn.execute(crm_order_line.insert(), [
                    self._line_values(order_id, no, line, creating=True)
                    for no, line in numbered])
        return order_id

    def update(self, conn: Connection, order_id: str, fields: Mapping[str, Any],
               lines: Sequence[OrderLine] | None = None, *,
               shipped: Mapping[int, Decimal] | None = None) -> int:
        """Apply canonical header ``fields``, the full desired ``lines`` and shipped quantities.

        Header fields go through the mapping as an update (create-only ones are ignored,
        so are names the mapping does not know); ``erp_doc_num`` becomes erp_order_number.
        ``lines``, when given, is the whole line set by line_no: lines not in it are removed,
        new ones added (numbered after the highest when they carry no line_no), kept ones
        changed while keeping their shipped quantity; the total is recomputed. ``shipped``
        sets line_no → shipped quantity. Returns the order's new version.
        Raises UnknownReference for an unknown order or a shipped line it does not have.
        """
        with db_errors(f"update CRM order {order_id}"):
            number = self._lock(conn, order_id)
            values = self._order.to_columns(
                {k: v for k, v in fields.items() if k != "erp_doc_num"}, creating=False)
            if "erp_doc_num" in fields:
                doc_num = fields["erp_doc_num"]
                values["erp_order_number"] = None if doc_num is None else str(doc_num)
            if lines is not None:
                total = self._replace_lines(conn, order_id, number, lines, shipped or {})
                values.update(self._order.to_columns({"total_amount": total}, creating=False))
            elif shipped:
                self._set_shipped(conn, order_id, number, shipped)
            return self._bump(conn, order_id, values)

    def answer_many(self, conn: Connection, answers: Sequence[Answer]) -> list[int]:
        """Write each answer's header ``fields`` (as :meth:`update`, without lines) and
        integration status; returns the orders' new versions, in order. Many orders: one
        UPDATE per set of columns written, sent as one batch, and one read of the versions;
        one order (or the same order twice): an ``UPDATE ... RETURNING`` each. Raises
        ValueError for an unknown integration status, UnknownReference if an order is not
        there, having written the others: the caller's transaction must not commit then."""
        rows = [(a.order_id, self._answer_values(a.fields, a.status, a.message))
                for a in answers]
        ids = [order_id for order_id, _ in rows]
        if len(set(ids)) < len(ids) or len(ids) == 1:  # each write sees the one before
            with db_errors("answer CRM orders"):
                return [self._bump(conn, order_id, values) for order_id, values in rows]
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for order_id, values in rows:
            groups.setdefault(tuple(sorted(values)), []).append(
                {"order_id": order_id, **checked_columns(crm_order, values)})
        now = utcnow()
        with db_errors("answer CRM orders"):
            for group in groups.values():
                update_many(conn, crm_order, ("order_id",), group, {
                    "version": crm_order.c.version + 1, "modified_by": HUB_USER,
                    "modified_at": now})
            versions = {r.order_id: int(r.version) for r in conn.execute(
                select(crm_order.c.order_id, crm_order.c.version)
                .where(one_of(conn, crm_order.c.order_id, ids)))}
        missing = [order_id for order_id in ids if order_id not in versions]
        if missing:
            raise UnknownReference(f"the CRM has no order {missing[0]}")
        return [versions[order_id] for order_id in ids]

    def _answer_values(self, fields: Mapping[str, Any], status: str, message: str | None
                       ) -> dict[str, Any]:
        if status not in INTEGRATION_STATUSES:
            raise ValueError(f"integration status must be one of {INTEGRATION_STATUSES}, "
                             f"not {status!r}")
        values = self._order.to_columns(
            {k: v for k, v in fields.items() if k != "erp_doc_num"}, creating=False)
        if "erp_doc_num" in fields:
            doc_num = fields["erp_doc_num"]
            values["erp_order_number"] = None if doc_num is None else str(doc_num)
        values.update(integration_status=status, integration_message=hub_text(message))
        return values

    def set_integration(self, conn: Connection, order_id: str, status: str,
                        message: str | None) -> int:
        """Record how syncing the order went; returns its new version.

        ``status`` is one of :data:`INTEGRATION_STATUSES`; a message longer than the column
        is cut and ends with "…". Raises ValueError for another status, UnknownReference
        for an unknown order.
        """
        if status not in INTEGRATION_STATUSES:
            raise ValueError(f"integration status must be one of {INTEGRATION_STATUSES}, "
                             f"not {status!r}")
        with db_errors(f"set the integration status of CRM order {order_id}"):
            version = self._bump(conn, order_id, {
                "integration_status": status, "integration_message": hub_text(message)})
        return version

    # -- helpers -------------------------------------------------------------------------

    def _headers(self) -> Select[Any]:
        return select(
            crm_order,
            self._code_column.label(_CUSTOMER_CODE),
            self._number_column.label(_CUSTOMER_NUMBER),
        ).select_from(crm_order.outerjoin(
            crm_account, crm_account.c.account_id == crm_order.c.account_id))

    def _build(self, header: RowMapping, lines: Sequence[RowMapping]) -> Order:
        data = self._order.to_canonical(dict(header))
        subject = f"order {data.get('order_number') or header['order_id']}"
        code = (header[_CUSTOMER_CODE] or "").strip()
        data.update(
            customer=code or header[_CUSTOMER_NUMBER],
            customer_crm_id=header["account_id"],
            erp_doc_num=_doc_num(header["erp_order_number"], subject),
            cancelled=data.get("status") == "cancelled",
        )
        line_data = [self._line.to_canonical(dict(line)) for line in lines]
        data["lines"] = line_data
        try:
            return Order.model_validate(data)
        except ValidationError as exc:
            raise InvalidMessage(describe_problems(exc, subject, line_data)) from exc

    def _build_or_problem(self, header: RowMapping, lines: Sequence[RowMapping]) -> OrderRow:
        try:
            return self._build(header, lines)
        except InvalidMessage as exc:
            return exc
        except MappingError as exc:
            problem = InvalidMessage(str(exc))
            problem.__cause__ = exc
            return problem
        except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
            # A value of the wrong kind where the schema promised another (SQLite keeps a
            # BLOB in a text column): this order cannot be read, the others still can.
            number = header.get("order_number") or header.get("order_id")
            problem = InvalidMessage(f"order {str(number)[:40]}: a field holds a value of the "
                                     f"wrong type ({type(exc).__name__})")
            problem.__cause__ = exc
            return problem

    def _id_by_number(self, conn: Connection, order_number: str) -> str | None:
        found: str | None = conn.execute(
            select(crm_order.c.order_id).where(crm_order.c.order_number == order_number)
        ).scalar()
        return found

    def version(self, conn: Connection, order_id: str) -> str | None:
        """The order's current version (as the hub keeps versions: text); None if absent."""
        found = conn.execute(select(crm_order.c.version)
                             .where(crm_order.c.order_id == order_id)).scalar()
        return None if found is None else str(found)

    def _lock(self, conn: Connection, order_id: str) -> str:
        """Lock the order row for this transaction; returns its order number."""
        number: str | None = conn.execute(
            select(crm_order.c.order_number).where(crm_order.c.order_id == order_id)
            .with_for_update()).scalar()
        if number is None:
            raise UnknownReference(f"the CRM has no order {order_id}")
        return number

    def _bump(self, conn: Connection, order_id: str, values: Mapping[str, Any]) -> int:
        statement = (
            update(crm_order).where(crm_order.c.order_id == order_id)
            .values(checked_columns(crm_order, values))
            .values(version=crm_order.c.version + 1, modified_by=HUB_USER,
                    modified_at=utcnow()))
        version: int | None
        if conn.dialect.update_returning:  # PostgreSQL, SQLite: one round trip
            version = conn.execute(statement.returning(crm_order.c.version)).scalar()
        else:  # MariaDB has no UPDATE ... RETURNING
            conn.execute(statement)
            version = conn.execute(
                select(crm_order.c.version).where(crm_order.c.order_id == order_id)).scalar()
        if version is None:
            raise UnknownReference(f"the CRM has no order {order_id}")
        return int(version)

    def _line_values(self, order_id: str, line_no: int, line: OrderLine, *, creating: bool,
                     shipped: Decimal | None = None) -> dict[str, Any]:
        canonical = line.model_dump()
        canonical["line_no"] = line_no
        if not creating:
            del canonical["shipped_quantity"]
        if shipped is not None:
            canonical["shipped_quantity"] = shipped
        values = self._line.to_columns(canonical, creating=creating)
        values.update(order_id=order_id, line_no=line_no)
        return checked_columns(crm_order_line, values)

    def _replace_lines(self, conn: Connection, order_id: str, number: str,
                       lines: Sequence[OrderLine], shipped: Mapping[int, Decimal]) -> Decimal:
        """Make the order's lines ``lines``; returns their total."""
        existing = {
            row["line_no"]: row for row in conn.execute(
                select(crm_order_line).where(crm_order_line.c.order_id == order_id)
            ).mappings()
        }
        numbered = _numbered(lines, existing, f"order {number}")
        wanted = {no for no, _ in numbered}
        missing = sorted(set(shipped) - wanted)
        if missing:
            raise UnknownReference(f"order {number} has no line {missing[0]} to mark shipped")
        gone = sorted(set(existing) - wanted)
        if gone:
            conn.execute(delete(crm_order_line).where(
                crm_order_line.c.order_id == order_id, crm_order_line.c.line_no.in_(gone)))
        added = []
        for no, line in numbered:
            if no not in existing:
                added.append(self._line_values(order_id, no, line, creating=True,
                                               shipped=shipped.get(no, line.shipped_quantity)))
                continue
            values = self._line_values(order_id, no, line, creating=False,
                                       shipped=shipped.get(no))
            if any(existing[no][column] != value for column, value in values.items()):
                conn.execute(update(crm_order_line).where(
                    crm_order_line.c.order_id == order_id, crm_order_line.c.line_no == no,
                ).values(values))
        if added:
            conn.execute(crm_order_line.insert(), added)
        return order_total(line for _, line in numbered)

    def _set_shipped(self, conn: Connection, order_id: str, number: str,
                     shipped: Mapping[int, Decimal]) -> None:
        have = set(conn.execute(select(crm_order_line.c.line_no)
                                .where(crm_order_line.c.order_id == order_id)).scalars())
        missing = sorted(set(shipped) - have)
        if missing:
            raise UnknownReference(f"order {number} has no line {missing[0]} to mark shipped")
        column = mapped_column(self._line, "shipped_quantity", "mappings/crm.yaml (order_line)")
        for no, quantity in sorted(shipped.items()):
            conn.execute(update(crm_order_line).where(
                crm_order_line.c.order_id == order_id, crm_order_line.c.line_no == no,
            ).values(checked_columns(crm_order_line, {column: quantity})))


def _doc_num(value: str | None, subject: str) -> int | None:
    """erp_order_number as the ERP's DocNum; MappingError when it is not a whole number."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not text.isdecimal():
        raise MappingError(f"{subject}: the ERP order number {value!r} is not a number")
    return int(text)


def _numbered(lines: Sequence[OrderLine], taken: Iterable[int],
              subject: str) -> list[tuple[int, OrderLine]]:
    """Each line with its line_no; lines without one get the next free numbers in order.

    Raises InvalidMessage when two lines carry the same line_no.
    """
    given = [line.line_no for line in lines if line.line_no is not None]
    repeated = sorted({no for no in given if given.count(no) > 1})
    if repeated:
        raise InvalidMessage(f"{subject}: line {repeated[0]} appears more than once")
    following = max([0, *given, *taken]) + 1
    out: list[tuple[int, OrderLine]] = []
    for line in lines:
        if line.line_no is not None:
            out.append((line.line_no, line))
        else:
            out.append((following, line))
            following += 1
    return out
