"""Writing many rows at once: inserts in order, existing keys skipped and counted, updates
by key; on every store dialect."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select

from hub.store import Store, utcnow
from hub.store.bulk import insert_ignore, insert_many, one_of, update_many
from hub.store.tables import component, id_xref, journal, outbox, sync_state


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
        # One statement for each call of many rows: the values travel as one document.
        assert len(statements) == 3, statements
        assert "json_populate_recordset" in statements[0]


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


def test_rows_inserted_together_take_their_ids_in_the_order_given(store: Store) -> None:
    """The relay sends the outbox in id order: one key's messages must keep theirs."""
    now = utcnow()
    keys = [f"m{(i * 7919) % 1000:04}" for i in range(1000)]  # not in sorted order
    with store.begin() as conn:
        insert_many(conn, outbox, [
            {"message_id": key, "routing_key": "crm.order.changed.p0", "type": "t",
             "correlation_key": "SO-1", "body": "{}", "created_at": now, "attempts": 0,
             "occurred_at": None} for key in keys])
        insert_many(conn, journal, [
            {"at": now, "event": "published", "duration_ms": 1.5, "detail": None,
             "message_id": key} for key in keys[:3]])
        insert_many(conn, journal, [])
    with store.begin() as conn:
        assert list(conn.scalars(select(outbox.c.message_id).order_by(outbox.c.id))) == keys
        assert conn.scalar(select(func.sum(journal.c.duration_ms))) == 4.5


