"""New orders are numbered last in the ERP applier's transaction: every writer of ERP
documents queues for the series, and the batch holds it only for the numbering, the hub's
record and the commit, not while it writes lines and reads its orders back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from connectors.erp.schema import ordr
from connectors.erp.sync import ErpApplier
from hub.model.messages import OrderChanged, OrderStatusChanged, decode
from hub.store.tables import outbox
from hub.sync.state import SyncState
from hub.sync.xref import Xref
from tests.connectors.erp.kit import order
from tests.sync.conftest import Stack, running


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running("real", tmp_path, parts=()) as built:  # ERP on MariaDB: FOR UPDATE shows
        yield built


def test_new_orders_lock_the_series_after_their_lines_and_read_back(stack: Stack) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()))

    numbers = [f"SO-NUM-{n}" for n in range(1, 4)]
    messages = [OrderChanged(correlation_key=n, source="crm", source_version="1",
                             order=order(order_number=n, crm_id=f"crm-{n}")) for n in numbers]
    applier = ErpApplier(stack.runtime)
    opening = OrderChanged(correlation_key="SO-NUM-0", source="crm", source_version="1",
                           order=order(order_number="SO-NUM-0", crm_id="crm-SO-NUM-0"))
    assert applier.apply_batch([opening], [False]) == [None]  # a series to queue behind
    event.listen(stack.erp, "before_cursor_execute", record)
    try:
        outcomes = applier.apply_batch(messages, [False] * len(messages))
    finally:
        event.remove(stack.erp, "before_cursor_execute", record)
    assert outcomes == [None] * len(messages)

    def first(prefix: str) -> int:
        return next(i for i, s in enumerate(statements) if s.startswith(prefix))

    locked = first("SELECT `ORDR`.`DocEntry` FROM `ORDR` WHERE `ORDR`.`DocNum` = ? FOR UPDATE")
    assert first("INSERT INTO `RDR1`") < locked  # lines written before queueing
    assert first("SELECT `RDR1`.") < locked  # and the orders read back
    assert first("UPDATE `ORDR` SET `DocNum`") > locked  # numbered at its turn, in one go
    assert sum(s.startswith("UPDATE `ORDR`") for s in statements) == 1
    with stack.erp.connect() as conn:
        taken = dict(conn.execute(select(ordr.c.U_CRM_ID, ordr.c.DocNum)).all())
    assert sorted(taken.values()) == [1, 2, 3, 4]
    del taken["crm-SO-NUM-0"]
    # The hub's record and the answers carry the numbers the ERP kept, not provisional ones.
    with stack.runtime.store.begin() as hub:
        answers = [decode(b) for b in hub.scalars(select(outbox.c.body))]
        for m in messages:
            cid = Xref.resolve(hub, "order", crm=m.order.crm_id)
            state = SyncState.load(hub, "order", cid)
            assert state.side("erp").fields["erp_doc_num"] == taken[m.order.crm_id], m
            assert Xref.local(hub, "order", cid, "erp") is not None
    assert {a.crm_id: a.erp_doc_num for a in answers if isinstance(a, OrderStatusChanged)
            and a.crm_id != "crm-SO-NUM-0"} == taken
