"""A consumer in its own process, for tests that kill it: ``python consumer_proc.py KIND
STORE_URL EXCHANGE AMQP_URL QUEUE MODE``.

Each message's effect is an inbox row written in one transaction with the claim, so a
redelivery has no second effect. ``die-after-commit`` SIGKILLs the process after the first
batch's effects commit and before the bus can ack; ``count-redeliveries`` runs until SIGTERM.
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
    kind, store_url, exchange, amqp_url, queue, mode = sys.argv[1:7]
    store = Store(store_url)
    bus = make_bus(kind, store, exchange, amqp_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def handler(batch: Sequence[Incoming]) -> list[BaseException | None]:
        with store.begin() as conn:
            Inbox.claim(conn, queue, [m.message_id for m in batch])
        if mode == "die-after-commit":
            os.kill(os.getpid(), signal.SIGKILL)
        return [None] * len(batch)

    bus.consume(Subscription(queue, ("crm.#",)), handler, stop)
    bus.close()


if __name__ == "__main__":
    main()
