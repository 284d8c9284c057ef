"""The daemon SIGKILLed twice in the middle of 1,000 orders loses and doubles nothing.

The daemon runs as ``python -m hub run`` in its own process on each stack: the embedded
default (nothing configured but the var dir) and the production one (PostgreSQL, MariaDB
through ODBC, RabbitMQ). Afterwards an independent reconciliation reads both systems.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from connectors.crm.schema import crm_order
from connectors.erp.schema import ordr, rdr1
from hub.demo.backlog import LINES_PER_ORDER, load_backlog
from hub.store.engine import make_engine
from tests.helpers import daemon, wait_for
from tests.stacks import daemon_stack, synced_orders

ORDERS = 1000


@pytest.fixture(params=["embedded", "real"])
def systems(request: pytest.FixtureRequest, tmp_path: Path
            ) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(environment for the daemon, URLs of crm/erp) on fresh, seeded systems."""
    with daemon_stack(request.param, tmp_path) as stack:
        yield stack


def _in_erp(erp: Engine) -> int:
    with erp.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ordr)).scalar_one())


def test_sigkill_twice_during_1000_orders_loses_and_doubles_nothing(
    systems: tuple[dict[str, str], dict[str, str]], tmp_path: Path,
) -> None:
    env, urls = systems
    crm, erp = make_engine(urls["crm"]), make_engine(urls["erp"])
    try:
        load_backlog(crm, ORDERS, chunk=250)
        for kill_at in (ORDERS // 5, ORDERS // 2):
            with daemon(tmp_path, env) as proc:
                wait_for(lambda at=kill_at: _in_erp(erp) >= at, 300,  # type: ignore[misc]
                         f"{kill_at} orders in the ERP")
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            assert _in_erp(erp) < ORDERS, "the kill landed in the middle of the run"
        with daemon(tmp_path, env) as proc:
            wait_for(lambda: synced_orders(crm) == ORDERS, 600, "every order back in the CRM")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        _reconcile(crm, erp)
    finally:
        crm.dispose()
        erp.dispose()


def _reconcile(crm: Engine, erp: Engine) -> None:
    """Every CRM order exactly once in the ERP, with all its lines, numbered as the CRM says."""
    with crm.connect() as conn:
        numbers = {r.order_id: r.erp_order_number for r in conn.execute(
            select(crm_order.c.order_id, crm_order.c.erp_order_number))}
    with erp.connect() as conn:
        headers = conn.execute(select(ordr.c.DocEntry, ordr.c.DocNum, ordr.c.U_CRM_ID)).all()
        lines = Counter(r.DocEntry for r in conn.execute(select(rdr1.c.DocEntry)))
    per_crm_id = Counter(h.U_CRM_ID for h in headers)
    doubled = {k: n for k, n in per_crm_id.items() if n > 1}
    assert not doubled, f"orders doubled in the ERP: {doubled}"
    assert set(per_crm_id) == set(numbers), "every CRM order is in the ERP, and nothing else"
    assert len({h.DocNum for h in headers}) == len(headers), "DocNums are unique"
    assert all(lines[h.DocEntry] == LINES_PER_ORDER for h in headers), "every line, once"
    wrong = [h for h in headers if numbers[h.U_CRM_ID] != str(h.DocNum)]
    assert not wrong, f"{len(wrong)} CRM orders carry another ERP number than their ERP order"
