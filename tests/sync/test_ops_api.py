"""The operations API on a running sync: staff list dead letters, replay one once its cause is
fixed, and trace the order; customers and anonymous callers are kept out."""

from __future__ import annotations

import json
from decimal import Decimal as D

from sqlalchemy import insert

from connectors.erp.schema import oitm
from hub.demo.people import Line
from hub.http.app import create_app
from hub.tokens import CUSTOMER, STAFF, ApiTokens
from tests.certificates.world import served
from tests.helpers import wait_for
from tests.sync.conftest import Stack
from tests.sync.test_order_sync import crm_row, erp_lines, erp_row, open_letters


def test_staff_replay_a_dead_letter_over_http_and_trace_the_order(stack: Stack) -> None:
    with stack.runtime.store.begin() as conn:
        _, staff = ApiTokens.create(conn, STAFF, "ops-anna")
        _, customer = ApiTokens.create(conn, CUSTOMER, "C00042")
    order_id = stack.sales().submit_order(stack.account(), [Line("SOLV-NEW", D("5"), D("2"))])
    wait_for(lambda: crm_row(stack, order_id).integration_status == "error", 60, "the error")
    number = crm_row(stack, order_id).order_number
    open_letters(stack, number, "the dead letter")
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


def test_staff_edit_discard_and_replay_many_dead_letters_over_http(stack: Stack) -> None:
    with stack.runtime.store.begin() as conn:
        _, staff = ApiTokens.create(conn, STAFF, "ops-ben")
        _, customer = ApiTokens.create(conn, CUSTOMER, "C00042")
    sales = stack.sales()
    orders = [sales.submit_order(stack.account(), [Line(item, D("5"), D("2"))])
              for item in ("SOLV-TYPO", "SOLV-LATER", "SOLV-LATER", "SOLV-GONE")]
    for order_id in orders:
        wait_for(lambda o=order_id: crm_row(stack, o).integration_status == "error", 60,
                 "the error")
    numbers = [crm_row(stack, o).order_number for o in orders]
    for number in numbers:
        open_letters(stack, number, "the dead letters")
    as_staff = {"Authorization": f"Bearer {staff}"}
    with served(create_app(stack.runtime)) as http:
        letters = http.get("/api/v1/dead-letters", headers=as_staff).json()
        newest: dict[str, int] = {}
        for d in letters:  # newest first; the CRM may have sent an order more than once
            newest.setdefault(d["correlation_key"], d["id"])
        typo, gone = newest[numbers[0]], newest[numbers[3]]
        base = "/api/v1/dead-letters"

        # Edit: customers may not; invalid edits are 422 and change nothing.
        fix = {"set": {"order.lines.0.product_code": "ETAC-99"}}
        assert http.post(f"{base}/{typo}/edit", json=fix).status_code == 401
        assert http.post(f"{base}/{typo}/edit", json=fix, headers={
            "Authorization": f"Bearer {customer}"}).status_code == 403
        bad = http.post(f"{base}/{typo}/edit", headers=as_staff,
                        json={"set": {"order.lines.0.quantity": -3}})
        assert bad.status_code == 422, bad.text
        assert "canonical model" in bad.json()["detail"] and "quantity" in bad.json()["detail"]
        shown = http.get(f"{base}/{typo}", headers=as_staff).json()
        whole = json.loads(shown["body"])
        whole["order"]["status"] = "exploded"
        assert http.post(f"{base}/{typo}/edit", headers=as_staff,
                         json={"body": whole}).status_code == 422
        assert http.post(f"{base}/{typo}/edit", headers=as_staff,
                         json={"body": "not json"}).status_code == 422
        assert http.post(f"{base}/{typo}/edit", headers=as_staff, json={}).status_code == 422
        assert http.post(f"{base}/999999/edit", headers=as_staff, json=fix).status_code == 404
        assert http.get(f"{base}/{typo}", headers=as_staff).json()["status"] == "dead"

        edited = http.post(f"{base}/{typo}/edit", headers=as_staff, json=fix)
        assert edited.status_code == 200, edited.text
        assert edited.json()["changes"] == [{"path": "order.lines.0.product_code",
                                             "before": "SOLV-TYPO", "after": "ETAC-99"}]
        # The edited message wrote the ERP order (the CRM still holds the typo, and the
        # order's next change from there is refused again: the edit fixed a message only).
        wait_for(lambda: erp_row(stack, orders[0]) is not None, 60, "the edited order in the ERP")
        header = erp_row(stack, orders[0])
        assert [ln.ItemCode for ln in erp_lines(stack, header.DocEntry)] == ["ETAC-99"]
        assert http.post(f"{base}/{typo}/edit", headers=as_staff,
                         json=fix).status_code == 409
        after = http.get(f"{base}/{typo}", headers=as_staff).json()
        assert "SOLV-TYPO" in after["body"], "the original stays retrievable"
        assert after["status"] == "replayed" and after["resolved_by"] == "staff:ops-ben"
        (edit,) = after["edits"]
        assert edit["by"] == "staff:ops-ben" and '"ETAC-99"' in edit["body"]
        traced = http.get(f"/api/v1/trace/{numbers[0]}", headers=as_staff).json()
        kinds = [e["event"] for e in traced["events"]]
        assert kinds.index("dead_lettered") < kinds.index("edited") < kinds.index("replayed")
        summary = next(e["summary"] for e in traced["events"] if e["event"] == "edited")
        assert "SOLV-TYPO" in summary and "ETAC-99" in summary and "staff:ops-ben" in summary
        sent = [e for e in traced["events"] if e["event"] == "published"
                and e["type"] == "order.changed"]
        assert sent and sent[0]["detail"]["body"]["order"]["lines"][0]["product_code"] == \
            "SOLV-TYPO", "the journal keeps what was sent"

        # Discard needs a reason.
        assert http.post(f"{base}/{gone}/discard", headers=as_staff, json={}).status_code == 422
        assert http.post(f"{base}/{gone}/discard", headers=as_staff,
                         json={"reason": ""}).status_code == 422
        dropped = http.post(f"{base}/{gone}/discard", headers=as_staff,
                            json={"reason": "customer cancelled by phone"})
        assert dropped.status_code == 200 and dropped.json()["ok"] is True
        assert http.post(f"{base}/{gone}/discard", headers=as_staff,
                         json={"reason": "again"}).status_code == 409
        assert http.post(f"{base}/999999/discard", headers=as_staff,
                         json={"reason": "x"}).status_code == 404

        # Replay many, by filter, once the cause is fixed.
        assert http.post(f"{base}/replay", headers=as_staff, json={}).status_code == 422
        with stack.erp.begin() as conn:
            conn.execute(insert(oitm).values(ItemCode="SOLV-LATER", ItemName="Later solvent",
                                             InvntryUom="kg", ManBtchNum="Y"))
        # (Until an order is bound, the CRM may send a refused order again: more letters.)
        letters = http.get(base, headers=as_staff).json()
        of_later1 = sorted(d["id"] for d in letters if d["correlation_key"] == numbers[1])
        of_later2 = sorted(d["id"] for d in letters if d["correlation_key"] == numbers[2])
        many = http.post(f"{base}/replay", headers=as_staff,
                         json={"key": numbers[1], "error_code": "unknown_reference"})
        assert many.status_code == 200, many.text
        replayed = [o["id"] for o in many.json()["outcomes"]]
        assert many.json()["failed"] == 0 and many.json()["replayed"] == len(replayed)
        assert replayed == sorted(replayed) and set(of_later1) <= set(replayed), "oldest first"
        by_ids = http.post(f"{base}/replay", headers=as_staff, json={"ids": [*of_later2, gone]})
        assert by_ids.json()["replayed"] == len(of_later2) and by_ids.json()["failed"] == 1
        assert by_ids.json()["outcomes"][-1]["code"] == "not_dead"
        for order_id in orders[1:3]:
            wait_for(lambda o=order_id: crm_row(stack, o).integration_status == "synced", 60,
                     "the replayed orders synced")
