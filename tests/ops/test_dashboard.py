"""The overview's numbers move on their own as orders sync; the search box opens a trace; a
dead letter is replayed (or discarded) from the dashboard once its cause is fixed."""

from __future__ import annotations

import re
from decimal import Decimal as D

from playwright.sync_api import Page, expect
from sqlalchemy import func, insert, select

from connectors.erp.schema import oitm, ordr
from hub.demo.people import Line
from hub.store.deadletters import DeadLetters
from tests.helpers import wait_for
from tests.ops.conftest import Ops, log_in
from tests.sync.test_order_sync import LINES, crm_row, erp_row, open_letters

ORDERS_APPLIED = "[data-flow='crm:order.changed:erp'] [data-metric=applied]"
ANSWERS_APPLIED = "[data-flow='erp:order.status:crm'] [data-metric=applied]"


def _number(page: Page, selector: str) -> float:
    return float(page.locator(selector).inner_text())


def test_flow_numbers_change_on_their_own_as_orders_sync(page: Page, ops: Ops) -> None:
    log_in(page, ops)
    assert _number(page, ORDERS_APPLIED) == 0 and _number(page, ANSWERS_APPLIED) == 0
    first = page.locator("#updated").inner_text()
    sales = ops.stack.sales()
    ids = [sales.submit_order(ops.stack.account(), LINES[:2]) for _ in range(3)]
    for order_id in ids:
        wait_for(lambda o=order_id: crm_row(ops.stack, o).integration_status == "synced", 60,
                 "the orders synced")
    # No reload: the live fragment refreshes itself.
    page.wait_for_function(
        "sel => Number(document.querySelector(sel).textContent) >= 3", arg=ORDERS_APPLIED,
        timeout=20_000)
    page.wait_for_function(
        "sel => Number(document.querySelector(sel).textContent) >= 3", arg=ANSWERS_APPLIED,
        timeout=20_000)
    assert page.locator("#updated").inner_text() != first
    assert float(page.locator("[data-route='CRM → ERP'] .rate").inner_text()) > 0
    expect(page.locator("[data-part='erp-applier'] .dot.up")).to_have_count(1)
    # Under each part, its process and that process's resident memory.
    expect(page.locator("[data-part='erp-applier'] .sub")).to_have_text(
        re.compile(r"^\S+:\d+ · \d{2,4} MiB$"))
    # The CRM poller's count of orders awaiting the ERP (every 30 s: 0 to 3 by now).
    expect(page.locator("[data-metric=awaiting-erp]")).to_have_text(
        re.compile(r"^(0|[1-3], oldest \d+(\.\d+)? ?\w+)$"), timeout=20_000)
    page.reload()  # the charts are bucketed from the same journal
    assert int(page.locator("#applied-total").inner_text()) >= 6
    assert page.locator("svg.chart rect.s-applied").count() >= 1
    assert page.locator("svg.chart circle.s-p50").count() >= 1
    assert page.locator(f"{ORDERS_APPLIED.split(' ')[0]} [data-metric=p95]").inner_text() \
        .endswith(" s")


def test_the_search_box_opens_an_orders_trace(page: Page, ops: Ops) -> None:
    order_id = ops.stack.sales().submit_order(ops.stack.account(), LINES)
    wait_for(lambda: crm_row(ops.stack, order_id).integration_status == "synced", 60, "synced")
    number = crm_row(ops.stack, order_id).order_number
    doc_num = erp_row(ops.stack, order_id).DocNum
    log_in(page, ops)
    page.fill("#trace-key", number)
    page.press("#trace-key", "Enter")
    page.wait_for_url(f"**/ops/trace?key={number}")
    expect(page.locator("#trace-message")).to_contain_text(number)
    events = page.locator("ol.timeline li").evaluate_all("els => els.map(e => e.dataset.event)")
    assert "published" in events and events.count("applied") >= 2
    expect(page.locator("ol.timeline")).to_contain_text("applied by erp-applier")

    page.fill("#trace-key", str(doc_num))  # the ERP's number finds the same order
    page.press("#trace-key", "Enter")
    page.wait_for_url(f"**/ops/trace?key={doc_num}")
    expect(page.locator("dl.facts")).to_contain_text(number)

    page.fill("#trace-key", "SO-NOBODY-1")
    page.press("#trace-key", "Enter")
    expect(page.locator("#trace-message")).to_contain_text("nothing known about")


