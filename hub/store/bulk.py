"""Writing many rows in one statement, and ``INSERT ... ON CONFLICT DO NOTHING``, on every
dialect the hub store and the systems run on.

On PostgreSQL many rows go as one JSON document, unpacked by the server into the table's own
row type (``json_populate_recordset``): one statement and one parameter for the lot. Measured
for 500 outbox rows (``bench``-sized order messages), in the daemon's CPU: psycopg's
pipelined executemany 8.4 ms, and PostgreSQL ran each row as a statement of its own; a column
of values per array (``unnest``) 41 ms, psycopg quoting each text element with a regular
expression in Python; one JSON document 3.5 ms. Elsewhere rows go as the driver's
executemany.

Many values to match go the same way: :func:`one_of` is ``column = ANY(:array)`` on
PostgreSQL, one parameter, where an ``IN`` list is a statement of its own for every length.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg.postgres import types as postgres_types
from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    Float,
    Insert,
    Integer,
    String,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import UserDefinedType

__all__ = ["insert_ignore", "insert_many", "one_of", "update_many"]

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def one_of(conn: Connection, column: ColumnElement[Any], values: Iterable[Any]
           ) -> ColumnElement[bool]:
    """``column IN values``, for a statement run on ``conn``.

    On PostgreSQL it is ``column = ANY(:values)``, the values in one array parameter, so the
    statement reads the same whatever their number: psycopg converts its text once and
    PostgreSQL prepares it once. An ``IN`` list is new text for every length, longer than
    psycopg keeps, which it parsed again at every call (6% of the daemon in a drain), as
    SQLAlchemy rendered a placeholder per value first, and PostgreSQL planned it again.

    A text or integer column gets the array as its text, sent as a ``text[]`` or ``int8[]``
    parameter (:class:`_ArrayText`): psycopg writes a list element by element in Python, a
    regular expression each (4.7 us an element; a 500-key look-up took 3.6 ms, this 1.5).
    The parameter is the array itself, not text cast to one in SQL: a cast is an
    expression PostgreSQL evaluates again for every row a filter tests, and a plan made
    while the table was small (a sequential scan) then took a second a query."""
    values = list(values)
    if conn.dialect.name != "postgresql":
        return column.in_(values)
    kind = _array_kind(column)
    if kind is None or conn.dialect.driver != "psycopg":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column == any_(bindparam(None, kind(_pg_array(values)), type_=_ArrayParameter()))


class _ArrayText(str):
    """The text of a ``text[]`` array, sent to PostgreSQL as that type."""


class _Int8ArrayText(_ArrayText):
    """The text of an ``int8[]`` array, sent to PostgreSQL as that type."""


class _ArrayParameter(UserDefinedType[str]):
    """A bound :class:`_ArrayText`, passed as it is (no cast rendered, no processing)."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "TEXT[]"


def _array_kind(column: ColumnElement[Any]) -> type[_ArrayText] | None:
    if isinstance(column.type, String):
        return _ArrayText
    if isinstance(column.type, Integer):
        return _Int8ArrayText
    return None


def _array_dumper(oid: int) -> type[psycopg.adapt.Dumper]:
    class ArrayTextDumper(psycopg.adapt.Dumper):
        def dump(self, obj: Any) -> bytes:
            return str(obj).encode()

    ArrayTextDumper.oid = oid
    return ArrayTextDumper


psycopg.adapters.register_dumper(_ArrayText, _array_dumper(postgres_types["text"].array_oid))
psycopg.adapters.register_dumper(_Int8ArrayText,
                                 _array_dumper(postgres_types["int8"].array_oid))


