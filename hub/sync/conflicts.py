"""Conflicts: a field changed on both sides since the last sync, both values, and the winner."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select

from hub.store.tables import conflict
from hub.store.types import utcnow
from hub.sync.merge import Conflict

__all__ = ["Conflicts"]


def _text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


class Conflicts:
    @staticmethod
    def record(
        conn: Connection, *, kind: str, canonical_id: str, key: str | None, source: str,
        conflicts: Sequence[Conflict], message_id: str | None = None,
    ) -> None:
        """Store ``conflicts`` met while applying a change from ``source``.

        A field changed on both sides is usually met by both appliers (the CRM's change in
        the ERP, the ERP's in the CRM): a conflict whose field, both values and winner equal
        the last one recorded for that record and field is the same conflict, kept once.
        Callers record in the transaction that saved the record's sync state, whose row lock
        orders the two appliers, so the second one sees the first one's row."""
        if not conflicts:
            return
        now = utcnow()
        last = _latest(conn, kind, canonical_id, [c.field for c in conflicts])
        rows = []
        for c in conflicts:
            crm, erp = (c.incoming, c.current) if source == "crm" else (c.current, c.incoming)
            row = {"at": now, "kind": kind, "canonical_id": canonical_id,
                   "correlation_key": key, "field": c.field, "crm_value": _text(crm),
                   "erp_value": _text(erp), "base_value": _text(c.base),
                   "winner": c.winner, "message_id": message_id}
            if last.get(c.field) == (row["crm_value"], row["erp_value"], c.winner):
                continue
            rows.append(row)
        if rows:
            conn.execute(insert(conflict), rows)

    @staticmethod
    def recent(conn: Connection, *, key: str | None = None, limit: int = 50) -> list[Any]:
        query = select(conflict).order_by(conflict.c.id.desc()).limit(limit)
        if key is not None:
            query = query.where(conflict.c.correlation_key == key)
        return list(conn.execute(query).mappings())


def _latest(conn: Connection, kind: str, canonical_id: str, fields: Sequence[str]
            ) -> dict[str, tuple[str | None, str | None, str]]:
    """The last conflict recorded on each of ``fields`` of the record: (CRM value, ERP value,
    winner)."""
    found: dict[str, tuple[str | None, str | None, str]] = {}
    for row in conn.execute(
            select(conflict.c.field, conflict.c.crm_value, conflict.c.erp_value,
                   conflict.c.winner)
            .where(conflict.c.kind == kind, conflict.c.canonical_id == canonical_id,
                   conflict.c.field.in_(fields))
            .order_by(conflict.c.id.desc()).limit(500)):
        found.setdefault(row.field, (row.crm_value, row.erp_value, row.winner))
    return found
