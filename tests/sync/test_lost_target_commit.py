"""A write the hub remembered before the target committed it, and the target then lost
(regression, issue 6, findings 6 and 7).

The appliers record what they write in the hub *before* the target commits, so the pollers
always recognise the hub's own writes. When the target loses that transaction (MariaDB
SIGKILLed before the commit, the applier's process killed), the hub's memory says more than
the target holds, and the retried message must not trust it:

- an order remembered under a DocEntry the ERP then gave to another order is still created,
  once, and each order keeps its own cross-reference (the retry used to take the other order
  for its own, see nothing to change and answer "synced": fault run 3 lost 12 orders so);
- the same for an ERP-entered order whose CRM copy was lost (it used to be dead-lettered);
- a change merged into an existing order is written when retried (the remembered write used
  to serve as the merge's base, so the change looked applied: fault run 5 left one CRM order
  on hold that the ERP had confirmed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select, text

from connectors.crm.schema import crm_order
from connectors.crm.sync import CrmApplier
from connectors.erp.common import doc_key
from connectors.erp.orders import ErpOrders
from connectors.erp.schema import ordr, rdr1
from connectors.erp.sync import ErpApplier
from hub.errors import DatabaseUnavailable
from hub.model.messages import OrderChanged, OrderStatusChanged, decode
from hub.store.tables import outbox
from hub.sync.state import PENDING, SyncState
from hub.sync.xref import Xref
from tests.connectors.erp.kit import order
from tests.sync.conftest import Stack, running


@pytest.fixture(params=["embedded", "real"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with running(request.param, tmp_path, parts=()) as built:
        yield built


def _changed(number: str) -> OrderChanged:
    return OrderChanged(correlation_key=number, source="crm", source_version="1",
                        order=order(order_number=number))


def _lose_erp_commits(applier: ErpApplier, monkeypatch: pytest.MonkeyPatch, times: int
                      ) -> None:
    """The ERP transaction is lost at its commit (after the hub remembered what it wrote),
    ``times`` times: a batch, then each of its orders alone as the applier falls back."""
    writer = applier._erp_writer
    left = [times]

    @contextmanager
    def begin_then_lose() -> Iterator[Connection]:
        with writer().connect() as conn:
            transaction = conn.begin()
            yield conn
            transaction.rollback()
            raise DatabaseUnavailable("ERP: the server went away during COMMIT")

    def losing_writer() -> Any:
        if left[0] <= 0:
            return writer()
        left[0] -= 1
        return SimpleNamespace(begin=begin_then_lose)

    monkeypatch.setattr(applier, "_erp_writer", losing_writer)


def _lose_crm_commit_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CRM applier remembers its write in the hub, then its CRM transaction is lost (the
    process killed, the server gone) before the commit; once."""
    remember, left = CrmApplier._remember, [1]

    def remember_then_lose(self: CrmApplier, *args: Any) -> None:
        remember(self, *args)
        if left[0] > 0:
            left[0] -= 1
            raise DatabaseUnavailable("CRM: the server went away during COMMIT")

    monkeypatch.setattr(CrmApplier, "_remember", remember_then_lose)


def _forget_numbers_taken(erp: Engine) -> None:
    """What a crash restart does to InnoDB's AUTO_INCREMENT: back to the highest row + 1 (a
    rolled-back insert on SQLite needs nothing: its rowid is the highest + 1 already)."""
    if erp.dialect.name in ("mysql", "mariadb"):
        with erp.begin() as conn:
            conn.execute(text("ALTER TABLE ORDR AUTO_INCREMENT = 1"))


def _erp_orders(erp: Engine) -> dict[str, tuple[int, int]]:
    """CRM id -> (DocEntry, number of lines) of every ERP order."""
    with erp.connect() as conn:
        lines = dict(conn.execute(select(rdr1.c.DocEntry, func.count())
                                  .group_by(rdr1.c.DocEntry)).all())
        return {row.U_CRM_ID: (row.DocEntry, lines.get(row.DocEntry, 0)) for row in
                conn.execute(select(ordr.c.U_CRM_ID, ordr.c.DocEntry))}