def _pg_array(values: Iterable[Any]) -> str:
    """``values`` as PostgreSQL's text form of an array (``{"a","b"}``), every element
    quoted. None matches nothing, as in ``IN``, and is left out."""
    return "{" + ",".join(
        '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        for v in values if v is not None) + "}"


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (each with the same columns), in that order (their ids too)."""
    if not rows:
        return
    document = _document(conn, table, rows)
    if document is not None:
        conn.execute(_json_insert(table, tuple(rows[0]), ignore=False), {"rows": document})
        return
    conn.execute(insert(table), list(rows))


def insert_ignore(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Insert ``rows`` (each with the same columns), silently skipping those whose key
    exists; returns how many were new."""
    if not rows:
        return 0
    stmt: Insert
    name = conn.dialect.name
    if name == "postgresql":
        document = _document(conn, table, rows)
        if document is not None:
            return int(conn.execute(_json_insert(table, tuple(rows[0]), ignore=True),
                                    {"rows": document}).rowcount or 0)
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif name == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    elif name in ("mysql", "mariadb"):
        stmt = mysql.insert(table).prefix_with("IGNORE")
    else:
        stmt = insert(table)
    # SQLAlchemy counts an INSERT's rows only when asked to (or for executemany).
    result = conn.execute(stmt.execution_options(preserve_rowcount=True), list(rows))
    return int(result.rowcount or 0)


def update_many(conn: Connection, table: Table, keys: Sequence[str],
                rows: Sequence[Mapping[str, Any]], also: Mapping[str, Any] | None = None
                ) -> None:
    """``UPDATE table SET ... WHERE keys match`` for each of ``rows`` (each with the same
    columns: ``keys`` and the columns to set), with ``also`` set on all of them (values or
    SQL expressions, e.g. ``version = table.c.version + 1``)."""
    if not rows:
        return
    values = [c for c in rows[0] if c not in keys]
    document = _document(conn, table, rows)
    stmt = update(table)
    if document is not None:
        given = _rows_of(table, tuple(rows[0]))
        stmt = stmt.where(*(table.c[k] == given.c[k] for k in keys)).values(
            {c: given.c[c] for c in values})
        conn.execute(stmt.values(also) if also else stmt, {"rows": document})
        return
    stmt = stmt.where(*(table.c[k] == bindparam(f"k_{k}") for k in keys)).values(
        {c: bindparam(f"v_{c}") for c in values})
    conn.execute(stmt.values(also) if also else stmt, [
        {**{f"k_{k}": row[k] for k in keys}, **{f"v_{c}": row[c] for c in values}}
        for row in rows])


def _document(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
              ) -> str | None:
    """``rows`` as one JSON document for PostgreSQL; None for one row (a plain statement
    costs less), another dialect, or values JSON cannot carry (bytes, NaN).

    Written by orjson (json took five times as long, 3% of the daemon in a drain), which
    writes NaN as null: those go as the driver's executemany, as before."""
    if conn.dialect.name != "postgresql" or len(rows) < 2:
        return None
    floats = _float_columns(table)
    if floats and any(isinstance(value, float) and not math.isfinite(value)
                      for row in rows for name in floats if (value := row.get(name)) is not None):
        return None
    try:
        return orjson.dumps(rows, default=_plain).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return None


@functools.cache
def _float_columns(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.c if isinstance(c.type, Float))


def _plain(value: object) -> str:
    """A value json does not know, as PostgreSQL reads it back for its column."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} does not travel in JSON")


@functools.cache
def _rows_of(table: Table, columns: tuple[str, ...]) -> TableValuedAlias:
    """``json_populate_recordset(NULL::table, :rows) WITH ORDINALITY AS v``: the rows of
    the ``rows`` parameter typed as ``table``'s columns (keys it does not name are NULL)."""
    name = _PG.identifier_preparer.format_table(table)
    row_type: ColumnClause[Any] = literal_column(f"NULL::{name}")
    return func.json_populate_recordset(row_type, cast(bindparam("rows", type_=Text),
                                                       postgresql.JSON)).table_valued(
        *(table.c[c].name for c in columns), with_ordinality="ordinality").alias("v")


@functools.cache
def _json_insert(table: Table, columns: tuple[str, ...], *, ignore: bool) -> Executable:
    """``INSERT INTO table (columns) SELECT columns FROM`` :func:`_rows_of` ``ORDER BY
    ordinality`` (the rows take their ids in the order given; PostgreSQL does not promise
    it of a plain SELECT); with ``ignore``, ``ON CONFLICT DO NOTHING``, counting rows."""
    given = _rows_of(table, columns)
    stmt = postgresql.insert(table).from_select(
        list(columns), select(*(given.c[c] for c in columns)).order_by(given.c.ordinality))
    return stmt.on_conflict_do_nothing().execution_options(preserve_rowcount=True) if ignore \
        else stmt
