"""The hub keeps its tables' planner statistics fresh while they grow (PostgreSQL)."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import Connection, text

from hub.store import Store
from hub.store.statistics import refresh_statistics
from hub.sync.xref import Xref

#: How the hub finds the orders of a page (Xref.canonical_many), for 20 of them.
LOOKUP = ("EXPLAIN SELECT canonical_id FROM id_xref WHERE kind = 'order' AND system = 'crm' "
          "AND local_key IN ({})").format(", ".join(f"'O-{n}'" for n in range(20)))


def _plan(conn: Connection) -> str:
    return "\n".join(conn.execute(text(LOOKUP)).scalars())


def _bind_orders(store: Store, count: int) -> None:
    with store.begin() as conn:
        for n in range(count):
            cid = str(uuid.uuid4())
            Xref.bind(conn, "order", cid, crm=f"O-{n}", erp=str(n))
            Xref.bind(conn, "order_line", Xref.child(cid, 1), crm=f"O-{n}/1", erp=f"{n}/0")


def test_a_table_that_grew_is_analyzed_and_its_lookups_use_the_key(pg_store: Store) -> None:
    _bind_orders(pg_store, 3000)  # 12,000 cross-references, never analyzed
    with pg_store.begin() as conn:
        # The plan made without statistics: every 'order'/'crm' row read, the keys a filter.
        assert "Filter" in _plan(conn)
    deadline = time.monotonic() + 15  # a backend reports its changes within about a second
    analyzed: list[str] = []
    while "id_xref" not in analyzed and time.monotonic() < deadline:
        with pg_store.begin() as conn:
            analyzed = refresh_statistics(conn)
        time.sleep(0.2)
    assert "id_xref" in analyzed
    with pg_store.begin() as conn:
        plan = _plan(conn)
        assert "Filter" not in plan and "local_key" in plan.split("Index Cond")[1], plan
        # Analyzed now, and not again until it changes as much once more.
        assert "id_xref" not in refresh_statistics(conn)


def test_small_changes_and_other_tables_are_left_to_autovacuum(pg_store: Store) -> None:
    with pg_store.begin() as conn:
        conn.execute(text("CREATE TABLE someone_elses (n integer)"))
        conn.execute(text("INSERT INTO someone_elses SELECT generate_series(1, 5000)"))
    _bind_orders(pg_store, 100)  # 400 rows: under the floor
    time.sleep(2)
    with pg_store.begin() as conn:
        assert refresh_statistics(conn) == []
        analyzed = conn.execute(text(
            "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")).all()
    assert analyzed == []


def test_nothing_to_do_off_postgresql(sqlite_store: Store) -> None:
    _bind_orders(sqlite_store, 600)
    with sqlite_store.begin() as conn:
        assert refresh_statistics(conn) == []
