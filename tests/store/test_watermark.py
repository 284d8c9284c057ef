"""Watermark polling: late commits and same-instant changes are taken once, never missed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    event,
    or_,
    select,
)

from hub.store import Store, UtcDateTime
from hub.watermark import Change, Watermark, window

T0 = dt.datetime(2026, 11, 23, 10, 0, 0)
meta = MetaData()
source = Table("source_rows", meta, Column("key", String(20), primary_key=True),
               Column("version", Integer, nullable=False),
               Column("modified_at", UtcDateTime, nullable=False))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The hub store under test; the source system is a database of its own."""
    s: Store = request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "pg_store")
    src = Store(f"sqlite:///{tmp_path}/source.db")
    meta.create_all(src.engine)
    SOURCES[id(s)] = src
    yield s
    src.dispose()


SOURCES: dict[int, Store] = {}


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def put(store: Store, key: str, version: int, when: dt.datetime) -> None:
    with SOURCES[id(store)].begin() as conn:
        conn.execute(source.delete().where(source.c.key == key))
        conn.execute(source.insert().values(key=key, version=version, modified_at=when))


def fetcher(store: Store):  # type: ignore[no-untyped-def]
    def fetch(lower: dt.datetime | None, after: tuple[dt.datetime, str] | None,
              limit: int) -> Sequence[Change[int]]:
        query = select(source).order_by(source.c.modified_at, source.c.key).limit(limit)
        if lower is not None:
            query = query.where(source.c.modified_at >= lower)
        if after is not None:
            query = query.where(or_(
                source.c.modified_at > after[0],
                and_(source.c.modified_at == after[0], source.c.key > after[1])))
        with SOURCES[id(store)].begin() as conn:
            return [Change(r.key, str(r.version), r.modified_at, r.version)
                    for r in conn.execute(query)]
    return fetch


def take(store: Store, wm: Watermark, limit: int = 500) -> list[tuple[str, int]]:
    with store.begin() as conn:
        changes = wm.poll(conn, fetcher(store), limit=limit)
        wm.commit(conn, changes)
    return [(c.key, c.row) for c in changes]


def test_late_and_same_instant_commits_are_taken_exactly_once(store: Store) -> None:
    # Every poll reads the whole window here (polls that read back less are tested below).
    wm = Watermark("test.source_rows", overlap=dt.timedelta(seconds=5),
                   recent=dt.timedelta(seconds=5))
    put(store, "A", 1, at(10))
    put(store, "B", 1, at(10))
    assert take(store, wm) == [("A", 1), ("B", 1)]
    assert take(store, wm) == [], "nothing is read twice"
    put(store, "C", 1, at(7))    # committed late: stamped before the last row we saw
    put(store, "D", 1, at(10))   # stamped in the same instant as the last row we saw
    assert take(store, wm) == [("C", 1), ("D", 1)]
    put(store, "A", 2, at(12))   # a new version of a row already taken
    assert take(store, wm) == [("A", 2)]
    with store.begin() as conn:
        assert wm.position(conn) == at(12)


def test_a_window_full_of_seen_rows_does_not_stall_the_stream(store: Store) -> None:
    wm = Watermark("test.source_rows", overlap=dt.timedelta(seconds=60))
    for i in range(25):
        put(store, f"K{i:03}", 1, at(10))
    taken: list[tuple[str, int]] = []
    for _ in range(5):
        taken += take(store, wm, limit=10)
    assert len(taken) == 25 == len(set(taken))
    put(store, "Z", 1, at(11))
    assert take(store, wm, limit=10) == [("Z", 1)]


def test_the_position_never_moves_back_and_old_seen_rows_are_pruned(store: Store) -> None:
    # Seen rows are kept for twice the longer window; no sweep here: twice the overlap.
    wm = Watermark("test.source_rows", overlap=dt.timedelta(seconds=5), sweep=dt.timedelta(0))
    put(store, "A", 1, at(100))
    take(store, wm)
    put(store, "B", 1, at(97))
    assert take(store, wm) == [("B", 1)]
    with store.begin() as conn:
        assert wm.position(conn) == at(100)
    put(store, "C", 1, at(200))
    take(store, wm)
    from hub.store.tables import watermark_seen
    with store.begin() as conn:
        keys = {r.row_key for r in conn.execute(select(watermark_seen.c.row_key))}
    assert keys == {"C"}


