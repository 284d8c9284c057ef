"""The idempotent inbox: which messages a consumer has applied, so redeliveries do nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, delete, select

from hub.store.bulk import insert_ignore, one_of
from hub.store.tables import inbox
from hub.store.types import utcnow

__all__ = ["Inbox"]


class Inbox:
    """Call :meth:`claim` in the same transaction as the effect: both commit or neither."""

    @staticmethod
    def claim(conn: Connection, consumer: str, message_ids: Iterable[str]) -> set[str]:
        """Record ``message_ids`` for ``consumer``; return the ones it had not seen before."""
        wanted = list(dict.fromkeys(message_ids))
        if not wanted:
            return set()
        seen = {
            r.message_id
            for r in conn.execute(
                select(inbox.c.message_id).where(
                    inbox.c.consumer == consumer, one_of(conn, inbox.c.message_id, wanted)
                )
            )
        }
        fresh = [m for m in wanted if m not in seen]
        now = utcnow()
        rows = [{"consumer": consumer, "message_id": m, "processed_at": now} for m in fresh]
        insert_ignore(conn, inbox, rows)
        return set(fresh)

    @staticmethod
    def seen_many(conn: Connection, consumer: str, message_ids: Sequence[str]) -> set[str]:
        """Those of ``message_ids`` that ``consumer`` has applied already."""
        found: set[str] = set()
        unique = list(dict.fromkeys(message_ids))
        for start in range(0, len(unique), 500):
            found.update(conn.scalars(select(inbox.c.message_id).where(
                inbox.c.consumer == consumer,
                one_of(conn, inbox.c.message_id, unique[start:start + 500]))))
        return found

    @staticmethod
    def prune(conn: Connection, older_than: dt.datetime) -> int:
        """Forget ids older than the retention window (redeliveries come within minutes)."""
        result = conn.execute(delete(inbox).where(inbox.c.processed_at < older_than))
        return int(result.rowcount or 0)
