"""An ERP answer overtaken by the ERP's own later change does not put the older status back
(regression, issue 6).

Found by the fault suite: the ERP applier answered "created, on hold" (ERP version v1); the CRM
applier failed on it during a PostgreSQL restart and retried it; meanwhile the ERP clerk
confirmed the order (v2) and that change reached the CRM first. The retried answer then set
the CRM status back to ``on_hold`` for good.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from connectors.crm.schema import crm_order, crm_order_line
from connectors.crm.sync import CrmApplier
from hub.demo.backlog import order_rows
from hub.demo.reference import init
from hub.model.messages import OrderStatusChanged
from hub.runtime import Runtime
from hub.store.types import utcnow
from hub.sync.state import Side, SyncState
from hub.sync.xref import Xref
from tests.sync.conftest import stack_settings

V1, V2, V3 = ("2026-11-23T23:44:13.803000", "2026-11-23T23:44:14.701484",
              "2026-11-23T23:45:00.000000")


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings, _ = stack_settings("embedded", tmp_path)
    init(settings, seed=True)
    opened = Runtime.open(settings)
    opened.store.migrate()
    try:
        yield opened
    finally:
        opened.close()


def _answer(order_id: str, version: str, status: str) -> OrderStatusChanged:
    return OrderStatusChanged(
        correlation_key="SO-B-0000000", source="erp", source_version=version,
        order_number="SO-B-0000000", crm_id=order_id, erp_doc_entry=131, erp_doc_num=128,
        status=status, integration_status="synced")  # type: ignore[arg-type]


def _crm(runtime: Runtime, order_id: str) -> tuple[str, str | None]:
    with runtime.system("crm").connect() as conn:
        row = conn.execute(select(crm_order.c.status, crm_order.c.erp_order_number).where(
            crm_order.c.order_id == order_id)).one()
    return row.status, row.erp_order_number


def test_a_retried_answer_does_not_undo_a_later_erp_change(runtime: Runtime) -> None:
    headers, lines = order_rows(1, 0, utcnow())
    order_id = str(headers[0]["order_id"])
    crm = runtime.system("crm")
    with crm.begin() as conn:
        conn.execute(insert(crm_order), headers)
        conn.execute(insert(crm_order_line), lines)
        # The ERP's later change (confirmed, version V2) has already reached the CRM ...
        conn.execute(update(crm_order).where(crm_order.c.order_id == order_id)
                     .values(status="confirmed"))
    with runtime.store.begin() as hub:
        cid = Xref.resolve_many(hub, "order", [{"crm": order_id}])[0]
        Xref.bind(hub, "order", cid, crm=order_id, erp="000000000131")
        SyncState(
            "order", cid, {"erp": Side(V2, {"status": "confirmed"}), "crm": Side("2", {})},
        ).save(hub)
    applier = CrmApplier(runtime)

    # ... when the answer to the creation (on hold, version V1) arrives, retried.
    assert applier.apply_batch([_answer(order_id, V1, "on_hold")], [False]) == [None]
    assert _crm(runtime, order_id) == ("confirmed", "128")

    # An answer at least as new as what the CRM has is applied as before.
    assert applier.apply_batch([_answer(order_id, V3, "on_hold")], [False]) == [None]
    assert _crm(runtime, order_id) == ("on_hold", "128")