def test_a_commit_later_than_the_overlap_is_found_by_the_sweep(store: Store) -> None:
    """Found by the fault suite: an ERP clerk's UPDATE stamped at t waited 15 s for locks and
    committed after the poller's 10 s overlap had moved past t."""
    wm = Watermark("test.swept", overlap=dt.timedelta(seconds=5),
                   sweep=dt.timedelta(seconds=60), sweep_every=dt.timedelta(hours=1))
    put(store, "A", 1, at(10))
    assert take(store, wm) == [("A", 1)]  # the first poll sweeps
    put(store, "B", 1, at(30))
    assert take(store, wm) == [("B", 1)]
    put(store, "L", 1, at(12))            # stamped 18 s before the position, committed now
    assert take(store, wm) == [], "outside the overlap: a plain poll misses it"
    wm.sweep_every = dt.timedelta(0)      # the next sweep is due
    assert take(store, wm) == [("L", 1)]
    assert take(store, wm) == [], "nothing is read twice, the sweep neither"
    put(store, "M", 1, at(-40))           # later than the sweep reaches: missed (documented)
    assert take(store, wm) == []


def test_a_sweep_larger_than_a_page_goes_on_until_done(store: Store) -> None:
    wm = Watermark("test.swept_pages", overlap=dt.timedelta(seconds=1),
                   sweep=dt.timedelta(seconds=600), sweep_every=dt.timedelta(hours=1))
    put(store, "Z", 1, at(500))
    assert take(store, wm) == [("Z", 1)]
    for n in range(7):
        put(store, f"K{n}", 1, at(100 + n))  # all late, far behind the position
    wm.sweep_every = dt.timedelta(0)
    first = take(store, wm, limit=3)
    wm.sweep_every = dt.timedelta(hours=1)  # not due by time: it goes on because unfinished
    rest = take(store, wm, limit=3) + take(store, wm, limit=3)
    assert sorted(k for k, _ in first + rest) == [f"K{n}" for n in range(7)]
    assert take(store, wm, limit=3) == []


def counting(store: Store, reads: list[int]):  # type: ignore[no-untyped-def]
    """:func:`fetcher`, adding the number of rows each page read to ``reads``."""
    fetch = fetcher(store)

    def counted(lower: dt.datetime | None, after: tuple[dt.datetime, str] | None,
                limit: int) -> Sequence[Change[int]]:
        page = fetch(lower, after, limit)
        reads.append(len(page))
        return page
    return counted


def test_a_backlog_stamped_in_one_instant_drains_in_linear_reads(store: Store) -> None:
    """Found by the order benchmark: 20,000 CRM orders loaded in a few seconds all sat in
    the overlap window, and every page re-read the window from its start (the poller's
    rate fell from 600 to 50 orders/s as it went)."""
    wm = Watermark("test.backlog", overlap=dt.timedelta(seconds=60), sweep=dt.timedelta(0))
    for i in range(95):
        put(store, f"K{i:03}", 1, at(10 + i / 1000))
    reads: list[int] = []
    taken: list[str] = []
    while True:
        with store.begin() as conn:
            changes = wm.poll(conn, counting(store, reads), limit=10)
            wm.commit(conn, changes)
        taken += [c.key for c in changes]
        if len(changes) < 10:
            break
    assert taken == [f"K{i:03}" for i in range(95)], "each once, in order"
    assert sum(reads) <= 2 * 95 + 20, f"read {sum(reads)} rows for 95: {reads}"
    # Caught up, the next poll reads the whole window again and finds a late commit in it.
    put(store, "LATE", 1, at(10.0005))
    with store.begin() as conn:
        assert [c.key for c in wm.poll(conn, fetcher(store), limit=10)] == ["LATE"]


