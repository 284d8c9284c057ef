"""``hub dead-letters list / show / replay / discard`` against a real store and bus."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from hub.bus.base import Incoming, Outgoing, Subscription
from hub.bus.embedded import EmbeddedBus
from hub.errors import UnknownReference
from hub.store import Store
from hub.store.tables import journal
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
