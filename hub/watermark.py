"""Reading a source by watermark without missing a late commit or reading a change twice.

A source row carries a change timestamp (``modified_at``, ``UpdateDate``, ``CHANGED_ON``). A
plain "everything after the last timestamp I saw" misses two kinds of change: one committed
late (its transaction began, and stamped the row, before our last poll but committed after)
and one stamped in the same instant as the last row we saw. So every poll reads again from
``position - overlap``, and a seen-set of (row key, row version) drops what was already
taken. A writer whose transaction stays open longer than the overlap (waiting for locks while
a database restarts, say) would still be missed, so now and then (``sweep_every``) a poll
reaches back ``sweep`` instead: a list of keys and versions, each page checked against the
seen-set, which is kept for twice that long. A change committed later than ``sweep`` after
its stamp is the only one missed. Position and seen-set are kept in the hub's store, written
in the same transaction as the outbox rows the changes produce, so a crash between the two
cannot lose or double anything.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Column, Connection, Select, and_, delete, or_, select, tuple_, update

from hub.store.tables import watermark, watermark_seen
from hub.store.types import utcnow
from hub.store.upsert import insert_ignore

__all__ = ["Change", "Watermark", "window"]

T = TypeVar("T")


@dataclass(frozen=True)
class Change(Generic[T]):
    """One row version read from a source, with whatever the connector read alongside."""

    key: str
    version: str
    changed_at: dt.datetime
    row: T


#: fetch(lower_bound, after, limit) -> changes with changed_at >= lower_bound and
#: (changed_at, key) > after, ordered by (changed_at, key), at most ``limit``.
Fetch = Callable[[dt.datetime | None, tuple[dt.datetime, str] | None, int], Sequence[Change[T]]]
#: load(changes) -> the same changes with their rows read (a change whose row has gone is
#: left out). Lets a fetch list keys and versions only, so rows already seen are never read.
Load = Callable[[Sequence[Change[Any]]], Sequence[Change[T]]]


def window(
    query: Select[Any], changed_at: Column[Any], key: Column[Any], lower: dt.datetime | None,
    after: tuple[dt.datetime, str] | None, limit: int,
) -> Select[Any]:
    """Narrow a source query to one page of a :data:`Fetch`: ``changed_at >= lower``,
    ``(changed_at, key) > after``, ordered by ``(changed_at, key)``, at most ``limit``."""
    if lower is not None:
        query = query.where(changed_at >= lower)
    if after is not None:
        moment, last = after
        query = query.where(or_(changed_at > moment, and_(changed_at == moment, key > last)))
    return query.order_by(changed_at, key).limit(limit)


class Watermark:
    """The read position of one source stream (e.g. ``crm.crm_order``)."""

    def __init__(self, source: str, *, overlap: dt.timedelta = dt.timedelta(seconds=10),
                 sweep: dt.timedelta = dt.timedelta(minutes=5),
                 sweep_every: dt.timedelta = dt.timedelta(minutes=1)) -> None:
        self.source = source
        self.overlap = overlap
        self.sweep = sweep
        self.sweep_every = sweep_every
        self._swept_at: float | None = None  # monotonic; None: sweep at the first poll

    def tune(self, *, overlap: float, sweep: float) -> None:
        """Set the overlap and sweep windows (seconds; a sweep at most the overlap is off)."""
        self.overlap = dt.timedelta(seconds=overlap)
        self.sweep = dt.timedelta(seconds=sweep)

    def _sweeping(self) -> bool:
        return self.sweep > self.overlap and (
            self._swept_at is None
            or time.monotonic() - self._swept_at >= self.sweep_every.total_seconds())

    def position(self, conn: Connection) -> dt.datetime | None:
        return conn.execute(
            select(watermark.c.position).where(watermark.c.source == self.source)
        ).scalar()

    def poll(self, conn: Connection, fetch: Fetch[Any], *, limit: int = 500,
             load: Load[T] | None = None) -> list[Change[T]]:
        """Changes not taken yet, oldest first, at most ``limit``; call :meth:`commit` after.

        Pages through the overlap window by (changed_at, key), so a window holding more
        already-seen rows than ``limit`` cannot stall the stream. With ``load``, ``fetch``
        returns keys and versions only and the rows of the unseen changes are read at the
        end: a busy source re-reads its overlap window as a list of keys, not as whole rows.
        """
        position = self.position(conn)
        sweeping = self._sweeping()
        reach = self.sweep if sweeping else self.overlap
        lower = None if position is None else position - reach
        fresh: list[Change[T]] = []
        after: tuple[dt.datetime, str] | None = None
        seen: set[tuple[str, str]] | None = None
        complete = False
        while len(fresh) < limit:
            page = fetch(lower, after, limit)
            if not page:
                complete = True
                break
            if seen is None and lower is not None and not sweeping:
                # What was taken in the window, in one range read (the window is re-read
                # every poll, so this is cheaper than asking about each page's keys). A
                # sweep's window is too large to hold in memory: it asks page by page.
                seen = self._seen_since(conn, lower)
            if seen is None:
                fresh.extend(self._unseen(conn, page))
            else:
                fresh.extend(c for c in page if (c.key[:100], c.version[:64]) not in seen)
            after = (page[-1].changed_at, page[-1].key)
            if len(page) < limit:
                complete = True
                break
        if sweeping:  # an unfinished sweep goes on at the next poll
            self._swept_at = time.monotonic() if complete and len(fresh) <= limit else None
        fresh = fresh[:limit]
        if load is not None and fresh:
            return list(load(fresh))
        return fresh

    def _seen_since(self, conn: Connection, lower: dt.datetime) -> set[tuple[str, str]]:
        return {(r.row_key, r.row_version) for r in conn.execute(
            select(watermark_seen.c.row_key, watermark_seen.c.row_version).where(
                watermark_seen.c.source == self.source, watermark_seen.c.changed_at >= lower))}

    def _unseen(self, conn: Connection, page: Sequence[Change[T]]) -> list[Change[T]]:
        pairs = [(c.key, c.version) for c in page]
        seen = {
            (r.row_key, r.row_version)
            for r in conn.execute(
                select(watermark_seen.c.row_key, watermark_seen.c.row_version).where(
                    watermark_seen.c.source == self.source,
                    tuple_(watermark_seen.c.row_key, watermark_seen.c.row_version).in_(pairs),
                )
            )
        }
        return [c for c in page if (c.key, c.version) not in seen]

    def commit(self, conn: Connection, changes: Sequence[Change[T]]) -> None:
        """Mark ``changes`` taken and move the position forward (never back)."""
        if not changes:
            return
        insert_ignore(conn, watermark_seen, [
            {"source": self.source, "row_key": c.key[:100], "row_version": c.version[:64],
             "changed_at": c.changed_at}
            for c in changes
        ])
        newest = max(c.changed_at for c in changes)
        now = utcnow()
        current = self.position(conn)
        if current is None:
            insert_ignore(conn, watermark, [
                {"source": self.source, "position": newest, "updated_at": now}])
        elif newest > current:
            conn.execute(update(watermark).where(watermark.c.source == self.source)
                         .values(position=newest, updated_at=now))
        horizon = max(newest, current or newest) - 2 * max(self.overlap, self.sweep)
        conn.execute(delete(watermark_seen).where(and_(
            watermark_seen.c.source == self.source, watermark_seen.c.changed_at < horizon)))
