"""The ERP poller takes an order the hub created as its own write without reading it, and
still reads every change someone else makes, on both stacks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import select

from connectors.crm.schema import crm_order
from connectors.erp import orders as orders_module
from connectors.erp.common import doc_key, version_of
from connectors.erp.poller import own_orders
from connectors.erp.schema import ordr
from hub.demo.people import Line
from hub.store import Store
from hub.sync.orders import remember_written
from hub.sync.state import SyncState
from hub.sync.xref import Xref
from hub.watermark import Change, Watermark
from tests.helpers import wait_for
from tests.sync.conftest import Stack

LINES = [Line("ETAC-99", D("10"), D("1.25")), Line("MEK-995", D("5"), D("1.9"))]


def test_an_order_the_hub_created_is_not_read_back_by_the_poller(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[int] = []  # what the ERP poller read (ErpOrders.load reads with this)
    read = orders_module.read_orders

    def counting(conn: Any, mapping: Any, entries: Sequence[int]) -> Any:
        loaded.extend(entries)
        return read(conn, mapping, entries)

    monkeypatch.setattr(orders_module, "read_orders", counting)
    order_id = stack.sales().submit_order(stack.account(), LINES)

    def created() -> Any:
        with stack.erp.connect() as conn:
            return conn.execute(select(ordr.c.DocEntry, ordr.c.UpdateDate)
                                .where(order_id == ordr.c.U_CRM_ID)).one_or_none()

    wait_for(lambda: created() is not None, 30, "the order in the ERP")
    doc, stamp = created()

    def polled_past(moment: dt.datetime) -> bool:
        with stack.runtime.store.begin() as hub:
            position = Watermark("erp.ORDR").position(hub)
        return position is not None and position >= moment

    wait_for(lambda: polled_past(stamp), 30, "the ERP poller past the new order")
    assert doc not in loaded, "the hub's own new order was read back by the poller"

    stack.erp_user().confirm(doc)  # someone else's change: read and synced as always

    def status() -> str:
        with stack.crm.connect() as conn:
            return str(conn.execute(select(crm_order.c.status)
                                    .where(crm_order.c.order_id == order_id)).scalar_one())

    wait_for(lambda: status() == "confirmed", 30, "the confirmation in the CRM")
    assert doc in loaded


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Store:
    found: Store = request.getfixturevalue(
        "sqlite_store" if request.param == "sqlite" else "pg_store")
    return found


def test_only_a_version_the_hub_created_whole_counts_as_its_own(store: Store) -> None:
    """After an update the hub remembers only the fields it wrote; an edit someone made in
    the ERP before it, not yet polled, is in the version the update stamped, so that version
    must be read like anyone else's."""
    created, updated = (version_of(dt.datetime(2026, 11, 24, 9, 0, s)) for s in (1, 2))
    key = doc_key(7)

    def change(version: str) -> Change[None]:
        return Change(key, version, dt.datetime.fromisoformat(version), None)

    with store.begin() as hub:
        Xref.bind(hub, "order", "cid-7", crm="crm-7", erp=key)
        state = SyncState("order", "cid-7")
        remember_written(state.side("erp"), created, {"notes": "a"}, whole=True)
        state.save(hub)
        assert own_orders(hub, [change(created)]) == {(key, created)}
        assert own_orders(hub, [change(updated)]) == set(), "someone else's version"
        assert own_orders(hub, [Change(doc_key(8), created, change(created).changed_at,
                                        None)]) == set(), "an order the hub does not know"

        state = SyncState.load(hub, "order", "cid-7")
        remember_written(state.side("erp"), updated, {"notes": "b"})
        state.save(hub)
        assert own_orders(hub, [change(updated)]) == set(), "an update is read"
