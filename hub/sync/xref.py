"""The cross-reference: which record in one system is which record in another.

Each bound record has one canonical id and one row per system that knows it, e.g. an order
is ``(order, <uuid>, crm, <order_id>)`` and ``(order, <uuid>, erp, <DocEntry>)``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, select

from hub.store.tables import id_xref
from hub.store.types import utcnow
from hub.store.upsert import insert_ignore

__all__ = ["Xref"]


class Xref:
    """Look-ups and bindings in the caller's transaction."""

    @staticmethod
    def canonical(conn: Connection, kind: str, system: str, local_key: str) -> str | None:
        return conn.execute(
            select(id_xref.c.canonical_id).where(
                id_xref.c.kind == kind, id_xref.c.system == system,
                id_xref.c.local_key == local_key,
            )
        ).scalar()

    @staticmethod
    def local(conn: Connection, kind: str, canonical_id: str, system: str) -> str | None:
        return conn.execute(
            select(id_xref.c.local_key).where(
                id_xref.c.kind == kind, id_xref.c.canonical_id == canonical_id,
                id_xref.c.system == system,
            )
        ).scalar()

    @staticmethod
    def bind(conn: Connection, kind: str, canonical_id: str, **keys: str) -> None:
        """Bind ``canonical_id`` to each ``system=local_key`` given (idempotent)."""
        insert_ignore(conn, id_xref, Xref.rows(kind, canonical_id, **keys))

    @staticmethod
    def rows(kind: str, canonical_id: str, **keys: str) -> list[dict[str, Any]]:
        """The rows :meth:`bind` inserts, for a caller binding many records at once."""
        now = utcnow()
        return [{"kind": kind, "canonical_id": canonical_id, "system": system,
                 "local_key": key, "created_at": now} for system, key in keys.items()]

    @staticmethod
    def child(canonical_id: str, part: object) -> str:
        """A stable canonical id for a part of a record (an order's line 3, ...)."""
        return str(uuid.uuid5(uuid.UUID(canonical_id), str(part)))

    @staticmethod
    def resolve(conn: Connection, kind: str, **keys: str | None) -> str:
        """The canonical id any of ``keys`` is bound to, or a new one (not yet bound)."""
        for system, key in keys.items():
            if key is not None:
                found = Xref.canonical(conn, kind, system, key)
                if found is not None:
                    return found
        return str(uuid.uuid4())