def test_replay_a_dead_letter_from_the_dashboard(page: Page, any_ops: Ops) -> None:
    ops, stack = any_ops, any_ops.stack
    order_id = stack.sales().submit_order(stack.account(), [Line("SOLV-NEW", D("5"), D("2"))])
    wait_for(lambda: crm_row(stack, order_id).integration_status == "error", 60, "the error")
    number = crm_row(stack, order_id).order_number
    open_letters(stack, number, "the dead letter")
    log_in(page, ops)
    assert int(page.locator("#dead-open").inner_text()) >= 1
    page.click("header nav >> text=Dead letters")
    row = page.locator("tr[data-letter]", has_text=number).first
    expect(row).to_contain_text("SOLV-NEW")
    letter_id = row.get_attribute("data-letter")
    row.locator("a", has_text=f"#{letter_id}").click()
    expect(page.locator("#reason")).to_contain_text("SOLV-NEW")
    expect(page.locator("#body")).to_contain_text(number)

    with stack.erp.begin() as conn:  # the cause, fixed where it belongs
        conn.execute(insert(oitm).values(ItemCode="SOLV-NEW", ItemName="New solvent",
                                         InvntryUom="kg", ManBtchNum="Y"))
    page.click("button.replay")
    expect(page.locator(".flash.ok")).to_contain_text(f"#{letter_id} replayed")
    expect(page.locator(".badge.replayed")).to_be_visible()
    wait_for(lambda: crm_row(stack, order_id).integration_status == "synced", 60, "synced")
    with stack.erp.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ordr).where(
            order_id == ordr.c.U_CRM_ID)).scalar_one() == 1
    with stack.runtime.store.begin() as conn:
        letter = DeadLetters.get(conn, int(letter_id or 0))
    assert letter is not None and letter.resolved_by == "staff:ops-anna"

    page.goto(ops.url(f"/ops/trace?key={number}"))
    events = page.locator("ol.timeline li").evaluate_all(
        "els => els.map(e => [e.dataset.event, e.textContent])")
    replayed = next(i for i, (event, text) in enumerate(events)
                    if event == "replayed" and "ops-anna" in text)
    assert any(event == "dead_lettered" for event, _ in events[:replayed])
    assert any(event == "applied" and "erp-applier" in text for event, text in events[replayed:])


def test_discard_a_dead_letter_with_a_reason(page: Page, ops: Ops) -> None:
    stack = ops.stack
    order_id = stack.sales().submit_order(stack.account(), [Line("SOLV-OLD", D("1"), D("2"))])
    wait_for(lambda: crm_row(stack, order_id).integration_status == "error", 60, "the error")
    log_in(page, ops)
    row = page.locator("#dead-letters tr[data-letter]").first
    letter_id = row.get_attribute("data-letter")
    row.locator("button.discard").click()  # the reason is required: nothing happens
    assert page.locator(".flash").count() == 0
    row.locator("input[name=reason]").fill("item withdrawn, customer told by phone")
    row.locator("button.discard").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"#{letter_id} discarded")
    page.goto(ops.url("/ops/dead-letters"))
    expect(page.locator(f"tr[data-letter='{letter_id}']")).to_have_count(0)
    page.goto(ops.url("/ops/dead-letters?status=discarded"))
    expect(page.locator(f"tr[data-letter='{letter_id}']")).to_contain_text("discarded")
    with stack.runtime.store.begin() as conn:
        letter = DeadLetters.get(conn, int(letter_id or 0))
    assert letter is not None and letter.note == "item withdrawn, customer told by phone"


def test_replay_several_dead_letters_at_once(page: Page, ops: Ops) -> None:
    stack = ops.stack
    ids = [stack.sales().submit_order(stack.account(), [Line("SOLV-TWO", D("3"), D("2"))])
           for _ in range(2)]
    for order_id in ids:
        wait_for(lambda o=order_id: crm_row(stack, o).integration_status == "error", 60,
                 "the errors")
    numbers = [crm_row(stack, o).order_number for o in ids]
    for number in numbers:
        open_letters(stack, number, "the dead letters")
    log_in(page, ops, path="/ops/dead-letters")
    letters = []
    for number in numbers:
        row = page.locator("tr[data-letter]", has_text=number).first
        row.locator("input[type=checkbox]").check()
        letters.append(row.get_attribute("data-letter"))
    with stack.erp.begin() as conn:
        conn.execute(insert(oitm).values(ItemCode="SOLV-TWO", ItemName="Solvent two",
                                         InvntryUom="kg", ManBtchNum="Y"))
    page.click("button:has-text('Replay selected')")
    flash = page.locator(".flash.ok")
    for letter_id in letters:
        expect(flash).to_contain_text(f"#{letter_id}")
    for order_id in ids:
        wait_for(lambda o=order_id: crm_row(stack, o).integration_status == "synced", 60,
                 "both synced")
        assert erp_row(stack, order_id) is not None
