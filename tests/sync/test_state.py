"""SyncState's light read: versions and whole sides without parsing the whole state."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
from sqlalchemy import update

from hub.model.records import OrderLine
from hub.store import Store
from hub.store.tables import sync_state
from hub.sync.state import Side, SyncState


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Store:
    s: Store = request.getfixturevalue("sqlite_store" if request.param == "sqlite"
                                       else "pg_store")
    return s


def test_versions_and_whole_sides_read_without_the_fields(store: Store) -> None:
    states = [SyncState("order", f"c{i}", {"crm": Side("7", {"lines": [1, 2]}),
                                           "erp": Side(f"2026-11-24T10:00:0{i}", {"x": 1},
                                                       whole=i % 2 == 0)})
              for i in range(4)]
    with store.begin() as conn:
        SyncState.save_many(conn, states[:3])
        states[3].save(conn)
        # A state saved before versions said which sides are whole: read whole instead.
        conn.execute(update(sync_state).where(sync_state.c.canonical_id == "c3")
                     .values(versions=json.dumps({"crm": "7", "erp": "old"})))
    with store.begin() as conn:
        known = SyncState.versions_many(conn, "order", ["c0", "c1", "c3", "c0", "nope"])
    assert set(known) == {"c0", "c1", "c3"}, "no state, no entry"
    assert known["c0"]["erp"] == Side("2026-11-24T10:00:00", {}, whole=True)
    assert known["c1"]["erp"] == Side("2026-11-24T10:00:01", {}, whole=False)
    assert known["c1"]["crm"] == Side("7", {}, whole=False)
    assert known["c3"]["erp"] == Side("2026-11-24T10:00:03", {}, whole=False), \
        "taken from the state itself"
    # A full load sees the same versions and wholeness.
    with store.begin() as conn:
        full = SyncState.load_many(conn, "order", ["c0", "c1"])
    for cid in ("c0", "c1"):
        assert {n: (s.version, s.whole) for n, s in full[cid].sides.items()} == {
            n: (s.version, s.whole) for n, s in known[cid].items()}


def test_the_line_cross_reference_is_kept_and_restored_with_a_lost_write(store: Store) -> None:
    state = SyncState("order", "c9", {"crm": Side("3", {"notes": "a"})})
    state.bind_lines([_line(10, 0), _line(20, 1), _line(None, 2)])
    with store.begin() as conn:
        state.save(conn)
    with store.begin() as conn:
        loaded = SyncState.load(conn, "order", "c9")
    assert loaded.lines == {0: 10, 1: 20}, "a line without both numbers is not bound"
    assert set(loaded.sides) == {"crm"}, "the lines are not a side"
    # A write remembered before its target committed, then lost: its lines go with it.
    before = loaded.snapshot()
    loaded.bind_lines([_line(30, 1)])
    loaded.side("erp").version = "9"
    loaded.pending(before, "erp")
    with store.begin() as conn:
        loaded.save(conn)
    with store.begin() as conn:
        lost = SyncState.load(conn, "order", "c9")
    assert lost.lines == {0: 10, 1: 30}
    assert lost.settle(None), "the ERP does not hold the write"
    assert lost.lines == {0: 10, 1: 20} and set(lost.sides) == {"crm"}


def _line(line_no: int | None, erp_line: int) -> OrderLine:
    return OrderLine(line_no=line_no, erp_line=erp_line, product_code="ETAC-99",
                     quantity=D(1), unit_price=D(2))
