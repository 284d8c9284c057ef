"""Message counts over all time: the journal, plus what housekeeping pruned from it.

Prometheus reads a counter that goes down as a reset and reports a burst, so pruning must not
lower the counts. :func:`fold` adds the entries about to be pruned to ``journal_tally`` (per
event, type, source and target: a count and a latency histogram), in the transaction that
prunes them; :func:`totals` reads the tally back; :func:`scan` counts the journal itself.

Counting a journal of months at every scrape would cost seconds, so :class:`RunningTotals`
(one per process that reads often) counts it once, then adds only the entries written since.
An entry joins the running sum a ``settle`` after it was written; younger ones are counted
afresh at every read, so one whose transaction commits late is not missed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, insert, select, update

from hub.store.histograms import Histogram, hist_columns, hist_of
from hub.store.tables import journal, journal_tally
from hub.store.types import utcnow

__all__ = ["LATENCY_BUCKETS", "OUTCOMES", "RunningTotals", "Tallied", "fold", "scan", "totals"]

#: Upper bounds (seconds) of the source-commit → target-commit latency histograms.
LATENCY_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                                      900.0, 3600.0)
#: Journal events counted as message outcomes (``observed`` notes are not messages).
OUTCOMES: tuple[str, ...] = ("published", "applied", "retried", "dead_lettered", "replayed",
                             "discarded")

_KEY = (journal_tally.c.event, journal_tally.c.type, journal_tally.c.source,
        journal_tally.c.target)
#: The row every fold locks first, so two housekeepers cannot fold the same entries.
_LOCK = ("", "", "", "")

Key = tuple[str, str | None, str | None, str | None]


@dataclass(frozen=True)
class Tallied:
    """Journal entries of one event, type, source and raw target (the queue or routing key):
    how many, and the latency histogram of those that carry one."""

    event: str
    type: str | None
    source: str | None
    target: str | None
    count: int
    latency: Histogram

    @property
    def key(self) -> Key:
        return (self.event, self.type, self.source, self.target)


def scan(conn: Connection, *, since: dt.datetime | None = None,
         before: dt.datetime | None = None, after_id: int | None = None,
         through_id: int | None = None) -> list[Tallied]:
    """Count the journal's outcome entries (``at >= since``, ``at < before``,
    ``after_id < id <= through_id``, each when given) in one GROUP BY."""
    query = (select(journal.c.event, journal.c.type, journal.c.source, journal.c.target,
                    func.count(), *hist_columns(journal.c.latency_ms, LATENCY_BUCKETS))
             .group_by(journal.c.event, journal.c.type, journal.c.source, journal.c.target))
    if after_id is None:
        query = query.where(journal.c.event.in_(OUTCOMES))
    # else the events are picked below: filtered here, SQLite would walk the event index
    # (the whole journal) rather than the short range of new ids.
    if since is not None:
        query = query.where(journal.c.at >= since)
    if before is not None:
        query = query.where(journal.c.at < before)
    if after_id is not None:
        query = query.where(journal.c.id > after_id)
    if through_id is not None:
        query = query.where(journal.c.id <= through_id)
    return [Tallied(r[0], r[1] or None, r[2] or None, r[3] or None, int(r[4]),
                    hist_of(r, 5, LATENCY_BUCKETS)) for r in conn.execute(query)
            if r[0] in OUTCOMES]


def merge(parts: Iterable[Tallied]) -> list[Tallied]:
    """The same counts with one :class:`Tallied` per key."""
    merged: dict[Key, Tallied] = {}
    for t in parts:
        had = merged.get(t.key)
        merged[t.key] = t if had is None else Tallied(
            *t.key, had.count + t.count, had.latency + t.latency)
    return list(merged.values())


def fold(conn: Connection, older_than: dt.datetime) -> int:
    """Add the outcome entries older than ``older_than`` to the tally; call in the
    transaction that then prunes them. Returns how many entries were folded."""
    conn.execute(select(journal_tally.c.count).where(*_match(_LOCK)).with_for_update())
    folded = 0
    for t in scan(conn, before=older_than):
        key = tuple(v or "" for v in t.key)
        before = conn.execute(select(journal_tally).where(*_match(key))).first()
        if before is None:
            conn.execute(insert(journal_tally).values(
                **dict(zip(("event", "type", "source", "target"), key, strict=True)),
                count=t.count, **_columns(t.latency)))
        else:
            conn.execute(update(journal_tally).where(*_match(key)).values(
                count=before._mapping["count"] + t.count,
                **_columns(_histogram(before) + t.latency)))
        folded += t.count
    return folded


def totals(conn: Connection) -> list[Tallied]:
    """Everything folded so far."""
    return [Tallied(r.event, r.type or None, r.source or None, r.target or None,
                    int(r._mapping["count"]), _histogram(r))
            for r in conn.execute(select(journal_tally).where(journal_tally.c.event != ""))]


class RunningTotals:
    """All-time counts (the tally and the journal) for one process that reads them often;
    not thread-safe (the metrics collector reads under its own lock).

    The first read counts everything older than ``settle``. Later reads add the entries
    whose ids were already taken ``settle`` ago (a transaction holding a lower id has
    committed by then) and count younger ones afresh. An entry written with a time beyond
    the retention would be pruned unseen only if housekeeping ran within ``settle`` of it.
    """

    def __init__(self, settle: dt.timedelta = dt.timedelta(minutes=1)) -> None:
        self.settle = settle
        self._sum: list[Tallied] | None = None
        self._through = 0
        self._newest: list[tuple[dt.datetime, int]] = []  # (when, the highest id then)

    def read(self, conn: Connection, *, now: dt.datetime | None = None) -> list[Tallied]:
        now = now or utcnow()
        settled = now - self.settle
        newest = int(conn.execute(select(func.max(journal.c.id))).scalar() or 0)
        self._newest.append((now, newest))
        ripe = [n for at, n in self._newest if at <= settled]
        self._newest = [(at, n) for at, n in self._newest if at > settled]
        if self._sum is None:
            oldest = conn.execute(
                select(journal.c.id).where(journal.c.at < settled)
                .order_by(journal.c.at.desc(), journal.c.id.desc()).limit(1)).scalar()
            self._through = int(oldest or 0)
            self._sum = merge([*totals(conn), *scan(conn, through_id=self._through)])
        elif ripe and max(ripe) > self._through:
            self._sum = merge([*self._sum, *scan(conn, after_id=self._through,
                                                 through_id=max(ripe))])
            self._through = max(ripe)
        # Bounded on both sides, or SQLite would rather walk a whole index than the ids.
        return merge([*self._sum, *scan(conn, after_id=self._through, through_id=newest)])


def _match(key: tuple[str | None, ...]) -> list[ColumnElement[bool]]:
    return [column == value for column, value in zip(_KEY, key, strict=True)]


def _columns(hist: Histogram) -> dict[str, object]:
    return {"latency_count": hist.count, "latency_sum": hist.sum,
            "latency_buckets": json.dumps(dict(zip(map(repr, hist.bounds), hist.cumulative,
                                                   strict=True)))}


def _histogram(row: Any) -> Histogram:
    """A tally row's histogram on today's bounds (a bound it lacks reads as the nearest
    lower one it has: an undercount, never an overcount)."""
    stored = {float(b): int(n) for b, n in json.loads(row.latency_buckets or "{}").items()}
    cumulative = []
    for bound in LATENCY_BUCKETS:
        below = [n for b, n in stored.items() if b <= bound]
        cumulative.append(max(below) if below else 0)
    return Histogram(LATENCY_BUCKETS, tuple(cumulative), int(row.latency_count),
                     float(row.latency_sum))
