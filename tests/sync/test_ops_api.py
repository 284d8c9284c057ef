"""The operations API on a running sync: staff list dead letters, replay one once its cause is
fixed, and trace the order; customers and anonymous callers are kept out."""

from __future__ import annotations

from decimal import Decimal as D

from sqlalchemy import insert

from connectors.erp.schema import oitm
from hub.demo.people import Line
from hub.http.app import create_app
from hub.tokens import CUSTOMER, STAFF, ApiTokens
from tests.certificates.world import served
from tests.helpers import wait_for
from tests.sync.conftest import Stack
from tests.sync.test_order_sync import crm_row, erp_row


def test_staff_replay_a_dead_letter_over_http_and_trace_the_order(stack: Stack) -> None:
    with stack.runtime.store.begin() as conn:
        _, staff = ApiTokens.create(conn, STAFF, "ops-anna")
        _, customer = ApiTokens.create(conn, CUSTOMER, "C00042")
    order_id = stack.sales().submit_order(stack.account(), [Line("SOLV-NEW", D("5"), D("2"))])
    wait_for(lambda: crm_row(stack, order_id).integration_status == "error", 60, "the error")
    number = crm_row(stack, order_id).order_number
    as_staff = {"Authorization": f"Bearer {staff}"}
    with served(create_app(stack.runtime)) as http:
        assert http.get("/api/v1/dead-letters").status_code == 401
        assert http.get("/api/v1/dead-letters",
                        headers={"Authorization": f"Bearer {customer}"}).status_code == 403
        letters = http.get("/api/v1/dead-letters", headers=as_staff).json()
        mine = [d for d in letters if d["correlation_key"] == number]
        assert mine and "SOLV-NEW" in mine[0]["reason"]
        shown = http.get(f"/api/v1/dead-letters/{mine[0]['id']}", headers=as_staff).json()
        assert number in shown["body"]

        with stack.erp.begin() as conn:  # the cause, fixed where it belongs
            conn.execute(insert(oitm).values(ItemCode="SOLV-NEW", ItemName="New solvent",
                                             InvntryUom="kg", ManBtchNum="Y"))
        replayed = http.post(f"/api/v1/dead-letters/{mine[0]['id']}/replay", headers=as_staff)
        assert replayed.status_code == 200 and replayed.json()["ok"] is True
        wait_for(lambda: crm_row(stack, order_id).integration_status == "synced", 60, "synced")
        assert erp_row(stack, order_id) is not None
        again = http.post(f"/api/v1/dead-letters/{mine[0]['id']}/replay", headers=as_staff)
        assert again.status_code == 409, "a replayed letter is not replayed twice"
        assert http.post("/api/v1/dead-letters/999999/replay", headers=as_staff).status_code == 404

        trace = http.get(f"/api/v1/trace/{number}", headers=as_staff)
        assert trace.status_code == 200
        events = [e["event"] for e in trace.json()["events"]]
        assert "replayed" in events and "dead_lettered" in events and "applied" in events
        assert http.get("/api/v1/trace/SO-NOBODY-1", headers=as_staff).status_code == 404
        assert http.get(f"/api/v1/trace/{number}",
                        headers={"Authorization": f"Bearer {customer}"}).status_code == 403
