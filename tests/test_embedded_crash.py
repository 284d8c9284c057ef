"""The embedded default loses nothing a source committed when the daemon is SIGKILLed."""

from __future__ import annotations

import signal
from pathlib import Path

from sqlalchemy import func, select

from hub.bus.base import Subscription
from hub.bus.embedded import EmbeddedBus
from hub.model import LotReleased
from hub.model.records import Lot
from hub.outbox import Outbox
from hub.store import Store
from hub.store.tables import bus_message, outbox
from tests.helpers import daemon, free_port, hub_env, wait_for

COUNT = 5000


def test_sigkill_while_relaying_loses_nothing_and_restart_finishes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/var/hub.db"
    store = Store(url)
    store.migrate()
    EmbeddedBus(store).declare(Subscription("certificates", ("lims.lot.released.*",)))
    messages = [LotReleased(correlation_key=f"B{i:05}", source="lims", source_version="1",
                            lot=Lot(lot_name=f"B{i:05}", released=True)) for i in range(COUNT)]
    with store.begin() as conn:
        for start in range(0, COUNT, 500):
            Outbox.add(conn, messages[start:start + 500], partitions=4)

    def counts() -> tuple[int, int]:
        # A read-only transaction: a writer's would queue behind the relay's back-to-back
        # batches on SQLite's one write lock and could see nothing until the relay was done.
        with store.reading() as conn:
            waiting = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
            queued = conn.execute(
                select(func.count(func.distinct(bus_message.c.message_id)))
            ).scalar_one()
        return int(waiting), int(queued)

    # Small relay batches (about a second for the backlog here) and a quick look, so the
    # kill lands with most of the backlog still waiting.
    env = hub_env(HUB_DATABASE_URL=url, HUB_HTTP_PORT=str(free_port()), HUB_PUBLISH_BATCH="10")
    with daemon(tmp_path, env, "--only", "relay") as proc:
        wait_for(lambda: counts()[1] > 0, 60, "the relay to start publishing", every=0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    waiting, queued = counts()
    assert waiting > 0, "the kill landed in the middle of the backlog"
    assert waiting + queued >= COUNT, "every message is either still waiting or in its queue"
    with daemon(tmp_path, env, "--only", "relay") as proc:
        wait_for(lambda: counts() == (0, COUNT), 120, "the restarted relay to finish")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    with store.begin() as conn:
        ids = {r.message_id for r in conn.execute(select(bus_message.c.message_id))}
    assert ids == {str(m.message_id) for m in messages}, "nothing lost"