class CountingSeen(Watermark):
    """A watermark that counts the seen rows each page of a poll reads back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen_rows: list[int] = []

    def _seen(self, conn: Connection, page: Sequence[Change[Any]]) -> set[tuple[str, str]]:
        found = super()._seen(conn, page)
        self.seen_rows.append(len(found))
        return found


def test_the_seen_rows_read_for_a_page_are_the_pages_own(store: Store) -> None:
    """Found by the order benchmark: each page of a backlog stamped in one instant read
    back every row taken in that second, so the seen-set reads grew with the backlog."""
    wm = CountingSeen("test.seen", overlap=dt.timedelta(seconds=60), sweep=dt.timedelta(0))
    for i in range(60):
        put(store, f"K{i:03}", 1, at(10 + i / 1_000_000))
    while len(take(store, wm, limit=10)) == 10:
        pass
    put(store, "K000", 2, at(10.00007))  # a new version: the old one is in the seen-set
    wm.seen_rows.clear()
    assert take(store, wm, limit=10) == [("K000", 2)]
    assert wm.seen_rows and max(wm.seen_rows) <= 10, wm.seen_rows


def test_a_backlog_poll_that_is_not_committed_is_read_again(store: Store) -> None:
    wm = Watermark("test.uncommitted", overlap=dt.timedelta(seconds=60), sweep=dt.timedelta(0))
    for i in range(30):
        put(store, f"K{i:03}", 1, at(10))
    assert len(take(store, wm, limit=10)) == 10
    assert len(take(store, wm, limit=10)) == 10  # from the cursor
    with store.begin() as conn:
        lost = wm.poll(conn, fetcher(store), limit=10)  # its transaction fails: no commit
    assert [c.key for c in lost] == [f"K{i:03}" for i in range(20, 30)]
    again = take(store, wm, limit=10) + take(store, wm, limit=10)
    assert sorted(k for k, _ in again) == [f"K{i:03}" for i in range(20, 30)]


def test_a_backlog_poll_whose_transaction_rolls_back_is_read_again(store: Store) -> None:
    wm = Watermark("test.rolled_back", overlap=dt.timedelta(seconds=10), sweep=dt.timedelta(0))
    stamps = [i / 10 for i in range(20)] + [2 + i / 10 for i in range(10)] + [
        20 + i / 10 for i in range(10)] + [40.0]
    for i, stamp in enumerate(stamps):
        put(store, f"K{i:03}", 1, at(stamp))
    taken = [k for k, _ in take(store, wm, limit=10)]
    with pytest.raises(RuntimeError), store.begin() as conn:
        changes = wm.poll(conn, fetcher(store), limit=10)
        assert [c.key for c in changes][:1] == ["K010"]
        wm.commit(conn, changes)
        raise RuntimeError("the outbox insert failed")  # rolled back after commit()
    for _ in range(6):  # by the time the poll caught up, K010-K019 lie outside its window
        taken += [k for k, _ in take(store, wm, limit=10)]
    assert sorted(taken) == [f"K{i:03}" for i in range(len(stamps))]


def test_a_page_with_more_unseen_rows_than_room_leaves_none_behind(store: Store) -> None:
    wm = Watermark("test.overflow", overlap=dt.timedelta(seconds=60), sweep=dt.timedelta(0))
    for i in range(0, 20, 2):
        put(store, f"K{i:03}", 1, at(10))
    assert len(take(store, wm, limit=4)) == 4  # K000-K006 taken
    for i in range(1, 20, 2):
        put(store, f"K{i:03}", 1, at(10))  # new rows between and after the taken ones
    taken: list[str] = []
    for _ in range(8):
        taken += [k for k, _ in take(store, wm, limit=4)]
    assert sorted(taken) == sorted({f"K{i:03}" for i in range(20)} - {
        "K000", "K002", "K004", "K006"})
    assert len(taken) == len(set(taken))


def _seen_set_keys(statement: str, parameters: Any) -> int | None:
    """How many keys a statement looks up in the seen-set; None for another statement. A
    placeholder per key and one for the source (SQLite), or one array of keys (PostgreSQL)."""
    if "FROM watermark_seen" not in statement or not (" IN (" in statement
                                                       or "ANY (" in statement):
        return None
    arrays = [v for v in parameters.values() if isinstance(v, list)] \
        if isinstance(parameters, dict) else []
    return len(arrays[0]) if arrays else len(parameters) - 1


def test_a_backlog_beyond_the_position_is_not_looked_up_in_the_seen_set(store: Store) -> None:
    """Found by profiling a 20,000-order drain: looking each page up in the seen-set was a
    tenth of the daemon's time, for changes stamped after anything ever taken."""
    wm = Watermark("test.beyond", overlap=dt.timedelta(seconds=5), sweep=dt.timedelta(0))
    for i in range(30):
        put(store, f"K{i:03}", 1, at(10 + 2 * i))  # 2 s apart: beyond the 1 s of slack
    reads: list[int] = []  # keys looked up, per read of the seen-set

    def count(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if (keys := _seen_set_keys(statement, parameters)) is not None:
            reads.append(keys)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        taken = take(store, wm, limit=10) + take(store, wm, limit=10) + take(store, wm, limit=10)
        assert [k for k, _ in taken] == [f"K{i:03}" for i in range(30)]
        # Only what the window re-reads lies at or before the position: 4 changes of the
        # 7.5 s a whole window reaches back (the overlap and half again), not the 10 of a page.
        assert reads and max(reads) <= 4, reads
        reads.clear()
        put(store, "LATE", 1, at(65))  # within the window, before the position (at(68))
        assert take(store, wm, limit=10) == [("LATE", 1)]
        assert reads, "a change stamped before the position is looked up"
        assert take(store, wm, limit=10) == [], "and nothing is taken twice"
    finally:
        event.remove(store.engine, "before_cursor_execute", count)


def test_what_a_poller_saw_committed_is_not_read_back_from_the_store(store: Store) -> None:
    """Found by pg_stat_statements during a drain: once caught up, every poll looked its
    whole overlap window up in the seen-set (500,000 rows read back for 20,000 orders)."""
    wm = Watermark("test.memory", overlap=dt.timedelta(seconds=30), sweep=dt.timedelta(0))
    for i in range(20):
        put(store, f"K{i:03}", 1, at(10 + i / 10))
    reads: list[int] = []

    def count(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if (keys := _seen_set_keys(statement, parameters)) is not None:
            reads.append(keys)

    def confirmed_take() -> list[tuple[str, int]]:
        taken = take(store, wm)
        wm.committed()  # as the poller does once the poll's transaction has committed
        return taken

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        assert len(confirmed_take()) == 20
        reads.clear()
        put(store, "K005", 2, at(11))  # a new version, inside the window
        assert confirmed_take() == [("K005", 2)]
        assert reads == [1], "a change it does not know of is looked up"
        reads.clear()
        assert confirmed_take() == []
        assert reads == [], "every change in the window was this watermark's own"
        # A poll whose transaction rolls back is not vouched for: read again, and taken.
        put(store, "R", 1, at(12))
        with pytest.raises(RuntimeError), store.begin() as conn:
            wm.commit(conn, wm.poll(conn, fetcher(store)))
            raise RuntimeError("the outbox insert failed")
        assert confirmed_take() == [("R", 1)]
        assert reads == [1, 1], "looked up by both polls"
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    # Another process (a fresh watermark) knows nothing of it: the store answers, the same.
    other = Watermark("test.memory", overlap=dt.timedelta(seconds=30), sweep=dt.timedelta(0))
    with store.begin() as conn:
        assert other.poll(conn, fetcher(store)) == []


def test_caught_up_polls_read_back_a_little_and_the_whole_window_now_and_then(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by profiling a drain: re-listing the whole 10 s window of a source written 250
    times a second, at every poll, was a tenth of the daemon's work and the CRM's biggest
    read. A late commit is still found, by the next whole read."""
    clock = [1000.0]
    monkeypatch.setattr("hub.watermark.time.monotonic", lambda: clock[0])
    wm = Watermark("test.quick", overlap=dt.timedelta(seconds=10), sweep=dt.timedelta(0))
    for i in range(20):
        put(store, f"K{i:03}", 1, at(10 + i / 2))  # up to at(19.5)
    lowers: list[dt.datetime | None] = []

    def poll(*, confirm: bool = True) -> list[tuple[str, int]]:
        read = fetcher(store)

        def fetch(lower: dt.datetime | None, after: tuple[dt.datetime, str] | None,
                  limit: int) -> Sequence[Change[int]]:
            lowers.append(lower)
            return read(lower, after, limit)  # type: ignore[no-any-return]

        with store.begin() as conn:
            changes = wm.poll(conn, fetch)
            wm.commit(conn, changes)
        if confirm:
            wm.committed()
        return [(c.key, c.row) for c in changes]

    assert len(poll()) == 20 and lowers == [None]
    clock[0] += 1
    assert poll() == [] and lowers[-1] == at(17.5), "2 s back from the position"
    put(store, "LATE", 1, at(14))  # committed late: 5.5 s before the position
    clock[0] += 1
    assert poll() == [], "not in the last 2 s"
    clock[0] += 3.5  # 5.5 s after the last whole read: half the overlap has passed
    assert poll() == [("LATE", 1)]
    assert lowers[-1] == at(19.5 - 15), "the overlap, and the time between whole reads"
    clock[0] += 1
    assert poll() == [] and lowers[-1] == at(17.5)
    # A poll that took something and was not confirmed committed: the whole window next.
    put(store, "NEW", 1, at(20))
    assert poll(confirm=False) == [("NEW", 1)] and lowers[-1] == at(17.5)
    assert poll() == [] and lowers[-1] == at(20 - 15)


def test_a_window_read_again_is_listed_in_longer_pages_a_backlog_in_pages_of_the_limit(
        store: Store) -> None:
    """Found by counting a drain's listings: the ERP poller listed 154,000 orders for 19,500
    new ones, most of them in whole windows read again a page of ``limit`` at a time (and
    each page of the ERP's orders groups the rest of the window). A poll that lists keys
    only (``load``) doubles its page while the pages are mostly seen; a backlog, all
    unseen, keeps pages of ``limit``, and nothing is missed or taken twice either way."""
    wm = Watermark("test.pages", overlap=dt.timedelta(seconds=60), recent=dt.timedelta(seconds=60),
                   sweep=dt.timedelta(0))
    for i in range(100):
        put(store, f"K{i:03}", 1, at(10 + i / 100))
    sizes: list[int] = []
    read = fetcher(store)

    def fetch(lower: dt.datetime | None, after: tuple[dt.datetime, str] | None,
              limit: int) -> Sequence[Change[int]]:
        sizes.append(limit)
        return read(lower, after, limit)  # type: ignore[no-any-return]

    def poll() -> list[str]:
        with store.begin() as conn:
            changes = wm.poll(conn, fetch, limit=5, load=lambda changes: changes)
            wm.commit(conn, changes)
        wm.committed()
        return [c.key for c in changes]

    taken: list[str] = []
    while batch := poll():
        taken += batch
    assert taken == [f"K{i:03}" for i in range(100)], "each once, in order"
    # The second poll reads the window again (the first had no position to go on from):
    # its first page is all seen, so its second is longer. After that, pages of the limit.
    assert sizes == [5, 5, 10] + [5] * (len(sizes) - 3), sizes

    sizes.clear()
    put(store, "LATE", 1, at(10.905))  # committed late, near the end of the window
    assert poll() == ["LATE"]
    assert sizes == [5, 10, 20, 40, 40], "mostly seen pages: longer, up to 8 times the limit"
    assert poll() == []


def test_a_page_after_a_cursor_reads_its_index_from_the_cursor(pg_store: Store) -> None:
    """Found by the order benchmark: with only ``lower`` bounding the index, every page of a
    backlog read the overlap window before its cursor from the change-time index and threw
    it away (8,684 rows a page in a CRM of 20,000 orders)."""
    rows = Table("window_rows", MetaData(), Column("key", String(20), primary_key=True),
                 Column("version", Integer, nullable=False),
                 Column("modified_at", UtcDateTime, nullable=False, index=True))
    rows.create(pg_store.engine)
    try:
        with pg_store.begin() as conn:
            conn.execute(rows.insert(), [{"key": f"K{i:05}", "version": 1,
                                          "modified_at": at(i / 100)} for i in range(4000)])
            conn.exec_driver_sql("ANALYZE window_rows")
            cursor = (at(30), "K03000")  # 3,000 rows of the window lie before it
            query = window(select(rows.c.key), rows.c.modified_at, rows.c.key, at(0), cursor,
                           100)
            keys = [r.key for r in conn.execute(query)]
            plan = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + str(query.compile(
                    conn, compile_kwargs={"literal_binds": True}))).scalar_one()
        assert keys == [f"K{i:05}" for i in range(3001, 3101)]

        def removed(node: dict[str, Any]) -> int:
            return int(node.get("Rows Removed by Filter", 0)) + sum(
                removed(child) for child in node.get("Plans", []))

        assert removed(plan[0]["Plan"]) < 10, plan
    finally:
        rows.drop(pg_store.engine)
