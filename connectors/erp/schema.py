"""The reference ERP's tables (SAP Business One's sales documents) and its numbering rule.

Document headers (``ORDR`` orders, ``ODLN`` deliveries, ``OINV`` invoices) have two keys:
``DocEntry``, assigned by the database, and ``DocNum``, the number people see, which the
writer takes as max + 1 of the series. :func:`insert_with_doc_num` queues writers behind the
series' last document, and when a writer that does not queue takes the number first, the
unique constraint catches it and the next number is tried inside a savepoint, so the
writer's transaction survives the clash.

Foreign keys are the ones the contract names (order customer, line items, line → header);
cross-document links (``BaseEntry``) stay unconstrained, as in the product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any

from sqlalchemy import (
    CHAR,
    Column,
    Connection,
    Date,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from hub.errors import DatabaseUnavailable
from hub.store.types import (
    MYSQL_TABLE_OPTIONS,
    NAMING_CONVENTION,
    Money,
    Price,
    Quantity,
    UtcDateTime,
)

__all__ = [
    "DOCUMENT_TABLES",
    "claim_doc_num",
    "dln1",
    "ibt1",
    "insert_many_with_doc_nums",
    "insert_with_doc_num",
    "inv1",
    "metadata",
    "next_doc_num",
    "ocrd",
    "odln",
    "oinv",
    "oitm",
    "ordr",
    "rdr1",
]

metadata = MetaData(naming_convention=NAMING_CONVENTION)



def _doc_entry() -> Column[int]:
    return Column("DocEntry", Integer, Identity(), primary_key=True, autoincrement=True)


def _line_num(name: str = "LineNum") -> Column[int]:
    return Column(name, Integer, primary_key=True, autoincrement=False)


ocrd = Table(
    "OCRD", metadata,
    Column("CardCode", String(15), primary_key=True),
    Column("CardName", String(100), nullable=False),
    Column("CardType", CHAR(1), nullable=False),
    Column("E_Mail", String(100)),
    Column("Country", CHAR(2)),
    Column("U_CRM_ID", String(36), nullable=True, index=True),
    Column("UpdateDate", UtcDateTime, nullable=False, index=True),
    **MYSQL_TABLE_OPTIONS,
)

oitm = Table(
    "OITM", metadata,
    Column("ItemCode", String(50), primary_key=True),
    Column("ItemName", String(200), nullable=False),
    Column("InvntryUom", String(10)),
    Column("ManBtchNum", CHAR(1)),
    **MYSQL_TABLE_OPTIONS,
)

ordr = Table(
    "ORDR", metadata,
    _doc_entry(),
    Column("DocNum", Integer, nullable=False, unique=True),
    Column("CardCode", String(15), ForeignKey(ocrd.c.CardCode), nullable=False, index=True),
    Column("NumAtCard", String(100), index=True),
    Column("DocDate", Date, nullable=False),
    Column("DocDueDate", Date),
    Column("DocCur", CHAR(3), nullable=False),
    Column("DocTotal", Money),
    Column("DocStatus", CHAR(1), nullable=False),
    Column("CANCELED", CHAR(1), nullable=False),
    Column("Confirmed", CHAR(1), nullable=False),
    Column("Comments", String(254)),
    Column("U_CRM_ID", String(36), nullable=True, index=True),
    Column("U_CustPO", String(50)),
    Column("U_ReqDate", Date),
    Column("UpdateDate", UtcDateTime, nullable=False, index=True),
    Column("UserSign2", String(50)),
    **MYSQL_TABLE_OPTIONS,
)

rdr1 = Table(
    "RDR1", metadata,
    Column("DocEntry", Integer, ForeignKey(ordr.c.DocEntry), primary_key=True,
           autoincrement=False),
    _line_num(),
    Column("ItemCode", String(50), ForeignKey(oitm.c.ItemCode), nullable=False, index=True),
    Column("Dscription", String(200)),
    Column("Quantity", Quantity, nullable=False),
    Column("OpenQty", Quantity, nullable=False),
    Column("Price", Price, nullable=False),
    Column("unitMsr", String(10)),
    Column("ShipDate", Date),
    Column("LineStatus", CHAR(1), nullable=False),
    Column("U_CRM_LINE", Integer, nullable=True),
    **MYSQL_TABLE_OPTIONS,
)

odln = Table(
    "ODLN", metadata,
    _doc_entry(),
    Column("DocNum", Integer, nullable=False, unique=True),
    Column("CardCode", String(15), nullable=False, index=True),
    Column("DocDate", Date, nullable=False),
    Column("UpdateDate", UtcDateTime, nullable=False, index=True),
    **MYSQL_TABLE_OPTIONS,
)

dln1 = Table(
    "DLN1", metadata,
    Column("DocEntry", Integer, ForeignKey(odln.c.DocEntry), primary_key=True,
           autoincrement=False),
    _line_num(),
    Column("BaseType", Integer),
    Column("BaseEntry", Integer),
    Column("BaseLine", Integer),
    Column("ItemCode", String(50), ForeignKey(oitm.c.ItemCode), nullable=False, index=True),
    Column("Quantity", Quantity),
    Index("ix_DLN1_BaseEntry_BaseLine", "BaseEntry", "BaseLine"),
    **MYSQL_TABLE_OPTIONS,
)

ibt1 = Table(
    "IBT1", metadata,
    Column("BaseEntry", Integer, primary_key=True, autoincrement=False),
    _line_num("BaseLinNum"),
    Column("BatchNum", String(36), primary_key=True, index=True),
    Column("ItemCode", String(50)),
    Column("BaseType", Integer),
    Column("Quantity", Quantity),
    Column("CardCode", String(15), index=True),
    **MYSQL_TABLE_OPTIONS,
)

oinv = Table(
    "OINV", metadata,
    _doc_entry(),
    Column("DocNum", Integer, nullable=False, unique=True),
    Column("CardCode", String(15), nullable=False, index=True),
    Column("DocDate", Date, nullable=False),
    Column("DocTotal", Money),
    Column("UpdateDate", UtcDateTime, nullable=False, index=True),
    **MYSQL_TABLE_OPTIONS,
)

inv1 = Table(
    "INV1", metadata,
    Column("DocEntry", Integer, ForeignKey(oinv.c.DocEntry), primary_key=True,
           autoincrement=False),
    _line_num(),
    Column("BaseType", Integer),
    Column("BaseEntry", Integer),
    Column("BaseLine", Integer),
    Column("ItemCode", String(50)),
    Column("Quantity", Quantity),
    Index("ix_INV1_BaseEntry_BaseLine", "BaseEntry", "BaseLine"),
    **MYSQL_TABLE_OPTIONS,
)

#: The headers numbered by a DocNum series.
DOCUMENT_TABLES: tuple[Table, ...] = (ordr, odln, oinv)


def next_doc_num(conn: Connection, table: Table) -> int:
    """The next number of ``table``'s series as this transaction sees it: max(DocNum) + 1."""
    query = select(func.coalesce(func.max(table.c.DocNum), 0) + 1)
    return int(conn.execute(query).scalar_one())


