"""``hub trace``: one order, DocNum or batch followed across CRM, ERP and LIMS, on the embedded
and the real stack (the in-process sync of tests/sync)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from connectors.crm.schema import crm_order
from connectors.erp.schema import ordr
from hub.daemon import Daemon
from hub.demo.people import Line
from hub.http.app import create_app
from hub.parts import build_parts
from hub.readings import outbox as outbox_reading
from hub.readings import queue_depths
from hub.store import Store
from hub.store.tables import journal
from hub.store.types import utcnow
from hub.tokens import CUSTOMER, STAFF, ApiTokens
from hub.trace import Event, Trace, _Tracer, plausible_key, render, trace
from tests.certificates.world import served
from tests.helpers import hub_env, wait_for
from tests.sync.conftest import SYNC_PARTS, Stack, running

LINE = Line("ETAC-99", D("1200.000"), D("1.2500"))
MALFORMED = ["", " ", "SO-1 ", "x" * 65, "\x00", "a\nb", "😀"]
BAD_KEYS = [*MALFORMED, "' OR '1'='1", "SO-1'; DROP TABLE journal; --", "1 OR 1=1", "%", "_",
            "*", "B26%", "ERP-1'--"]


@pytest.fixture(params=["embedded", "real"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with running(request.param, tmp_path) as built:
        yield built


def restart(stack: Stack) -> None:
    stack.daemon = Daemon(stack.runtime, [p for p in build_parts(stack.runtime)
                                          if p.name in SYNC_PARTS])
    stack.daemon.prepare()
    stack.daemon.start()


def systems(stack: Stack) -> dict[str, Engine]:
    return {"crm": stack.crm, "erp": stack.erp, "lims": stack.runtime.system("lims")}


def crm_row(stack: Stack, order_id: str) -> Any:
    with stack.crm.connect() as conn:
        return conn.execute(select(crm_order).where(crm_order.c.order_id == order_id)).one()


def erp_row(stack: Stack, order_id: str) -> Any:
    with stack.erp.connect() as conn:
        return conn.execute(select(ordr).where(order_id == ordr.c.U_CRM_ID)).one_or_none()


def synced(stack: Stack, order_id: str) -> Any:
    wait_for(lambda: crm_row(stack, order_id).integration_status == "synced", 30,
             "the ERP's answer in the CRM")
    row = erp_row(stack, order_id)
    assert row is not None
    return row


def first(events: list[Event], what: str, match: Callable[[Event], bool]) -> int:
    """The index of the first event ``match`` accepts."""
    for index, event in enumerate(events):
        if match(event):
            return index
    raise AssertionError(f"no {what} in the trace:\n" + "\n".join(
        f"{e.at} {e.system} {e.event} {e.summary}" for e in events))


def is_(event: str, type_: str, system: str) -> Callable[[Event], bool]:
    return lambda e: e.event == event and e.type == type_ and e.system == system


def delivered(t: Trace) -> bool:
    """The delivery's "published" and CRM "applied" entries are both in: the publisher journals
    "published" after the broker's confirm, which can come after the CRM applied it."""
    return all(any(match(e) for e in t.events)
               for match in (is_("published", "delivery.posted", "erp"),
                             is_("applied", "delivery.posted", "crm")))


def traced(stack: Stack, key: str, until: Callable[[Trace], bool], what: str,
           *, with_systems: bool = True) -> Trace:
    """The trace of ``key`` once ``until`` holds for it (the journal is written just after
    each step is applied)."""
    found: list[Trace] = []

    def check() -> bool:
        found[:] = [trace(stack.runtime.store, key,
                          systems=systems(stack) if with_systems else None)]
        return until(found[0])

    wait_for(check, 30, what)
    return found[0]


