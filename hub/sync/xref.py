"""The cross-reference: which record in one system is which record in another.

Each bound record has one canonical id and one row per system that knows it, e.g. an order
is ``(order, <uuid>, crm, <order_id>)`` and ``(order, <uuid>, erp, <DocEntry>)``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Connection, delete, select, union_all

from hub.store.bulk import insert_ignore, one_of
from hub.store.tables import id_xref
from hub.store.types import utcnow

__all__ = ["Xref"]

log = logging.getLogger(__name__)


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
    def canonical_many(conn: Connection, kind: str, system: str, local_keys: Iterable[str]
                       ) -> dict[str, str]:
        """local key -> canonical id, for those of ``local_keys`` that are bound."""
        return _pairs(conn, kind, system, id_xref.c.local_key, id_xref.c.canonical_id,
                      local_keys)

    @staticmethod
    def resolve_many(conn: Connection, kind: str, records: Sequence[Mapping[str, str | None]]
                     ) -> list[str]:
        """:meth:`resolve` for each of ``records`` (``{system: local key}``), one query per
        system."""
        systems = list(dict.fromkeys(system for keys in records for system in keys))
        bound = {system: Xref.canonical_many(
            conn, kind, system, [k for keys in records if (k := keys.get(system)) is not None])
            for system in systems}
        out: list[str] = []
        for keys in records:
            found = next((bound[system][key] for system, key in keys.items()
                          if key is not None and key in bound[system]), None)
            out.append(found or str(uuid.uuid4()))
        return out

    @staticmethod
    def local(conn: Connection, kind: str, canonical_id: str, system: str) -> str | None:
        return conn.execute(
            select(id_xref.c.local_key).where(
                id_xref.c.kind == kind, id_xref.c.canonical_id == canonical_id,
                id_xref.c.system == system,
            )
        ).scalar()

    @staticmethod
    def local_many(conn: Connection, kind: str, canonical_ids: Sequence[str], system: str
                   ) -> dict[str, str]:
        """canonical id -> ``system``'s local key, for those of ``canonical_ids`` bound there."""
        return _pairs(conn, kind, system, id_xref.c.canonical_id, id_xref.c.local_key,
                      canonical_ids)

    @staticmethod
    def bind(conn: Connection, kind: str, canonical_id: str, **keys: str) -> None:
        """Bind ``canonical_id`` to each ``system=local_key`` given (idempotent)."""
        insert_ignore(conn, id_xref, Xref.rows(kind, canonical_id, **keys))

    @staticmethod
    def rebind(conn: Connection, rows: Sequence[Mapping[str, Any]], system: str) -> None:
        """Bind as :meth:`rows` say; in ``system``, replace what contradicts them: another
        record bound to the same local key, or the same record bound to another local key.
        For bindings read from ``system`` itself in this transaction, which overrule what the
        hub remembered of a write the system then lost (its local key may since have been
        given to another record). One query per kind, another only when something goes."""
        stale: set[int] = set()
        groups: dict[str, dict[str, str]] = {}
        for row in rows:
            if row["system"] == system:
                groups.setdefault(row["kind"], {})[row["local_key"]] = row["canonical_id"]
        for kind, wanted in groups.items():
            owned = {cid: key for key, cid in wanted.items()}
            keys = list(wanted)
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                cids = [wanted[key] for key in chunk]
                # Two index look-ups in one round trip (an OR of the two can make the
                # planner scan the whole table).
                bound = select(id_xref.c.id, id_xref.c.canonical_id, id_xref.c.local_key).where(
                    id_xref.c.kind == kind, id_xref.c.system == system)
                stale.update(r.id for r in conn.execute(union_all(
                    bound.where(one_of(conn, id_xref.c.local_key, chunk)),
                    bound.where(one_of(conn, id_xref.c.canonical_id, cids))))
                    if wanted.get(r.local_key) != r.canonical_id
                    or owned.get(r.canonical_id) != r.local_key)
        if stale:
            log.warning("cross-reference: %d binding(s) in %s replaced by what it holds",
                        len(stale), system)
            conn.execute(delete(id_xref).where(id_xref.c.id.in_(sorted(stale))))
        insert_ignore(conn, id_xref, rows)

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


def _pairs(conn: Connection, kind: str, system: str, by: Column[str], to: Column[str],
           values: Iterable[str]) -> dict[str, str]:
    """``by`` -> ``to`` for the cross-references of ``kind`` in ``system`` whose ``by`` is
    one of ``values``; one query per 500."""
    wanted = list(dict.fromkeys(values))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        found.update((str(r[0]), str(r[1])) for r in conn.execute(
            select(by, to).where(id_xref.c.kind == kind, id_xref.c.system == system,
                                 one_of(conn, by, wanted[start:start + 500]))))
    return found