def claim_doc_num(conn: Connection, table: Table, start: int) -> int:
    """The first free DocNum from ``start`` on, after queueing behind the series' other
    writers.

    Every writer locks the same row, the series' first document, until its transaction
    ends, so writers of a series take turns in the order they came (InnoDB and PostgreSQL
    grant a row lock to its waiters first come, first served); when a writer's turn comes,
    the one before it has committed, and the next number is read again. Locking reads walk
    past numbers taken since, which they see even under a fixed snapshot (InnoDB's
    REPEATABLE READ); under READ COMMITTED, as the hub writes, the number read is free
    already. Without queueing, concurrent writers clash over the same number round after
    round. Queueing on the series' *last* document instead, as before, let a writer that
    woke behind others chase the moving end one row at a time while newcomers jumped to it:
    one batch of orders waited 10 s at 100 orders/s. SQLite needs none of it (its writers
    are serialized by ``BEGIN IMMEDIATE``), and renders no ``FOR UPDATE``.
    """
    if start <= 1:
        # Nobody to queue behind; probing for a missing row here would take an InnoDB gap
        # lock that two first writers share, and both inserting then deadlocks.
        return 1
    # FOR NO KEY UPDATE on PostgreSQL: order lines may still reference the locked row.
    locked = select(table.c.DocEntry).with_for_update(key_share=True)
    # The first number read apart: MariaDB would lock every row a subquery's scan touched.
    first = conn.execute(select(func.min(table.c.DocNum))).scalar()
    conn.execute(locked.where(table.c.DocNum == first)).first()
    number = max(start, next_doc_num(conn, table))
    while conn.execute(locked.where(table.c.DocNum == number)).first() is not None:
        number += 1
    return number


