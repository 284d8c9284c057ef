"""An order the ERP committed but the hub never answered is answered when its change comes
again, even after a later hub write to the CRM made that change look stale (regression).

Found by the fault suite in CI (HUB_APART, one order of 1,000): the ERP applier created the
order and the ERP committed; the process was killed before the answer (its DocNum) was
stored. While the killed part waited to be started again, the ERP clerk confirmed the order
and the CRM applier wrote that into the CRM: a new CRM version, the hub's own write, which
the CRM poller rightly does not send on. The CRM's first change then came again and was
older than the CRM version the hub knew, so the applier took it as stale and claimed it
without an answer. The CRM showed "confirmed" and never the ERP's number.

Operations see such an order: the CRM poller counts the orders awaiting the ERP, and
``hub status`` and ``/metrics`` show how many and since when.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import select, update

from connectors.crm.orders import CrmOrders
from connectors.crm.schema import crm_order
from connectors.crm.sync import CrmApplier, CrmPoller
from connectors.erp.common import version_of
from connectors.erp.order_reads import order_versions
from connectors.erp.orders import ErpOrders
from connectors.erp.schema import ordr
from connectors.erp.sync import ErpApplier
from hub import readings
from hub.demo.people import Line
from hub.errors import DatabaseUnavailable
from hub.model.messages import Message, OrderChanged, OrderStatusChanged, decode
from hub.outbox import Outbox
from hub.store.tables import outbox
from tests.helpers import wait_for
from tests.sync.conftest import Stack, running


@pytest.fixture(params=["embedded", "real"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with running(request.param, tmp_path, parts=()) as built:
        yield built


def _from_crm(stack: Stack, order_id: str) -> OrderChanged:
    """The CRM poller's message for the order as the CRM holds it now."""
    orders = CrmOrders()
    with stack.crm.connect() as conn:
        order, version = orders.read(conn, order_id), orders.version(conn, order_id)
    assert order is not None and version is not None
    return OrderChanged(correlation_key=order.order_number or order_id, source="crm",
                        source_version=version, order=order)


def _from_erp(stack: Stack, doc: int) -> OrderChanged:
    """The ERP poller's message for the order as the ERP holds it now."""
    with stack.erp.connect() as conn:
        order, stamp = ErpOrders().read(conn, doc), order_versions(conn, [doc])[doc]
    assert order is not None
    return OrderChanged(correlation_key=order.order_number or f"ERP-{doc}", source="erp",
                        source_version=version_of(stamp), order=order)


def _answers(stack: Stack) -> list[OrderStatusChanged]:
    with stack.runtime.store.begin() as conn:
        found = [decode(body) for body in conn.scalars(select(outbox.c.body)
                                                       .order_by(outbox.c.id))]
    return [m for m in found if isinstance(m, OrderStatusChanged)]


def _killed_before_the_answer(*_: Any, **__: Any) -> NoReturn:
    raise DatabaseUnavailable("the process was killed before the answer was stored")


@pytest.mark.parametrize("together", [True, False], ids=["batch", "one-at-a-time"])
def test_a_created_order_whose_answer_was_lost_is_answered_when_its_change_comes_again(
        stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        together: bool) -> None:
    caplog.set_level(logging.INFO, logger="connectors.erp.sync")
    sales, account = stack.sales(), stack.account()
    ids = [sales.submit_order(account, [Line("ETAC-99", D("100"), D("1.25"))],
                              order_number=f"SO-UNANSWERED-{n}")
           for n in range(2 if together else 1)]
    changes = [_from_crm(stack, order_id) for order_id in ids]
    erp_applier, crm_applier = ErpApplier(stack.runtime), CrmApplier(stack.runtime)

    with monkeypatch.context() as patch:
        patch.setattr(Outbox, "add", staticmethod(_killed_before_the_answer))
        outcomes = erp_applier.apply_batch(changes, [False] * len(changes))
    assert all(isinstance(o, DatabaseUnavailable) for o in outcomes), outcomes
    with stack.erp.connect() as conn:
        docs = {r.U_CRM_ID: (r.DocEntry, r.DocNum) for r in conn.execute(
            select(ordr.c.U_CRM_ID, ordr.c.DocEntry, ordr.c.DocNum))}
    assert set(docs) == set(ids), "the ERP committed the orders"
    assert _answers(stack) == []

    # The ERP clerk confirms them, and the CRM applier writes that into the CRM.
    for doc, _ in docs.values():
        stack.erp_user().confirm(doc)
    confirmed: list[Message] = [_from_erp(stack, doc) for doc, _ in docs.values()]
    assert crm_applier.apply_batch(confirmed, [False] * len(confirmed)) == [None] * len(ids)
    with stack.crm.connect() as conn:
        rows = conn.execute(select(crm_order.c.order_id, crm_order.c.status,
                                   crm_order.c.erp_order_number, crm_order.c.version)).all()
    assert {(r.status, r.erp_order_number) for r in rows} == {("confirmed", None)}
    assert all(r.version > 1 for r in rows), "a newer CRM version than the changes carry"

    # The CRM's changes come again (redelivered): each is answered with its DocNum.
    assert erp_applier.apply_batch(changes, [False] * len(changes)) == [None] * len(ids)
    said = [m for r in caplog.records if "answering a change older" in (m := r.getMessage())]
    assert len(said) == len(ids) and all("SO-UNANSWERED-" in m for m in said), said
    answers = _answers(stack)
    assert {(a.crm_id, a.erp_doc_num, a.status, a.integration_status) for a in answers} == {
        (order_id, docs[order_id][1], "confirmed", "synced") for order_id in ids}
    assert crm_applier.apply_batch(list(answers), [False] * len(answers)) == [None] * len(ids)
    with stack.crm.connect() as conn:
        back = {r.order_id: (r.status, r.erp_order_number, r.integration_status)
                for r in conn.execute(select(crm_order))}
    assert back == {order_id: ("confirmed", str(docs[order_id][1]), "synced")
                    for order_id in ids}

    # Nothing was written twice into the ERP.
    with stack.erp.connect() as conn:
        assert len(conn.execute(select(ordr.c.DocEntry)).all()) == len(ids)


@pytest.mark.parametrize("kind", ["embedded", "real"])
def test_an_order_without_its_erp_number_is_counted_as_awaiting_the_erp(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no ERP applier running, a submitted order waits; ``hub status`` and ``/metrics``
    read the CRM poller's count from its heartbeat."""
    monkeypatch.setattr(CrmPoller, "count_every", 0.2)

    def awaiting(stack: Stack) -> readings.OrdersAwaiting | None:
        with stack.runtime.store.reading() as conn:
            return readings.orders_awaiting(readings.components(conn))

    with running(kind, tmp_path, parts=("crm-poller",)) as stack:
        order_id = stack.sales().submit_order(stack.account(),
                                              [Line("ETAC-99", D("100"), D("1.25"))])
        wait_for(lambda: (a := awaiting(stack)) is not None and a.count == 1, 30,
                 "the order counted as awaiting the ERP")
        found = awaiting(stack)
        assert found is not None and found.oldest_seconds is not None
        assert 0 <= found.oldest_seconds < 60
        with stack.crm.begin() as conn:  # as the ERP's answer would
            conn.execute(update(crm_order).where(crm_order.c.order_id == order_id)
                         .values(erp_order_number="1", integration_status="synced"))
        wait_for(lambda: awaiting(stack) == readings.OrdersAwaiting(0, None), 30,
                 "none awaiting once the number is back")
