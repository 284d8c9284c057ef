"""``hub dead-letters list / show / replay / discard`` against a real store and bus."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from hub.bus.base import Incoming, Outgoing, Subscription
from hub.bus.embedded import EmbeddedBus
from hub.errors import UnknownReference
from hub.model.messages import OrderChanged, encode
from hub.model.records import Order, OrderLine
from hub.store import Store
from hub.store.tables import dead_letter, journal
from tests.helpers import hub_env, wait_for


def hub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_dead_letters_can_be_listed_shown_replayed_and_discarded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    env = hub_env(HUB_DATABASE_URL=url)
    store = Store(url)
    store.migrate()
    bus = EmbeddedBus(store, poll_interval=0.05)
    sub = Subscription("erp.orders", ("crm.#",))
    bus.declare(sub)
    first = Outgoing("11111111-1111-1111-1111-111111111111", "crm.order.changed.p0",
                     b'{"order": "SO-2026-000123"}', {"x-hub-key": "SO-2026-000123"})
    second = Outgoing("22222222-2222-2222-2222-222222222222", "crm.order.changed.p0",
                      b'{"order": "SO-2026-000124"}', {"x-hub-key": "SO-2026-000124"})
    accept = threading.Event()
    applied: list[str] = []

    def handler(batch: Sequence[Incoming]) -> list[BaseException | None]:
        if not accept.is_set():
            return [UnknownReference("item ETAC-99X does not exist in the ERP")] * len(batch)
        applied.extend(m.message_id for m in batch)
        return [None] * len(batch)

    stop = threading.Event()
    consumer = threading.Thread(target=bus.consume, args=(sub, handler, stop))
    consumer.start()
    try:
        bus.publish([first, second])
        wait_for(lambda: "SO-2026-000124" in hub(env, "dead-letters", "list").stdout, 30)
        listed = hub(env, "dead-letters", "list").stdout
        assert "item ETAC-99X does not exist in the ERP" in listed
        assert "SO-2026-000123" in listed and "erp.orders" in listed
        ids = sorted(int(line.split()[0]) for line in listed.splitlines()[1:])

        shown = hub(env, "dead-letters", "show", str(ids[0]))
        assert shown.returncode == 0
        assert "unknown_reference" in shown.stdout and '"order": "SO-2026-000123"' in shown.stdout

        accept.set()  # the cause is fixed: the item now exists
        replayed = hub(env, "dead-letters", "replay", str(ids[0]), "--by", "ops-anna")
        assert replayed.returncode == 0, replayed.stderr
        assert "sent back to erp.orders" in replayed.stdout
        wait_for(lambda: applied == [first.message_id], 30, "the replayed message applied")

        again = hub(env, "dead-letters", "replay", str(ids[0]))
        assert again.returncode == 1 and "already replayed" in again.stdout

        no_reason = hub(env, "dead-letters", "discard", str(ids[1]))
        assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
        discarded = hub(env, "dead-letters", "discard", str(ids[1]), "--reason",
                        "customer cancelled by phone", "--by", "ops-anna")
        assert discarded.returncode == 0
        assert hub(env, "dead-letters", "list").stdout.strip() == "no dead letters"
        assert "replayed" not in hub(env, "dead-letters", "list", "--status", "replayed").stdout \
            .splitlines()[0]
        assert hub(env, "dead-letters", "show", "999").returncode == 1
    finally:
        stop.set()
        consumer.join(10)
    with store.begin() as conn:
        events = conn.execute(
            select(journal.c.event, journal.c.message_id, journal.c.error, journal.c.detail)
            .where(journal.c.event.in_(["replayed", "discarded"])).order_by(journal.c.id)
        ).all()
    assert [(e.event, e.message_id) for e in events] == [
        ("replayed", first.message_id), ("discarded", second.message_id)]
    assert "ops-anna" in events[0].detail and events[1].error == "customer cancelled by phone"


def _order_message(product: str = "ETAC-99X") -> OrderChanged:
    return OrderChanged(
        correlation_key="SO-2026-000200", source="crm", source_version="3",
        order=Order(order_number="SO-2026-000200", customer="C00042", status="submitted",
                    currency="EUR", notes="deliver Friday",
                    lines=(OrderLine(line_no=1, product_code=product, quantity=Decimal("5"),
                                     unit="kg", unit_price=Decimal("2")),)))


def test_a_wrong_message_is_edited_validated_and_replayed_with_the_edit_journaled(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    env = hub_env(HUB_DATABASE_URL=url)
    store = Store(url)
    store.migrate()
    bus = EmbeddedBus(store, poll_interval=0.05)
    sub = Subscription("erp-applier.p0", ("crm.order.changed.p0",))
    bus.declare(sub)
    wrong = _order_message()
    applied: list[OrderChanged] = []

    def handler(batch: Sequence[Incoming]) -> list[BaseException | None]:
        out: list[BaseException | None] = []
        for m in batch:
            message = m.decode()
            assert isinstance(message, OrderChanged)
            if message.order.lines[0].product_code == "ETAC-99X":
                out.append(UnknownReference("item ETAC-99X does not exist in the ERP"))
            else:
                applied.append(message)
                out.append(None)
        return out

    stop = threading.Event()
    consumer = threading.Thread(target=bus.consume, args=(sub, handler, stop))
    consumer.start()
    try:
        bus.publish([Outgoing.of(wrong, 1)])
        wait_for(lambda: "SO-2026-000200" in hub(env, "dead-letters", "list").stdout, 30)
        (line,) = hub(env, "dead-letters", "list").stdout.splitlines()[1:]
        letter = line.split()[0]

        # Invalid edits are refused with the reason, and change nothing.
        bad = hub(env, "dead-letters", "edit", letter, "--set", "order.lines.0.quantity=-1")
        assert bad.returncode == 1 and "canonical model" in bad.stdout, bad.stdout + bad.stderr
        assert "quantity" in bad.stdout
        no_path = hub(env, "dead-letters", "edit", letter, "--set", "order.lines.7.unit=kg")
        assert no_path.returncode == 1 and "no item 7" in no_path.stderr
        same = hub(env, "dead-letters", "edit", letter, "--set", "order.notes=deliver Friday")
        assert same.returncode == 1 and "changes nothing" in same.stdout
        rekeyed = hub(env, "dead-letters", "edit", letter, "--set",
                      "correlation_key=SO-2026-000999")
        assert rekeyed.returncode == 1 and "correlation key cannot be edited" in rekeyed.stdout
        other = json.loads(encode(wrong))
        other["type"] = "order.status"
        other["integration_status"] = "synced"
        del other["order"]
        (tmp_path / "other.json").write_text(json.dumps(other))
        retyped = hub(env, "dead-letters", "edit", letter, "--body", str(tmp_path / "other.json"))
        assert retyped.returncode == 1 and "carries a crm order.changed" in retyped.stdout
        (tmp_path / "junk.json").write_text("{not json")
        junk = hub(env, "dead-letters", "edit", letter, "--body", str(tmp_path / "junk.json"))
        assert junk.returncode == 1 and "not a JSON object" in junk.stdout
        assert letter in hub(env, "dead-letters", "list").stdout, "still dead after bad edits"
        assert not applied

        # $EDITOR that saves nothing: nothing happens.
        (tmp_path / "noop.sh").write_text("#!/bin/sh\nexit 0\n")
        (tmp_path / "noop.sh").chmod(0o755)
        unsaved = subprocess.run([sys.executable, "-m", "hub", "dead-letters", "edit", letter],
                                 env={**env, "EDITOR": str(tmp_path / "noop.sh")},
                                 capture_output=True, text=True, timeout=60)
        assert unsaved.returncode == 1 and "not saved" in unsaved.stderr

        # $EDITOR that corrects the item: validated, replayed, applied.
        (tmp_path / "fix.sh").write_text(
            "#!/bin/sh\nsed -i 's/ETAC-99X/ETAC-99/' \"$1\"\n")
        (tmp_path / "fix.sh").chmod(0o755)
        fixed = subprocess.run([sys.executable, "-m", "hub", "dead-letters", "edit", letter,
                                "--by", "ops-anna"],
                               env={**env, "EDITOR": str(tmp_path / "fix.sh")},
                               capture_output=True, text=True, timeout=60)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert 'order.lines.0.product_code: "ETAC-99X" -> "ETAC-99"' in fixed.stdout
        assert "edited and sent back to erp-applier.p0" in fixed.stdout
        wait_for(lambda: len(applied) == 1, 30, "the edited message applied")
        assert applied[0].message_id == wrong.message_id, "the id stays: no double apply"
        assert applied[0].order.lines[0].product_code == "ETAC-99"

        again = hub(env, "dead-letters", "edit", letter, "--set", "order.notes=x")
        assert again.returncode == 1 and "already replayed" in again.stdout
        shown = hub(env, "dead-letters", "show", letter).stdout
        assert '"product_code": "ETAC-99X"' in shown, "the original stays retrievable"
        assert "edited:" in shown and "by ops-anna" in shown
        assert 'order.lines.0.product_code: "ETAC-99X" -> "ETAC-99"' in shown
    finally:
        stop.set()
        consumer.join(10)
    with store.begin() as conn:
        rows = conn.execute(select(journal).where(journal.c.event.in_(["edited", "replayed"]))
                            .order_by(journal.c.id)).all()
    assert [r.event for r in rows] == ["edited", "replayed"]
    detail = json.loads(rows[0].detail)
    assert detail["by"] == "ops-anna" and detail["changes"] == [
        {"path": "order.lines.0.product_code", "before": "ETAC-99X", "after": "ETAC-99"}]
    assert "ETAC-99X" in detail["before"] and '"ETAC-99"' in detail["after"]
    assert rows[0].message_id == str(wrong.message_id)
    assert rows[0].correlation_key == "SO-2026-000200"
    with store.begin() as conn:
        stored = conn.execute(select(dead_letter)).one()
    assert b"ETAC-99X" in stored.body.encode() and stored.status == "replayed"
    assert stored.resolved_by == "ops-anna" and "order.lines.0.product_code" in stored.note