def _answers(stack: Stack) -> dict[str, int | None]:
    """CRM id -> the DocEntry the ERP applier's answers in the outbox name (the last one)."""
    with stack.runtime.store.begin() as conn:
        found = [decode(body) for body in conn.scalars(select(outbox.c.body)
                                                       .order_by(outbox.c.id))]
    return {m.crm_id or "": m.erp_doc_entry for m in found if isinstance(m, OrderStatusChanged)}


@pytest.mark.parametrize("together", [True, False], ids=["batch", "one-at-a-time"])
def test_an_order_remembered_under_a_reused_doc_entry_is_still_created(
        stack: Stack, monkeypatch: pytest.MonkeyPatch, together: bool) -> None:
    applier = ErpApplier(stack.runtime)
    lost = [_changed("SO-LOST-1"), _changed("SO-LOST-2")] if together else [
        _changed("SO-LOST-1")]
    _lose_erp_commits(applier, monkeypatch, 1 + len(lost) if together else 1)
    outcomes = applier.apply_batch(lost, [False] * len(lost))
    assert all(isinstance(o, DatabaseUnavailable) for o in outcomes), outcomes
    assert _erp_orders(stack.erp) == {}
    with stack.runtime.store.begin() as hub:
        remembered = {Xref.local(hub, "order", Xref.resolve(hub, "order", crm=m.order.crm_id),
                                 "erp") for m in lost} - {None}
    assert remembered, "the hub remembers what it wrote before the ERP commits"

    # The ERP restarts and hands the same DocEntries to the next orders.
    _forget_numbers_taken(stack.erp)
    others = [_changed(f"SO-OTHER-{n}") for n in range(1, 5)]
    assert applier.apply_batch(others, [False] * len(others)) == [None] * len(others)
    taken = _erp_orders(stack.erp)
    assert remembered <= {doc_key(taken[m.order.crm_id or ""][0]) for m in others}, (
        "the test needs the DocEntries reused")

    # The lost orders come back (redelivered): each is created, once, beside the others.
    outcomes = (applier.apply_batch(lost, [False] * len(lost)) if together
                else [applier.apply_batch([m], [False])[0] for m in lost])
    assert outcomes == [None] * len(lost)
    erp = _erp_orders(stack.erp)
    assert set(erp) == {m.order.crm_id for m in lost + others}
    assert all(count == 1 for _, count in erp.values()), erp
    assert len({entry for entry, _ in erp.values()}) == len(erp)
    assert {m.order.crm_id: erp[m.order.crm_id or ""][0] for m in others} == {
        m.order.crm_id: taken[m.order.crm_id or ""][0] for m in others}, "others untouched"
    answers = _answers(stack)
    with stack.runtime.store.begin() as hub:
        for m in lost + others:
            crm_id = m.order.crm_id or ""
            cid = Xref.resolve(hub, "order", crm=crm_id)
            assert Xref.local(hub, "order", cid, "erp") == doc_key(erp[crm_id][0]), crm_id
            assert Xref.canonical(hub, "order", "erp", doc_key(erp[crm_id][0])) == cid
            assert answers[crm_id] == erp[crm_id][0], crm_id