def test_rows_are_updated_by_their_keys_with_what_all_of_them_get(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        insert_many(conn, sync_state, [
            {"kind": kind, "canonical_id": f"c{i}", "state": "old", "versions": "{}",
             "updated_at": now} for kind in ("order", "party") for i in range(300)])
        insert_many(conn, outbox, [
            {"message_id": f"m{i}", "routing_key": "r", "type": "t", "correlation_key": "k",
             "body": "{}", "created_at": now, "attempts": 1} for i in range(3)])
    later = utcnow()
    with store.begin() as conn:
        update_many(conn, sync_state, ("kind", "canonical_id"), [
            {"kind": "order", "canonical_id": f"c{i}", "state": f"new {i}", "versions": "v"}
            for i in [*range(0, 300, 2), 999]], {"updated_at": later})  # c999: not there
        update_many(conn, outbox, ("message_id",), [
            {"message_id": "m0", "routing_key": "r0"}, {"message_id": "m2", "routing_key": "r2"},
        ], {"attempts": outbox.c.attempts + 1})
        update_many(conn, outbox, ("message_id",), [])
    with store.begin() as conn:
        rows = {(r.kind, r.canonical_id): r for r in conn.execute(select(sync_state))}
        sent = {r.message_id: (r.routing_key, r.attempts) for r in conn.execute(select(outbox))}
    assert len(rows) == 600
    assert (rows["order", "c4"].state, rows["order", "c4"].versions) == ("new 4", "v")
    assert rows["order", "c4"].updated_at == later
    assert (rows["order", "c5"].state, rows["order", "c5"].updated_at) == ("old", now)
    assert rows["party", "c4"].state == "old", "the whole key must match"
    assert sent == {"m0": ("r0", 2), "m1": ("r", 1), "m2": ("r2", 2)}


def test_any_text_and_values_json_cannot_carry_arrive_unchanged(store: Store) -> None:
    now = utcnow()
    tricky = 'quote " backslash \\ brace {a,b} tab \t newline \n 中文 null \\u0000'
    with store.begin() as conn:
        insert_many(conn, journal, [
            {"at": now, "event": "e", "detail": tricky, "duration_ms": 0.25, "message_id": "a"},
            {"at": now, "event": "e", "detail": None, "duration_ms": None, "message_id": "b"}])
        # NaN is no JSON: these go the plain way, and arrive all the same.
        insert_many(conn, journal, [
            {"at": now, "event": "nan", "detail": "x", "duration_ms": float("nan"),
             "message_id": m} for m in "cd"])
    with store.begin() as conn:
        got = {r.message_id: r for r in conn.execute(select(journal))}
    assert got["a"].detail == tricky and got["a"].duration_ms == 0.25 and got["a"].at == now
    assert got["b"].detail is None and got["b"].duration_ms is None
    assert got["c"].detail == "x"
    if store.dialect == "postgresql":  # SQLite keeps NaN as NULL
        assert got["c"].duration_ms != got["c"].duration_ms


def test_one_of_matches_the_values_given_with_the_same_statement_for_any_number(
        store: Store) -> None:
    """Found by profiling a drain: an IN list is new statement text for every length, which
    psycopg parsed again at every call. On PostgreSQL the values go as one array."""
    with store.begin() as conn:
        insert_many(conn, id_xref, xrefs(700))
    statements: set[str] = set()

    def keep(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "FROM id_xref" in statement:
            statements.add(statement)

    event.listen(store.engine, "before_cursor_execute", keep)
    try:
        with store.begin() as conn:
            def found(keys: list[str]) -> set[str]:
                return set(conn.scalars(select(id_xref.c.canonical_id).where(
                    id_xref.c.system == "erp", one_of(conn, id_xref.c.local_key, keys))))

            assert found(["3/1", "699/1", "nope"]) == {"c3", "c699"}
            assert found([f"{i}/1" for i in range(0, 700, 2)]) == {
                f"c{i}" for i in range(0, 700, 2)}
            assert found([]) == set()
            ids = list(conn.scalars(select(id_xref.c.id).where(
                one_of(conn, id_xref.c.canonical_id, ["c1", "c2"]))))
            assert len(set(conn.scalars(select(id_xref.c.id).where(
                one_of(conn, id_xref.c.id, ids))))) == 2  # an integer column too
    finally:
        event.remove(store.engine, "before_cursor_execute", keep)
    if store.dialect == "postgresql":
        # One text per query, whatever the number of values: by key (3 lengths), by
        # canonical id, by id.
        assert len(statements) == 3, statements
        assert all("ANY (" in s for s in statements)


def test_one_of_finds_keys_holding_what_array_text_must_quote(store: Store) -> None:
    """On PostgreSQL the values go as the text of an array: a key with a quote, a backslash,
    braces, a comma, spaces, the word NULL, an empty key or any other script must be found
    as itself, and only as itself."""
    tricky = ['q"uote', "back\\slash", "{brace}", "a,b", " spaced ", "NULL", "null", "",
              "中文 キー", "tab\tnew\nline", "\\\"", "plain"]
    now = utcnow()
    with store.begin() as conn:
        insert_many(conn, id_xref, [
            {"kind": "order", "canonical_id": f"c{i}", "system": "erp", "local_key": key,
             "created_at": now} for i, key in enumerate(tricky)])
    with store.begin() as conn:
        for i, key in enumerate(tricky):
            assert list(conn.scalars(select(id_xref.c.canonical_id).where(
                id_xref.c.kind == "order", one_of(conn, id_xref.c.local_key, [key, None])))
            ) == [f"c{i}"], key
        assert set(conn.scalars(select(id_xref.c.canonical_id).where(
            id_xref.c.kind == "order", one_of(conn, id_xref.c.local_key, tricky)))) == {
            f"c{i}" for i in range(len(tricky))}
        assert list(conn.scalars(select(id_xref.c.canonical_id).where(
            id_xref.c.kind == "order", one_of(conn, id_xref.c.local_key, ["brace", "a", "b"]))
        )) == []


def test_one_of_sends_the_array_itself_for_the_planner_to_read(pg_store: Store) -> None:
    """Found when 100 orders/s stalled: text cast to an array in SQL is an expression, which
    PostgreSQL evaluates again for every row a filter tests; a plan made while the table
    was small (a sequential scan) then took a second a query. The parameter must reach the
    planner as an array constant, for text and integer columns alike."""
    with pg_store.begin() as conn:
        insert_many(conn, id_xref, xrefs(3))
        for column, values in ((id_xref.c.local_key, ["1/1", 'q"uote']),
                               (id_xref.c.id, [1, 2])):
            query = select(id_xref.c.canonical_id).where(one_of(conn, column, values))
            compiled = query.compile(dialect=conn.dialect)
            plan = "\n".join(conn.exec_driver_sql(
                f"EXPLAIN (VERBOSE) {compiled}", compiled.params).scalars())
            assert "CAST" not in str(compiled) and "::" not in str(compiled), compiled
            array = ("'{1/1,\"q\\\"uote\"}'::text[]" if column is id_xref.c.local_key
                     else "'{1,2}'::bigint[]")
            assert array in plan, plan
