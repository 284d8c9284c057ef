"""The fault suite's oracle: the reconciliation passes a clean sync, names the order and both
values when a field disagrees, and its post-mortem traces that order."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from sqlalchemy import select, update

from connectors.crm.schema import crm_order
from hub.demo.backlog import load_backlog
from hub.store.engine import make_engine
from tests.faults.reconcile import reconcile
from tests.faults.run import log_tail, post_mortem
from tests.helpers import daemon, wait_for
from tests.stacks import daemon_stack, synced_orders

ORDERS = 5


def test_a_wrong_erp_number_is_named_with_both_values_and_traced(tmp_path: Path) -> None:
    with daemon_stack("real", tmp_path) as (env, urls):
        crm, erp = make_engine(urls["crm"]), make_engine(urls["erp"])
        hub = make_engine(env["HUB_DATABASE_URL"])
        try:
            load_backlog(crm, ORDERS)
            with daemon(tmp_path, env) as proc:
                wait_for(lambda: synced_orders(crm) == ORDERS, 120, "every order back in the CRM")
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(60) == 0
            with crm.connect() as conn:
                rows = conn.execute(select(crm_order.c.order_id, crm_order.c.order_number,
                                           crm_order.c.erp_order_number)
                                    .order_by(crm_order.c.order_id)).all()
            ids = [r.order_id for r in rows]
            clean = reconcile(crm, erp, hub, ids)
            assert clean.ok, clean.problems()
            assert clean.confirmed == ORDERS

            wrong = rows[2]
            with crm.begin() as conn:
                conn.execute(update(crm_order).where(crm_order.c.order_id == wrong.order_id)
                             .values(erp_order_number="999999"))
            result = reconcile(crm, erp, hub, ids)
            assert not result.ok
            assert result.wrong_orders == [wrong.order_number]
            assert result.mismatches == [
                f"{wrong.order_number}: erp number (CRM '999999', "
                f"ERP '{wrong.erp_order_number}')"]
            assert result.confirmed == ORDERS - 1

            [text] = post_mortem(env["HUB_DATABASE_URL"], {"crm": crm, "erp": erp},
                                 result.wrong_orders)
            assert wrong.order_number in text
            assert "999999" in text  # the CRM's state as it is now
            assert "order.status" in text  # the ERP's answer, as the relay published it
            assert "sync state: {" in text and '"erp"' in text
        finally:
            for engine in (crm, erp, hub):
                engine.dispose()


def test_the_log_tail_is_every_process_warnings_in_time_order(tmp_path: Path) -> None:
    def line(at: str, level: str, event: str) -> str:
        return json.dumps({"timestamp": f"2026-11-25T23:{at}Z", "level": level,
                           "logger": "hub.bus", "event": event})

    (tmp_path / "hub-crm-poller.log").write_text("\n".join([
        line("01:00.000001", "info", "polling"), line("01:03.000001", "warning", "poll failed"),
        "Traceback (most recent call last):"]))
    (tmp_path / "hub-erp-applier.log").write_text(line("01:02.000001", "error", "gave up"))
    assert log_tail(tmp_path) == [
        "23:01:02.000 erp-applier error hub.bus: gave up",
        "23:01:03.000 crm-poller warning hub.bus: poll failed"]
    assert log_tail(tmp_path, limit=1) == ["23:01:03.000 crm-poller warning hub.bus: poll failed"]