def test_an_order_is_traced_from_the_crm_through_the_erp_to_its_delivered_batch(
        stack: Stack) -> None:
    order_id = stack.sales().submit_order(stack.account(), [LINE])
    header = synced(stack, order_id)
    doc, doc_num = header.DocEntry, header.DocNum
    number = crm_row(stack, order_id).order_number
    erp = stack.erp_user()
    confirmed_at = utcnow()
    erp.confirm(doc)
    wait_for(lambda: crm_row(stack, order_id).status == "confirmed", 30, "confirmed")
    erp.deliver(doc, [(0, D("1200"), "B2611-0001")])
    wait_for(lambda: crm_row(stack, order_id).status == "shipped", 30, "shipped")

    result = traced(stack, number, delivered, "the delivery published and applied in the CRM")
    assert result.found and result.kind == "order" and not result.errors
    assert result.order is not None
    assert (result.order.order_number, result.order.crm_id) == (number, order_id)
    assert (result.order.erp_doc_entry, result.order.erp_doc_num) == (doc, doc_num)
    assert result.order.customer == "C00042" and result.order.canonical_id
    assert number in result.keys and result.batches == ["B2611-0001"]
    events = result.events
    assert [e.at for e in events] == sorted(e.at for e in events)

    crm_change = first(events, "CRM change published", is_("published", "order.changed", "crm"))
    erp_write = first(events, "ERP write", is_("applied", "order.changed", "erp"))
    answer = first(events, "ERP answer published", is_("published", "order.status", "erp"))
    answer_in_crm = first(events, "answer in the CRM", is_("applied", "order.status", "crm"))
    erp_change = first(events, "the ERP's confirmation",
                       lambda e: is_("published", "order.changed", "erp")(e)
                       and e.at.replace(tzinfo=None) >= confirmed_at)
    erp_change_in_crm = first(events, "the confirmation in the CRM",
                              lambda e: is_("applied", "order.changed", "crm")(e)
                              and e.at.replace(tzinfo=None) >= confirmed_at)
    observed = first(events, "the delivery", is_("observed", "delivery.posted", "erp"))
    published = first(events, "delivery published", is_("published", "delivery.posted", "erp"))
    shipped = first(events, "the delivery in the CRM", is_("applied", "delivery.posted", "crm"))
    assert crm_change < erp_write and crm_change < answer < answer_in_crm < erp_change
    assert erp_change < erp_change_in_crm <= observed < published < shipped
    assert events[crm_change].key == number and events[crm_change].message_id
    assert events[erp_write].target and "erp-applier" in events[erp_write].target
    delivery = events[observed]
    assert delivery.detail["customer"] == "C00042"
    assert [b["batch"] for b in delivery.detail["batches"]] == ["B2611-0001"]
    assert delivery.detail["batches"][0]["quantity"].startswith("1200")
    assert "B2611-0001" in delivery.summary
    assert {events[observed].message_id} == {events[published].message_id,
                                             events[shipped].message_id}

    # The current state on each side.
    crm, erp_now = result.state["crm"], result.state["erp"]
    assert crm["status"] == "shipped" and crm["integration_status"] == "synced"
    assert crm["erp_order_number"] == str(doc_num)
    assert [ln["batch_number"] for s in crm["shipments"] for ln in s["lines"]] == ["B2611-0001"]
    assert (erp_now["DocNum"], erp_now["Confirmed"], erp_now["DocStatus"],
            erp_now["CANCELED"]) == (doc_num, "Y", "C", "N")
    assert [b["batch"] for d in erp_now["deliveries"] for ln in d["lines"]
            for b in ln["batches"]] == ["B2611-0001"]
    text = render(result)
    assert number in text and f"DocNum {doc_num}" in text and "B2611-0001" in text
    as_json = json.loads(json.dumps(result.to_json()))
    assert as_json["found"] is True and len(as_json["events"]) == len(events)

    # The ERP's number, bare or as ERP-<DocNum>, finds the same order and the same events.
    for key in (str(doc_num), f"ERP-{doc_num}"):
        by_num = trace(stack.runtime.store, key, systems=systems(stack))
        assert by_num.found and by_num.kind == "order" and by_num.order is not None
        assert (by_num.order.order_number, by_num.order.crm_id) == (number, order_id)
        assert number in by_num.keys
        assert {e.message_id for e in by_num.events} >= {e.message_id for e in events}

    # The batch: the delivery that shipped it, and that message's life.
    batch = trace(stack.runtime.store, "B2611-0001", systems=systems(stack))
    assert batch.found and batch.kind == "batch" and batch.orders == [number]
    kinds = [(e.event, e.system) for e in batch.events]
    assert kinds[0] == ("observed", "erp") and ("applied", "crm") in kinds
    assert batch.events[0].detail["order_key"] == number
    assert [d["DocNum"] for d in batch.state["erp"]["deliveries"]] == [
        delivery.detail["delivery"]]
    assert batch.state["erp"]["deliveries"][0]["order_key"] == number
    assert batch.state["lims"]["lot"]["LOT_NAME"] == "B2611-0001"
    # Without the systems' engines the hub's own store still knows the batch.
    alone = trace(stack.runtime.store, "B2611-0001")
    assert alone.found and alone.orders == [number] and "erp" not in alone.state

    # Anything else is nothing known, not an error (case matters, even on MariaDB).
    for bad in [*BAD_KEYS, "b2611-0001", number.lower(), f"ERP-{doc_num}0"]:
        nothing = trace(stack.runtime.store, bad, systems=systems(stack))
        assert not nothing.found and nothing.kind == "unknown", bad
        assert nothing.message.startswith("nothing known about") and not nothing.events
    with stack.runtime.store.begin() as hub:
        assert hub.execute(select(func.count()).select_from(journal)).scalar_one() > 0


