"""insert_ignore: new rows in, existing keys skipped and counted, on every store dialect."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select

from hub.store import Store, utcnow
from hub.store.tables import component, id_xref, sync_state
from hub.store.upsert import insert_ignore


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Store:
    name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    s: Store = request.getfixturevalue(name)
    return s


def xrefs(n: int, start: int = 0) -> list[dict[str, Any]]:
    now = utcnow()
    return [{"kind": "order_line", "canonical_id": f"c{i}", "system": "erp",
             "local_key": f"{i}/1", "created_at": now} for i in range(start, start + n)]


def test_many_rows_go_in_once_and_existing_keys_are_skipped(store: Store) -> None:
    statements: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO id_xref"):
            statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        with store.begin() as conn:
            assert insert_ignore(conn, id_xref, xrefs(600)) == 600
        with store.begin() as conn:  # 300 known, 300 new
            assert insert_ignore(conn, id_xref, xrefs(600, start=300)) == 300
            assert insert_ignore(conn, id_xref, xrefs(1, start=900)) == 1
            assert insert_ignore(conn, id_xref, []) == 0
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    with store.begin() as conn:
        assert conn.scalar(select(func.count()).select_from(id_xref)) == 901
        row = conn.execute(select(id_xref).where(id_xref.c.local_key == "450/1")).one()
    assert (row.canonical_id, row.kind, row.system) == ("c450", "order_line", "erp")
    if store.dialect == "postgresql":
        # One statement for each call of many rows: the values travel as arrays.
        assert len(statements) == 3, statements
        assert "unnest" in statements[0]


def test_long_text_and_single_rows_go_in(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        assert insert_ignore(conn, sync_state, [
            {"kind": "order", "canonical_id": f"c{i}", "state": "{}" * 5000, "versions": "{}",
             "updated_at": now} for i in range(3)]) == 3
        assert insert_ignore(conn, component, [
            {"name": "a", "process": "p", "state": "up", "started_at": now,
             "heartbeat_at": now, "last_poll_at": now},
        ]) == 1
        assert insert_ignore(conn, component, [
            {"name": "a", "process": "q", "state": "up", "started_at": now,
             "heartbeat_at": now, "last_poll_at": None}]) == 0
    with store.begin() as conn:
        assert conn.scalar(select(func.count()).select_from(sync_state)) == 3
        assert conn.scalar(select(component.c.last_poll_at).where(component.c.name == "a")) == now