def insert_with_doc_num(
    conn: Connection, table: Table, values: Mapping[str, Any], *, attempts: int = 5
) -> tuple[int, int]:
    """Insert one document header numbered max + 1; returns ``(DocEntry, DocNum)``.

    Writers using this function queue behind each other (see :func:`claim_doc_num`; the lock
    on the series' last document is held until the caller commits, so keep the transaction
    short). A writer that does not queue can still take the number first: the unique
    constraint catches that, the insert is undone to a savepoint and the next number is
    tried, so the caller's transaction (lines included) carries on. Any ``DocNum`` in
    ``values`` is replaced.

    Raises ValueError when ``table`` is not a numbered document or ``attempts`` < 1;
    DatabaseUnavailable when every attempt clashed (heavy contention: retry later). Other
    SQLAlchemy errors (an unknown customer, a deadlock, a lost connection) propagate
    unchanged for the caller to translate.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    if "DocNum" not in table.c or "DocEntry" not in table.c:
        raise ValueError(f"{table.name} has no DocEntry/DocNum series")
    doc_num = claim_doc_num(conn, table, next_doc_num(conn, table))
    last: IntegrityError | None = None
    for _ in range(attempts):
        savepoint = conn.begin_nested()
        try:
            result = conn.execute(insert(table).values({**values, "DocNum": doc_num}))
        except IntegrityError as exc:
            savepoint.rollback()
            if not _is_doc_num_clash(exc):
                raise
            last = exc
            doc_num = max(doc_num + 1, next_doc_num(conn, table))
            if conn.dialect.name == "postgresql":
                doc_num = claim_doc_num(conn, table, doc_num)
            # Elsewhere no queueing now: InnoDB leaves every writer that lost this clash a
            # shared lock on the clashing row, and locking it for update would deadlock them.
            # Under InnoDB's fixed snapshot, counting up from the clash is what moves us on.
            continue
        except BaseException:
            # After a deadlock InnoDB has rolled back the whole transaction, savepoint
            # included; failing to return to it must not hide the error that says why.
            with suppress(SQLAlchemyError):
                savepoint.rollback()
            raise
        savepoint.commit()
        key = result.inserted_primary_key
        if key is None or key[0] is None:  # pragma: no cover - every supported dialect reports it
            raise RuntimeError(f"{table.name}: the database did not report the new DocEntry")
        return int(key[0]), doc_num
    raise DatabaseUnavailable(
        f"{table.name}: DocNum clashed with other writers {attempts} times; retry later"
    ) from last


def insert_many_with_doc_nums(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[tuple[int, int]]:
    """Insert document headers numbered one after another in one statement; returns their
    ``(DocEntry, DocNum)`` in order. Queues behind the series' last writer once for all of
    them (see :func:`claim_doc_num`); when another writer took one of the numbers first,
    falls back to :func:`insert_with_doc_num` for each. Errors as that function's."""
    if len(rows) <= 1:
        return [insert_with_doc_num(conn, table, row) for row in rows]
    first = claim_doc_num(conn, table, next_doc_num(conn, table))
    numbers = list(range(first, first + len(rows)))
    savepoint = conn.begin_nested()
    try:
        conn.execute(insert(table), [{**row, "DocNum": n} for row, n in zip(rows, numbers,
                                                                          strict=True)])
    except IntegrityError as exc:
        savepoint.rollback()
        if not _is_doc_num_clash(exc):
            raise
        return [insert_with_doc_num(conn, table, row) for row in rows]
    except BaseException:
        with suppress(SQLAlchemyError):
            savepoint.rollback()
        raise
    savepoint.commit()
    entries = dict(conn.execute(select(table.c.DocNum, table.c.DocEntry).where(
        table.c.DocNum.between(numbers[0], numbers[-1]))).all())
    return [(int(entries[n]), n) for n in numbers]


def _is_doc_num_clash(exc: IntegrityError) -> bool:
    # Messages differ per driver: SQLite "UNIQUE constraint failed: ORDR.DocNum", PostgreSQL
    # 'duplicate key ... "uq_ORDR_DocNum"', MariaDB "Duplicate entry '7' for key
    # 'uq_ORDR_DocNum'". Each names the column or the constraint built from it.
    text = str(exc.orig).lower()
    return "docnum" in text and ("unique" in text or "duplicate" in text)