def test_a_step_applied_while_the_trace_is_read_is_shown_with_what_it_wrote(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trace reads the journal before the systems, so the state it shows is at least as
    new as its entries: here the delivery is applied in the CRM just as the journal is read,
    and the trace shows it applied only together with the CRM's shipment and batch."""
    order_id = stack.sales().submit_order(stack.account(), [LINE])
    doc = synced(stack, order_id).DocEntry
    number = crm_row(stack, order_id).order_number
    erp = stack.erp_user()
    erp.confirm(doc)
    wait_for(lambda: crm_row(stack, order_id).status == "confirmed", 30, "confirmed")
    stack.daemon.stop.set()
    stack.daemon.shutdown()
    erp.deliver(doc, [(0, D("1200"), "B2611-0001")])

    def applied() -> bool:
        with stack.runtime.store.reading() as hub:
            return hub.execute(select(func.count()).select_from(journal).where(
                journal.c.type == "delivery.posted",
                journal.c.event == "applied")).scalar_one() > 0

    journal_read = _Tracer._journal
    restarted: list[bool] = []

    def the_delivery_lands_now(self: _Tracer, hub: Any, keys: Any = (),
                               message_ids: Any = ()) -> list[Any]:
        if not restarted:
            restarted.append(True)
            restart(stack)
            wait_for(applied, 30, "the delivery applied in the CRM")
        return journal_read(self, hub, keys, message_ids)

    monkeypatch.setattr(_Tracer, "_journal", the_delivery_lands_now)
    result = trace(stack.runtime.store, number, systems=systems(stack))
    assert restarted and not result.errors
    assert any(is_("applied", "delivery.posted", "crm")(e) for e in result.events)
    shipments = result.state["crm"]["shipments"]
    assert [(ln["batch_number"], ln["quantity"]) for s in shipments for ln in s["lines"]] == [
        ("B2611-0001", D("1200"))]
    assert [b["batch"] for d in result.state["erp"]["deliveries"] for ln in d["lines"]
            for b in ln["batches"]] == ["B2611-0001"]
    assert result.batches == ["B2611-0001"]


def test_a_conflict_shows_both_values_and_the_winner(stack: Stack) -> None:
    sales, erp = stack.sales(), stack.erp_user()
    order_id = sales.submit_order(stack.account(), [LINE], notes="first")
    doc = synced(stack, order_id).DocEntry
    number = crm_row(stack, order_id).order_number
    stack.daemon.stop.set()
    stack.daemon.shutdown()
    sales.edit(order_id, notes="sales says")
    erp.comment(doc, "plant says")
    restart(stack)
    result = traced(stack, number, lambda t: bool(t.conflicts), "the conflict")
    # Let everything in flight be applied: the ERP's change too, when the ERP poller read it
    # before the CRM's change reached the ERP (it may not have: then the poller saw the hub's
    # own write and sent nothing). Whichever applier met the conflict, it is recorded once.

    def settled() -> bool:
        with stack.runtime.store.begin() as conn:
            pending = outbox_reading(conn).pending
        erp_now = erp_row(stack, order_id)
        return (sum(e.event == "applied" and e.type == "order.changed"
                    for e in trace(stack.runtime.store, number).events) >= 2
                and crm_row(stack, order_id).notes == "sales says"
                and erp_now is not None and erp_now.Comments == "sales says"
                and pending == 0 and not any(queue_depths(stack.runtime.bus).values()))

    for _ in range(3):  # settled, and still so a second later, twice
        wait_for(settled, 30, "both systems agreeing, nothing in flight")
        time.sleep(1)
    result = trace(stack.runtime.store, number, systems=systems(stack))
    notes = [c for c in result.conflicts if c.field == "notes"]
    assert len(notes) == 1 and len(result.conflicts) == 1
    for found in notes:
        assert (found.crm_value, found.erp_value, found.base_value, found.winner, found.key) == (
            "sales says", "plant says", "first", "crm", number)
    events = [e for e in result.events if e.event == "conflict"]
    assert len(events) == len(notes)
    assert all(e.outcome == "crm" and "CRM wins" in e.summary and "'plant says'" in e.summary
               for e in events)
    assert "conflicts:" in render(result)


def test_an_order_the_erp_refuses_shows_the_dead_letter_and_why(stack: Stack) -> None:
    order_id = stack.sales().submit_order(stack.account(), [Line("ETAC-99X", D("5"), D("1"))])
    wait_for(lambda: crm_row(stack, order_id).integration_status == "error", 30, "the error")
    number = crm_row(stack, order_id).order_number
    # The relay journals "published" once the bus has taken the message, which may be after
    # the CRM applier has already written the error: wait for both.
    status = is_("published", "order.status", "erp")
    result = traced(stack, number,
                    lambda t: bool(t.dead_letters) and any(status(e) for e in t.events),
                    "the dead letter and the status the ERP side published")
    (letter,) = result.dead_letters
    assert "ETAC-99X" in letter.reason and letter.type == "order.changed"
    assert letter.key == number and letter.error_code
    dead = [e for e in result.events if e.event == "dead_lettered"]
    assert dead and dead[0].system == "erp" and "ETAC-99X" in (dead[0].error or "")
    crm = result.state["crm"]
    assert crm["integration_status"] == "error" and "ETAC-99X" in crm["integration_message"]
    assert "erp" not in result.state and result.order is not None
    assert result.order.erp_doc_num is None
    assert "open dead letters:" in render(result) and "ETAC-99X" in render(result)


def test_an_order_entered_in_the_erp_is_found_by_its_docnum(stack: Stack) -> None:
    _, num = stack.erp_user().enter_order("C00043", [LINE])
    key = f"ERP-{num}"
    # Seen once in CI (embedded stack): a trace with the entry but not yet the CRM's row,
    # which the trace reads apart from the journal. Wait for both, and for the relay's
    # "published", which may be journaled after the CRM applied the message.
    result = traced(stack, key, lambda t: "crm" in t.state and all(
        any(match(e) for e in t.events)
        for match in (is_("applied", "order.changed", "crm"),
                      is_("published", "order.changed", "erp"))), "the order in the CRM")
    assert result.kind == "order" and result.order is not None
    assert result.order.erp_doc_num == num and result.order.order_number == key
    assert result.state["crm"]["order_number"] == key
    first(result.events, "the ERP's order", is_("published", "order.changed", "erp"))
    # Without the systems, the ERP's number alone still finds what the hub saw of it.
    alone = trace(stack.runtime.store, str(num))
    assert alone.found and alone.kind == "order" and key in alone.keys
    assert {e.message_id for e in alone.events} == {e.message_id for e in result.events}


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_bad_keys_are_nothing_known(sqlite_store: Store, bad: str) -> None:
    assert plausible_key(bad) is (bad not in MALFORMED)
    result = trace(sqlite_store, bad)
    assert (result.found, result.kind, result.events) == (False, "unknown", [])
    assert result.message.startswith("nothing known about ")
    assert len(result.message) < 120
    json.dumps(result.to_json())


def test_the_command_prints_the_timeline_or_json_and_exits_1_for_unknown_keys(
        tmp_path: Path) -> None:
    with running("embedded", tmp_path) as stack:
        order_id = stack.sales().submit_order(stack.account(), [LINE])
        synced(stack, order_id)
        number = crm_row(stack, order_id).order_number
        traced(stack, number, lambda t: any(is_("applied", "order.status", "crm")(e)
                                            for e in t.events), "the answer applied")
        # The embedded defaults: every file under HUB_VAR_DIR, as the stack has them.
        env = hub_env(HUB_VAR_DIR=str(tmp_path / "var"), HUB_LOG_FORMAT="console")

        def hub(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "hub", *args], env=env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=60)

        shown = hub("trace", number)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0].startswith(f"order {number} (CRM order {number}, ERP DocNum ")
        assert any(" crm " in ln and "published" in ln and "order.changed" in ln
                   for ln in lines)
        assert any(" erp " in ln and "applied" in ln and "erp-applier" in ln for ln in lines)
        assert "now:" in lines and any("integration synced" in ln for ln in lines)

        as_json = hub("trace", number, "--json")
        assert as_json.returncode == 0, as_json.stderr
        data = json.loads(as_json.stdout)
        assert data["found"] is True and data["order"]["crm_id"] == order_id
        assert data["events"][0]["event"] == "published"

        unknown = hub("trace", "SO-0000-000000")
        assert unknown.returncode == 1
        assert "nothing known about 'SO-0000-000000'" in unknown.stdout
        injected = hub("trace", "' OR 1=1 --", "--json")
        assert injected.returncode == 1 and json.loads(injected.stdout)["found"] is False


