"""The parts the daemon runs. Each can run alone (``hub run --only NAME``) on its own machine.

A part is a loop that runs until its stop event is set. Connectors add theirs to
:func:`build_parts`; every part lists the subscriptions it consumes, and the daemon declares
all of them at start, whichever parts this process runs, so no publish is unroutable because
its consumer happens to live in another process that has not started yet.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from hub.bus.base import Subscription
from hub.errors import HubError
from hub.journal import prune
from hub.outbox import OutboxRelay
from hub.runtime import Runtime
from hub.store.inbox import Inbox
from hub.store.statistics import refresh_statistics
from hub.store.types import utcnow
from hub.tally import fold

__all__ = ["DeadLetterRelay", "Housekeeping", "HttpService", "Part", "Relay", "build_parts",
           "part_types"]

log = logging.getLogger(__name__)


class Part(ABC):
    """One long-running piece of the daemon."""

    name: ClassVar[str]
    #: Seconds past the shutdown grace the daemon waits for this part's thread: what the
    #: part needs after the grace to end what did not stop in it (see :class:`hub.apart.Children`).
    stop_margin: ClassVar[float] = 0.0

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.last_poll_at: dt.datetime | None = None

    def subscriptions(self) -> Sequence[Subscription]:
        """Queues this part consumes; declared at start by every process."""
        return ()

    @abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; return promptly after."""

    def detail(self) -> dict[str, Any]:
        """Figures for ``status`` and the heartbeat."""
        return {}


class Relay(Part):
    """Publishes the outbox to the bus."""

    name = "relay"

    def run(self, stop: threading.Event) -> None:
        OutboxRelay(
            self.runtime.store, self.runtime.bus, wakeup=self.runtime.outbox_wakeup,
            batch_size=self.runtime.settings.publish_batch,
        ).run(stop)


class DeadLetterRelay(Part):
    """Moves dead letters the broker holds into the store, where operations see them."""

    name = "deadletters"

    def run(self, stop: threading.Event) -> None:
        self.runtime.bus.relay_dead_letters(stop)


class Housekeeping(Part):
    """Keeps the store's planner statistics fresh while its tables grow (every few seconds,
    see :mod:`hub.store.statistics`) and prunes the journal and the inbox past the retention
    window (hourly)."""

    name = "housekeeping"
    interval = 3600.0
    statistics_interval = 2.0

    def run(self, stop: threading.Event) -> None:
        prune_at = 0.0
        while not stop.is_set():
            if time.monotonic() >= prune_at:
                self._prune()
                prune_at = time.monotonic() + self.interval
            try:
                with self.runtime.store.begin() as conn:
                    refresh_statistics(conn)
                self.last_poll_at = utcnow()
            except HubError as exc:
                log.warning("housekeeping: statistics: %s", exc)
            stop.wait(self.statistics_interval)

    def _prune(self) -> None:
        cutoff = utcnow() - dt.timedelta(days=self.runtime.settings.retention_days)
        try:
            with self.runtime.store.begin() as conn:
                fold(conn, cutoff)  # what the journal loses, metrics keep counting
                gone = prune(conn, cutoff) + Inbox.prune(conn, cutoff)
            if gone:
                log.info("pruned %d journal and inbox rows older than %s", gone, cutoff)
        except HubError as exc:
            log.warning("housekeeping: %s", exc)


class HttpService(Part):
    """Health, readiness, metrics and the API, served by uvicorn."""

    name = "http"

    def run(self, stop: threading.Event) -> None:
        import uvicorn

        from hub.http.app import create_app

        settings = self.runtime.settings
        server = uvicorn.Server(uvicorn.Config(
            create_app(self.runtime), host=settings.http_host, port=settings.http_port,
            log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5,
        ))

        def watch() -> None:
            stop.wait()
            server.should_exit = True

        threading.Thread(target=watch, name="http-stop", daemon=True).start()
        server.run()
        if not stop.is_set():
            raise RuntimeError(
                f"HTTP service stopped: cannot serve on {settings.http_host}:{settings.http_port}"
            )


def part_types() -> list[type[Part]]:
    """Every kind of part the hub has, in start order (the composition root: connectors plug
    in here)."""
    from certificates.parts import CertificateApplier, CertificateWatcher
    from connectors.crm.sync import CrmApplier, CrmPoller
    from connectors.erp.poller import ErpPoller
    from connectors.erp.sync import ErpApplier

    return [
        Relay, DeadLetterRelay, Housekeeping,
        CrmPoller, ErpPoller, ErpApplier, CrmApplier,
        CertificateApplier, CertificateWatcher,
        HttpService,
    ]


def build_parts(runtime: Runtime) -> list[Part]:
    """Every part the hub has, in start order."""
    return [kind(runtime) for kind in part_types()]