def test_an_erp_order_whose_crm_copy_was_lost_is_created_in_the_crm_once(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on the way back: an order entered in the ERP, created in the CRM, remembered
    in the hub, and the CRM transaction lost. It used to end in dead letters ("CRM order ...
    does not exist") instead of being created."""
    applier = CrmApplier(stack.runtime)
    _lose_crm_commit_once(monkeypatch)
    message = OrderChanged(correlation_key="ERP-1077", source="erp", source_version="v1",
                           order=order(order_number=None, crm_id=None, erp_doc_entry=77,
                                       erp_doc_num=1077))
    assert isinstance(applier.apply_batch([message], [False])[0], DatabaseUnavailable)
    with stack.crm.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(crm_order)) == 0
    assert applier.apply_batch([message], [False]) == [None]
    with stack.crm.connect() as conn:
        created = conn.execute(select(crm_order.c.order_id, crm_order.c.order_number)).all()
    assert [number for _, number in created] == ["ERP-1077"]
    with stack.runtime.store.begin() as hub:
        cid = Xref.resolve(hub, "order", erp=doc_key(77))
        assert Xref.local(hub, "order", cid, "crm") == created[0].order_id


def test_an_erp_change_whose_crm_write_was_lost_is_written_when_retried(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by full fault run 5 (finding 7): the ERP confirmed an order; the CRM applier
    remembered its write of ``confirmed`` in the hub and was SIGKILLed before the CRM
    committed. The retried
    change then merged against the remembered write as base, found the ERP's change already
    applied (and the CRM's older status a CRM edit), and wrote nothing: the CRM kept
    ``on_hold`` for good."""
    applier = CrmApplier(stack.runtime)
    entered = order(order_number=None, crm_id=None, erp_doc_entry=78, erp_doc_num=1078,
                    status="on_hold")
    first = OrderChanged(correlation_key="ERP-1078", source="erp",
                         source_version="2026-11-24T03:10:57.703200", order=entered)
    assert applier.apply_batch([first], [False]) == [None]
    confirmed = OrderChanged(
        correlation_key="ERP-1078", source="erp", source_version="2026-11-24T03:10:58.753670",
        order=entered.model_copy(update={"status": "confirmed",
                                         "promised_date": dt.date(2026, 12, 24)}))
    _lose_crm_commit_once(monkeypatch)
    assert isinstance(applier.apply_batch([confirmed], [False])[0], DatabaseUnavailable)
    with stack.crm.connect() as conn:
        assert conn.execute(select(crm_order.c.status)).scalar_one() == "on_hold"
    assert applier.apply_batch([confirmed], [False]) == [None]  # redelivered
    with stack.crm.connect() as conn:
        row = conn.execute(select(crm_order.c.status, crm_order.c.promised_date)).one()
    assert (row.status, row.promised_date) == ("confirmed", dt.date(2026, 12, 24))
    with stack.runtime.store.begin() as hub:
        state = SyncState.load(hub, "order", Xref.resolve(hub, "order", erp=doc_key(78)))
    assert PENDING not in state.sides, "settled once the CRM committed"


def test_a_crm_edit_whose_erp_write_was_lost_is_written_when_retried(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on the ERP side: a CRM edit merged into the ERP order, remembered, and the
    ERP transaction lost. The retry must not take the remembered write for the ERP's state."""
    applier = ErpApplier(stack.runtime)
    created = _changed("SO-EDITED-1")
    assert applier.apply_batch([created], [False]) == [None]
    edited = OrderChanged(correlation_key="SO-EDITED-1", source="crm", source_version="2",
                          order=created.order.model_copy(update={"customer_po": "PO-CHANGED"}))
    _lose_erp_commits(applier, monkeypatch, 1)
    assert isinstance(applier.apply_batch([edited], [False])[0], DatabaseUnavailable)
    doc = _erp_orders(stack.erp)[created.order.crm_id or ""][0]
    with stack.erp.connect() as conn:
        assert ErpOrders().read(conn, doc).customer_po == "PO-4711"  # type: ignore[union-attr]
    assert applier.apply_batch([edited], [False]) == [None]  # redelivered
    with stack.erp.connect() as conn:
        assert ErpOrders().read(conn, doc).customer_po == "PO-CHANGED"  # type: ignore[union-attr]
    with stack.runtime.store.begin() as hub:
        state = SyncState.load(hub, "order", Xref.resolve(hub, "order",
                                                          crm=created.order.crm_id))
    assert PENDING not in state.sides, "settled once the ERP committed"
