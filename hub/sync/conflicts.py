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
        """Store ``conflicts`` met while applying a change from ``source``."""
        if not conflicts:
            return
        now = utcnow()
        rows = []
        for c in conflicts:
            crm, erp = (c.incoming, c.current) if source == "crm" else (c.current, c.incoming)
            rows.append({"at": now, "kind": kind, "canonical_id": canonical_id,
                         "correlation_key": key, "field": c.field, "crm_value": _text(crm),
                         "erp_value": _text(erp), "base_value": _text(c.base),
                         "winner": c.winner, "message_id": message_id})
        conn.execute(insert(conflict), rows)

    @staticmethod
    def recent(conn: Connection, *, key: str | None = None, limit: int = 50) -> list[Any]:
        query = select(conflict).order_by(conflict.c.id.desc()).limit(limit)
        if key is not None:
            query = query.where(conflict.c.correlation_key == key)
        return list(conn.execute(query).mappings())
