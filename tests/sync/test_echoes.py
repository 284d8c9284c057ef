"""The pollers take the hub's own writes (an ERP order it created, a CRM order it answered)
without reading them, and still read every change someone else makes, on both stacks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import select

from connectors.crm.orders import CrmOrders
from connectors.crm.schema import crm_order
from connectors.erp import orders as erp_orders
from connectors.erp.common import doc_key, version_of
from connectors.erp.schema import ordr
from hub.demo.people import Line
from hub.store import Store
from hub.sync.orders import known_whole, remember_written
from hub.sync.state import SyncState
from hub.sync.xref import Xref
from hub.watermark import Change, Watermark
from tests.helpers import wait_for
from tests.sync.conftest import Stack

LINES = [Line("ETAC-99", D("10"), D("1.25")), Line("MEK-995", D("5"), D("1.9"))]


def test_the_hubs_own_writes_are_not_read_back_by_the_pollers(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    erp_read: list[int] = []  # what the ERP poller read (ErpOrders.load reads with this)
    crm_read: list[str] = []  # what the CRM poller read (CrmOrders.load reads with this)
    read_erp, read_crm = erp_orders.read_orders, CrmOrders._read_many

    def counting_erp(conn: Any, mapping: Any, entries: Sequence[int]) -> Any:
        erp_read.extend(entries)
        return read_erp(conn, mapping, entries)

    def counting_crm(self: CrmOrders, conn: Any, ids: Sequence[str]) -> Any:
        crm_read.extend(ids)
        return read_crm(self, conn, ids)

    monkeypatch.setattr(erp_orders, "read_orders", counting_erp)
    monkeypatch.setattr(CrmOrders, "_read_many", counting_crm)
    order_id = stack.sales().submit_order(stack.account(), LINES)

    def crm_now() -> Any:
        with stack.crm.connect() as conn:
            return conn.execute(select(crm_order).where(crm_order.c.order_id == order_id)).one()

    def erp_now() -> Any:
        with stack.erp.connect() as conn:
            return conn.execute(select(ordr).where(order_id == ordr.c.U_CRM_ID)).one_or_none()

    wait_for(lambda: crm_now().integration_status == "synced", 30, "the ERP's answer")
    created, answered = erp_now(), crm_now()
    wait_for(lambda: polled_past(stack, "erp.ORDR", created.UpdateDate), 30, "ERP poller")
    wait_for(lambda: polled_past(stack, "crm.crm_order", answered.modified_at), 30,
             "CRM poller")
    assert created.DocEntry not in erp_read, "the order the hub created was read back"
    assert crm_read.count(order_id) == 1, "the CRM order was read again after the answer"

    # Someone else's change on either side is read and synced as always.
    stack.erp_user().confirm(created.DocEntry)
    wait_for(lambda: crm_now().status == "confirmed", 30, "the confirmation in the CRM")
    assert created.DocEntry in erp_read
    stack.sales().edit(order_id, customer_po="PO-EDITED")
    wait_for(lambda: erp_now().U_CustPO == "PO-EDITED", 30, "the CRM edit in the ERP")
    assert crm_read.count(order_id) >= 2


def polled_past(stack: Stack, source: str, moment: dt.datetime) -> bool:
    with stack.runtime.store.begin() as hub:
        position = Watermark(source).position(hub)
    return position is not None and position >= moment


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
        assert known_whole(hub, [change(created)], "erp") == {(key, created)}
        assert known_whole(hub, [change(updated)], "erp") == set(), "someone else's version"
        assert known_whole(hub, [Change(doc_key(8), created, change(created).changed_at,
                                        None)], "erp") == set(), "an order the hub does not know"
        assert known_whole(hub, [change(created)], "crm") == set(), "another system's key"

        state = SyncState.load(hub, "order", "cid-7")
        remember_written(state.side("erp"), updated, {"notes": "b"})
        state.save(hub)
        assert known_whole(hub, [change(updated)], "erp") == set(), "an update is read"
