"""What the ERP readers and writers share: change keys and paging, length checks, error guards.

Change streams are ordered by ``(changed_at, key)``. Numeric keys (``DocEntry``) are
zero-padded to :data:`KEY_WIDTH` digits so that the order of the key strings, which the
watermark compares, is the numeric order the database sorts by.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import ColumnElement, Connection, String, Table, and_, or_, select

from hub.errors import MappingError, db_errors
from hub.mapping import EntityMapping
from hub.watermark import Change

__all__ = [
    "CHUNK",
    "HUB_USER",
    "KEY_WIDTH",
    "after_clause",
    "as_changes",
    "changed_rows",
    "check_lengths",
    "chunked",
    "db_errors",
    "doc_key",
    "field_label",
    "key_entry",
    "validated",
    "version_of",
]

#: What the hub writes into ``UserSign2``, so its own changes can be told apart.
HUB_USER = "hub"
#: Digits of a zero-padded ``DocEntry`` key.
KEY_WIDTH = 12

#: Most keys sent in one ``IN (...)`` list.
CHUNK = 500

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
K = TypeVar("K")
R = TypeVar("R")


def doc_key(doc_entry: int) -> str:
    """The change key of a document: its DocEntry, zero-padded so strings sort as numbers."""
    return f"{doc_entry:0{KEY_WIDTH}d}"


def key_entry(key: str) -> int:
    """The DocEntry back from :func:`doc_key`. Raises ValueError for a key that is not one."""
    return int(key)


def chunked(keys: Sequence[T]) -> Iterator[list[T]]:
    """``keys`` without repeats, in lists short enough for one ``IN (...)`` each."""
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), CHUNK):
        yield unique[start:start + CHUNK]


def version_of(changed_at: dt.datetime) -> str:
    """A change's version: its timestamp to the microsecond."""
    return changed_at.isoformat(timespec="microseconds")


def as_changes(
    changed: Sequence[tuple[K, dt.datetime]], rows: Mapping[K, R], key: Callable[[K], str]
) -> list[Change[R]]:
    """One Change per ``(row key, changed_at)`` whose row was read (in the order given)."""
    return [
        Change(key=key(found), version=version_of(stamp), changed_at=stamp, row=rows[found])
        for found, stamp in changed if found in rows
    ]


def after_clause(
    changed_at: ColumnElement[Any], key: ColumnElement[Any], after: tuple[dt.datetime, Any]
) -> ColumnElement[bool]:
    """``(changed_at, key) > after``, spelled out (row-value comparison is not portable)."""
    moment, last = after
    return or_(changed_at > moment, and_(changed_at == moment, key > last))


def changed_rows(
    conn: Connection,
    table: Table,
    key: ColumnElement[Any],
    lower: dt.datetime | None,
    after: tuple[dt.datetime, Any] | None,
    limit: int,
    *where: ColumnElement[bool],
) -> list[tuple[Any, dt.datetime]]:
    """``(key, UpdateDate)`` of ``table``'s rows stamped at or after ``lower`` and beyond
    ``after`` (its key already parsed back to the column's type), in that order, at most
    ``limit``; ``where`` narrows the rows further."""
    stamp = table.c.UpdateDate
    query = select(key, stamp).where(*where)
    if lower is not None:
        query = query.where(stamp >= lower)
    if after is not None:
        query = query.where(after_clause(stamp, key, after))
    return [(row[0], row[1]) for row in conn.execute(query.order_by(stamp, key).limit(limit))]


def check_lengths(
    table: Table, columns: Mapping[str, Any], label: Callable[[str], str]
) -> None:
    """Refuse text longer than its column holds, instead of letting anyone truncate it.

    ``label(column)`` names the value as a sales person knows it ("order notes").
    Raises MappingError naming the value, its length and the limit.
    """
    for name, value in columns.items():
        if not isinstance(value, str) or name not in table.c:
            continue
        kind = table.c[name].type
        limit = kind.length if isinstance(kind, String) else None
        if limit is not None and len(value) > limit:
            raise MappingError(
                f"{label(name)} too long for the ERP: {len(value)} characters where "
                f"{table.name}.{name} holds at most {limit} (nothing was truncated)"
            )


def field_label(entity: EntityMapping, column: str) -> str:
    """The canonical name of ``column`` in words ("customer po" for U_CustPO)."""
    names = {col: name for name, col in entity.fields.items()}
    return names.get(column, column).replace("_", " ")


def validated(model: type[M], values: Mapping[str, Any], what: str) -> M:
    """``values`` as a ``model``; a ValidationError becomes a MappingError about ``what``."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in exc.errors()
        )
        raise MappingError(f"{what} cannot be read into the canonical model: {problems}") from exc

