"""``INSERT ... ON CONFLICT DO NOTHING`` for every dialect the hub store runs on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Insert, Table, insert
from sqlalchemy.dialects import mysql, postgresql, sqlite

__all__ = ["insert_ignore"]


def insert_ignore(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Insert ``rows``, silently skipping those whose key exists; returns how many were new."""
    if not rows:
        return 0
    stmt: Insert
    name = conn.dialect.name
    if name == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif name == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    elif name in ("mysql", "mariadb"):
        stmt = mysql.insert(table).prefix_with("IGNORE")
    else:
        stmt = insert(table)
    result = conn.execute(stmt, list(rows))
    return int(result.rowcount or 0)