@pytest.fixture(params=["embedded", "real"])
def certified(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """The sync and the certificate service's applier."""
    with running(request.param, tmp_path, (*SYNC_PARTS, "certificates")) as built:
        yield built


def test_an_order_is_traced_from_the_crm_to_its_certificate_downloaded(
        certified: Stack) -> None:
    stack = certified
    order_id = stack.sales().submit_order(stack.account(), [LINE])
    doc = synced(stack, order_id).DocEntry
    number = crm_row(stack, order_id).order_number
    stack.erp_user().confirm(doc)
    wait_for(lambda: crm_row(stack, order_id).status == "confirmed", 30, "confirmed")
    stack.erp_user().deliver(doc, [(0, D("1200"), "B2611-0001")])
    traced(stack, "B2611-0001", lambda t: any(e.event == "certificate" and e.outcome == "issued"
                                              for e in t.events), "the certificate issued")
    with stack.runtime.store.begin() as conn:
        _, customer = ApiTokens.create(conn, CUSTOMER, "C00042")
        _, staff = ApiTokens.create(conn, STAFF, "ops-dora")
    with served(create_app(stack.runtime)) as http:
        pdf = http.get("/api/v1/certificates/B2611-0001/pdf",
                       headers={"Authorization": f"Bearer {customer}"})
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        wait_for(lambda: crm_row(stack, order_id).status == "shipped", 30, "shipped")
        result = traced(stack, number, delivered, "the delivery published and in the CRM")
        answer = http.get(f"/api/v1/trace/{number}",
                          headers={"Authorization": f"Bearer {staff}"})
        assert answer.status_code == 200
        over_http = answer.json()

    events = result.events
    assert [e.at for e in events] == sorted(e.at for e in events)
    steps = [
        first(events, "the CRM change", is_("published", "order.changed", "crm")),
        first(events, "the ERP write", is_("applied", "order.changed", "erp")),
        first(events, "the ERP's answer", is_("published", "order.status", "erp")),
        first(events, "the answer in the CRM", is_("applied", "order.status", "crm")),
        first(events, "the delivery with its batch", is_("observed", "delivery.posted", "erp")),
        first(events, "the delivery published", is_("published", "delivery.posted", "erp")),
        first(events, "the certificate issued",
              lambda e: e.event == "certificate" and e.outcome == "issued"),
        first(events, "the certificate downloaded", lambda e: e.event == "downloaded"),
    ]
    # The ERP's answer leaves (outbox) inside the ERP write, before its "applied" entry.
    assert steps[0] < steps[1] and steps[0] < steps[2] and steps[2:] == sorted(steps[2:]), \
        "\n".join(f"{e.at} {e.event} {e.summary}" for e in events)
    crm_change, delivery = events[steps[0]], events[steps[4]]
    assert crm_change.detail["body"]["order"]["lines"][0]["product_code"] == "ETAC-99"
    assert "1 line(s)" in crm_change.summary, "what was sent"
    assert [b["batch"] for b in delivery.detail["batches"]] == ["B2611-0001"]
    issued, downloaded = events[steps[6]], events[steps[7]]
    assert issued.key == "B2611-0001" and issued.detail["customer"] == "C00042"
    assert downloaded.key == "B2611-0001" and downloaded.detail["by"] == "C00042"
    assert downloaded.detail["certificates"] == [{
        "number": issued.detail["number"], "version": 1, "customer": "C00042"}]
    assert f"{issued.detail['number']} v1 downloaded as pdf (en) by customer C00042" in \
        downloaded.summary
    assert any(is_("applied", "delivery.posted", "crm")(e) for e in events)

    # The API's trace is the same timeline.
    assert [(e["event"], e["message_id"]) for e in over_http["events"]] == [
        (e.event, e.message_id) for e in events][:len(over_http["events"])]
    assert "downloaded" in [e["event"] for e in over_http["events"]]

    # And so is the command's, in time order.
    env = hub_env(HUB_DATABASE_URL=stack.settings.database,
                  **{f"HUB_{s.upper()}_URL": stack.settings.system_url(s)
                     for s in ("crm", "erp", "lims")})
    shown = subprocess.run([sys.executable, "-m", "hub", "trace", number], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    wanted = ["CRM order change (order.changed) published",
              "ERP's answer (order.status) published", "applied by crm-applier",
              "observed       delivery", "ERP delivery (delivery.posted) published",
              f"certificate {issued.detail['number']} v1 issued",
              f"certificate {issued.detail['number']} v1 downloaded"]
    at = [next(i for i, ln in enumerate(lines) if w in ln) for w in wanted]
    assert at == sorted(at), shown.stdout
    stamps = [ln[:23] for ln in lines if ln[:4].isdigit()]
    assert stamps == sorted(stamps)

    # The batch's own trace shows the download as well.
    batch = trace(stack.runtime.store, "B2611-0001")
    assert any(e.event == "downloaded" for e in batch.events)
