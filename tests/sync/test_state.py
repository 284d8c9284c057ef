"""SyncState's light read: versions and whole sides without parsing the whole state."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

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
