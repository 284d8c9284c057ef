"""A consumer in its own process, for tests that kill it.

``python tests/bus/consumer_proc.py KIND STORE_URL EXCHANGE AMQP_URL QUEUE MODE LOG LIMIT``

KIND is one of ``tests.bus.kit.KINDS``; LIMIT the delivery limit. Every delivery is first
written to LOG (``<message_id> <attempt> <redelivered>``), then its effect is recorded through
the idempotent inbox in one transaction, so a redelivery has no second effect. Modes:

- ``die-after-commit``: SIGKILL this process after the first batch's effects commit, before
  the bus can ack it;
- ``die-on-poison``: SIGKILL this process whenever a batch holds a body containing
  ``kill-me`` (before any effect), as a message that crashes its consumer would;
- ``run``: just consume.

Runs until SIGTERM, then stops cleanly (exit status 0).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence

sys.path.insert(0, os.getcwd())

from hub.bus.base import Incoming, Subscription
from hub.store import Store
from hub.store.inbox import Inbox
from tests.bus.kit import make_bus


def main() -> None:
    kind, store_url, exchange, amqp_url, queue, mode, log_path, limit = sys.argv[1:9]
    store = Store(store_url)
    bus = make_bus(kind, store, exchange, amqp_url, delivery_limit=int(limit))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def handler(batch: Sequence[Incoming]) -> list[BaseException | None]:
        with open(log_path, "a", encoding="utf-8") as log:
            for m in batch:
                log.write(f"{m.message_id} {m.attempt} {int(m.redelivered)}\n")
            log.flush()
            os.fsync(log.fileno())
        if mode == "die-on-poison" and any(b"kill-me" in m.body for m in batch):
            os.kill(os.getpid(), signal.SIGKILL)
        with store.begin() as conn:
            Inbox.claim(conn, queue, [m.message_id for m in batch])
        if mode == "die-after-commit":
            os.kill(os.getpid(), signal.SIGKILL)
        return [None] * len(batch)

    bus.consume(Subscription(queue, ("crm.#",)), handler, stop)
    bus.close()
    store.dispose()


if __name__ == "__main__":
    main()
