"""Reading a source by watermark without missing a late commit or reading a change twice.

A source row carries a change timestamp (``modified_at``, ``UpdateDate``, ``CHANGED_ON``). A
plain "everything after the last timestamp I saw" misses two kinds of change: one committed
late (its transaction began, and stamped the row, before our last poll but committed after)
and one stamped in the same instant as the last row we saw. So every poll reads again from
``position - overlap``, and a seen-set of (row key, row version) drops what was already
taken. While a backlog drains (every poll a full page), a poll goes on where the last one
stopped and reads the whole window again only once the position has moved half the overlap:
re-reading a window that holds the whole backlog (a bulk load stamps thousands of rows in
the same second) at every page made draining it quadratic. A writer whose transaction stays
open longer than the overlap (waiting for locks while a database restarts, say) would still
be missed, so now and then (``sweep_every``) polls
also reach back ``sweep``: a list of keys and versions, a few pages per poll, each page
checked against the seen-set (kept for twice that long) in one range read. A change
committed later than ``sweep`` after its stamp is the only one missed. Once caught up, most
polls read back only ``recent`` (2 s) and every ``overlap / 2`` one reads the whole window,
reaching back that much further, so a late commit is still found (a few seconds later):
re-listing a busy source's whole window every second was a tenth of the daemon's work in a
drain, and the biggest read of the CRM's database. Position and seen-set
are kept in the hub's store, written in the same transaction as the outbox rows the changes
produce, so a crash between the two cannot lose or double anything.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from sqlalchemy import Column, Connection, Select, and_, delete, or_, select, update

from hub.store.bulk import insert_ignore, one_of
from hub.store.tables import watermark, watermark_seen
from hub.store.types import utcnow

__all__ = ["Change", "Watermark", "window"]

T = TypeVar("T")


class Change(NamedTuple, Generic[T]):
    """One row version read from a source, with whatever the connector read alongside.

    A named tuple: pollers list a window's changes again and again (a drain lists hundreds
    of thousands), and a tuple is made in a fraction of a frozen dataclass's time."""

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
    ``(changed_at, key) > after``, ordered by ``(changed_at, key)``, at most ``limit``.

    ``changed_at >= moment`` is implied by ``after`` and said anyway: a database cannot read
    an index range from an ``OR``, so without it a page read its index from ``lower`` and
    threw away the whole overlap window before the cursor (PostgreSQL, a CRM of 20,000
    orders during a drain: 8,684 rows filtered out, 5.5 ms a page; with it 0.7 ms)."""
    if lower is not None:
        query = query.where(changed_at >= lower)
    if after is not None:
        moment, last = after
        query = query.where(changed_at >= moment,
                            or_(changed_at > moment, and_(changed_at == moment, key > last)))
    return query.order_by(changed_at, key).limit(limit)


@dataclass(frozen=True)
class _Cursor:
    after: tuple[dt.datetime, str]  # where the poll stopped
    key: str  # the last change it took, and when that changed
    changed_at: dt.datetime


class Watermark:
    """The read position of one source stream (e.g. ``crm.crm_order``)."""

    #: Pages of the sweep window read per poll (a page is ``limit`` keys and versions).
    sweep_pages = 4
    #: The longest page of keys and versions a poll lists, in times its ``limit``.
    longest_page = 8

    def __init__(self, source: str, *, overlap: dt.timedelta = dt.timedelta(seconds=10),
                 sweep: dt.timedelta = dt.timedelta(minutes=5),
                 sweep_every: dt.timedelta = dt.timedelta(minutes=1),
                 recent: dt.timedelta = dt.timedelta(seconds=2)) -> None:
        self.source = source
        self.overlap = overlap
        self.recent = recent
        # When the last poll that read the whole window to its end began (monotonic), and
        # whether the last poll reached the end of what it read (caught up).
        self._whole_at: float | None = None
        self._caught_up = False
        self.sweep = sweep
        self.sweep_every = sweep_every
        self._swept_at: float | None = None  # monotonic; None: sweep at the first poll
        self._sweep_after: tuple[dt.datetime, str] | None = None  # where a sweep goes on
        # Backlog: where the last full poll stopped, with the last change it took (found in
        # the seen-set only if that poll's transaction committed); the position when the
        # window was last read whole; the cursor of a poll not yet committed.
        self._cursor: _Cursor | None = None
        self._window_at: dt.datetime | None = None
        self._next_cursor: _Cursor | None = None
        self._position: dt.datetime | None = None  # as the running poll read it
        # What this process took and knows committed ((key, version) -> change time), for
        # the overlap window; and what the last commit() took, until committed() says so.
        self._taken: dict[tuple[str, str], dt.datetime] = {}
        self._kept = 0  # how many _taken held after it was last pruned
        self._pending: list[tuple[str, str, dt.datetime]] = []

    def tune(self, *, overlap: float, sweep: float) -> None:
        """Set the overlap and sweep windows (seconds; a sweep at most the overlap is off)."""
        self.overlap = dt.timedelta(seconds=overlap)
        self.sweep = dt.timedelta(seconds=sweep)

    def _sweeping(self) -> bool:
        return self.sweep > self.overlap and (
            self._swept_at is None or self._sweep_after is not None
            or time.monotonic() - self._swept_at >= self.sweep_every.total_seconds())

    def position(self, conn: Connection) -> dt.datetime | None:
        return conn.execute(
            select(watermark.c.position).where(watermark.c.source == self.source)
        ).scalar()

    def poll(self, conn: Connection, fetch: Fetch[Any], *, limit: int = 500,
             load: Load[T] | None = None) -> list[Change[T]]:
        """Changes not taken yet, at most ``limit``; call :meth:`commit` after.

        Pages through the overlap window by (changed_at, key), so a window holding more
        already-seen rows than ``limit`` cannot stall the stream; each page is checked
        against the seen-set in one range read. A sweep, when due and the stream caught up
        (never while a backlog drains), reads at most :attr:`sweep_pages` pages per poll and
        carries on where it stopped at the next, so it never holds new changes up for long.
        With ``load``, ``fetch`` returns keys and versions only and the rows of the unseen
        changes are read at the end: a busy source re-reads its windows as lists of keys,
        not as whole rows.
        """
        position = self._position = self.position(conn)
        confirmed = not self._pending  # the last poll took nothing, or committed() said so
        self._pending = []
        lower = None if position is None else position - self.overlap
        held, self._cursor, self._next_cursor = self._cursor, None, None
        cursor = None
        whole = False
        began = time.monotonic()
        if (held is not None and position is not None and self._window_at is not None
                and position - self._window_at < self.overlap / 2 and self._took(conn, held)):
            cursor = held.after
        elif (position is not None and confirmed and self._caught_up and self._quick()
              and self._whole_at is not None and began - self._whole_at < self._every()):
            lower = position - self.recent  # caught up: the whole window was read lately
        else:
            self._window_at = position  # the whole window again
            whole = True
            if position is not None and self._quick():
                lower = position - self._reach()
        fresh: list[Change[T]]
        fresh, stopped, caught_up = self._unseen_pages(conn, fetch, lower, cursor, limit,
                                                       grow=load is not None)
        self._caught_up = caught_up
        if caught_up and whole:
            self._whole_at = began
        if not caught_up and fresh and stopped is not None:
            # A backlog: the next poll goes on from here, if this one is committed.
            self._next_cursor = _Cursor(stopped, fresh[-1].key, fresh[-1].changed_at)
        if (caught_up and len(fresh) < limit and position is not None and lower is not None
                and self._sweeping()):
            taken = {(c.key, c.version) for c in fresh}
            late: list[Change[T]] = self._sweep_on(conn, fetch, position - self.sweep, lower,
                                                   limit - len(fresh))
            fresh = [c for c in late if (c.key, c.version) not in taken] + fresh
        if load is not None and fresh:
            return list(load(fresh))
        return fresh

    def _quick(self) -> bool:
        """Whether polls read back only :attr:`recent` between whole windows."""
        return self.recent < self.overlap

    def _every(self) -> float:
        """Seconds between whole-window reads once caught up."""
        return self.overlap.total_seconds() / 2

    def _reach(self) -> dt.timedelta:
        """How far a whole-window read reaches back: the overlap, and with quick polls also
        the time between whole reads, so that a change committed up to ``overlap`` late is
        found as before, only up to that much later."""
        if not self._quick():
            return self.overlap
        return self.overlap + dt.timedelta(seconds=self._every())

    def _sweep_on(self, conn: Connection, fetch: Fetch[Any], start: dt.datetime,
                  overlap_from: dt.datetime, limit: int) -> list[Change[T]]:
        """The next pages of the sweep (from ``start``, or where the last poll stopped) up to
        the overlap window, which the plain poll reads anyway."""
        found: list[Change[T]]
        found, after, done = self._unseen_pages(
            conn, fetch, start, self._sweep_after, limit, pages=self.sweep_pages,
            until=overlap_from)
        self._sweep_after = None if done else after
        if done:
            self._swept_at = time.monotonic()
        return found

    def _unseen_pages(self, conn: Connection, fetch: Fetch[Any], lower: dt.datetime | None,
                      after: tuple[dt.datetime, str] | None, limit: int, *,
                      pages: int | None = None, until: dt.datetime | None = None,
                      grow: bool = False,
                      ) -> tuple[list[Change[T]], tuple[dt.datetime, str] | None, bool]:
        """Unseen changes from ``lower``/``after`` on, at most ``limit``, reading at most
        ``pages`` pages and none past ``until``; returns them, where reading stopped, and
        whether the end (or ``until``) was reached.

        With ``grow`` (``fetch`` lists keys and versions only), a page that was mostly seen
        makes the next one twice as long, up to :attr:`longest_page` times ``limit``: a
        whole window read again is mostly seen, and listing it in pages of ``limit`` cost a
        statement per page (and, for the ERP's orders, a grouping of the rest of the window
        each time). A backlog, all unseen, keeps pages of ``limit``."""
        fresh: list[Change[T]] = []
        read = 0
        size = limit
        while len(fresh) < limit and (pages is None or read < pages):
            page = fetch(lower, after, size)
            read += 1
            if until is not None:
                page = [c for c in page if c.changed_at < until]
            if not page:
                return fresh, after, True
            seen = self._seen(conn, page)
            unseen = [c for c in page if (c.key[:100], c.version[:64]) not in seen]
            fresh.extend(unseen)
            after = (page[-1].changed_at, page[-1].key)
            if len(page) < size and len(fresh) <= limit:
                return fresh, after, True
            if grow and 2 * len(unseen) < len(page):
                size = min(2 * size, self.longest_page * limit)
        if len(fresh) > limit:  # go on after the last change taken, not after the page
            fresh = fresh[:limit]
            after = (fresh[-1].changed_at, fresh[-1].key)
        return fresh, after, False

    def _took(self, conn: Connection, cursor: _Cursor) -> bool:
        """Whether the poll that left ``cursor`` was committed: its last change is seen."""
        return conn.execute(select(watermark_seen.c.row_key).where(
            watermark_seen.c.source == self.source,
            watermark_seen.c.row_key == cursor.key[:100],
            watermark_seen.c.changed_at >= cursor.changed_at).limit(1)).first() is not None

    def _seen(self, conn: Connection, page: Sequence[Change[Any]]) -> set[tuple[str, str]]:
        """Which keys of ``page`` were taken, and in which versions, with a change time
        between the page's first and last (a second wider each way, whatever precision the
        store keeps times in): one read by key. Not by time alone: a bulk load stamps
        thousands of rows in the same second, and every page of it would read them all. Nor
        by key and time in SQL: planned without knowing the times, PostgreSQL took the time
        index for a narrow range and read every row of the bulk load's second, then matched
        the keys (9.6 ms a page during a drain; by key alone, 2.5 ms).

        Only changes stamped up to the position (and that second) are looked up: whatever was
        taken was stamped at most at the position of the poll that took it, and the position
        never goes back. So a page of a backlog, beyond the position, costs no read at all.
        Nor do the changes this process took itself and saw committed (:meth:`committed`),
        which are most of what each poll reads again in its overlap window once caught up:
        only those it cannot vouch for are read from the store."""
        slack = dt.timedelta(seconds=1)
        if self._position is None:
            return set()  # nothing was ever taken
        reach = self._position + slack
        known: set[tuple[str, str]] = set()
        keys: set[str] = set()
        for c in page:
            if c.changed_at > reach:
                continue
            pair = (c.key[:100], c.version[:64])
            if self._taken.get(pair) == c.changed_at:
                known.add(pair)
            else:
                keys.add(pair[0])
        if not keys:
            return known
        first, last = page[0].changed_at - slack, page[-1].changed_at + slack
        return known | {(r.row_key, r.row_version) for r in conn.execute(
            select(watermark_seen.c.row_key, watermark_seen.c.row_version,
                   watermark_seen.c.changed_at).where(
                watermark_seen.c.source == self.source,
                one_of(conn, watermark_seen.c.row_key, keys)))
            if first <= r.changed_at <= last}

    def commit(self, conn: Connection, changes: Sequence[Change[T]]) -> None:
        """Mark ``changes`` taken and move the position forward (never back). A poll whose
        transaction does not commit leaves the next to read the whole window."""
        self._cursor, self._next_cursor = self._next_cursor, None
        self._pending = [(c.key[:100], c.version[:64], c.changed_at) for c in changes]
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

    def committed(self) -> None:
        """The transaction of the last :meth:`commit` did commit: its changes are known taken
        without asking the store, for as long as the overlap window holds them. A caller
        that does not say so only has its polls read more of the seen-set."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        self._taken.update(((key, version), at) for key, version, at in pending)
        newest = max(at for _, _, at in pending)
        if self._position is not None:
            newest = max(newest, self._position)
        horizon = newest - self._reach() - dt.timedelta(seconds=2)
        # Dropped in bulk once it has doubled since the last time, not at every commit: a
        # drain commits a page every few milliseconds and rebuilding the whole map each time
        # was 1% of the daemon. What is kept too long is still true, only no longer asked.
        if len(self._taken) > max(2 * self._kept, 4 * len(pending)):
            self._taken = {pair: at for pair, at in self._taken.items() if at >= horizon}
            self._kept = len(self._taken)
