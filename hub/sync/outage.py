"""An applier waits out an outage of the systems it needs, holding its batch.

When a batch fails because a system does not answer (the ERP's database is restarting, the
network to it is down), retrying each message on its own schedule spends the messages'
retries on the outage: every message in flight climbs the retry delays (1, 5, 30, 120,
600 s) however short the outage was, and one longer than those delays together sends them
all to dead letters. So the applier first asks the systems themselves
(:meth:`Outage.unreachable`). If one does not answer, the consumer keeps the batch, asks
again every few seconds, and applies the batch once they answer, none of its messages any
the worse. A batch is held for at most the hold limit (``HUB_OUTAGE_HOLD``, and less than
the bus would wait for its ack), then takes the retry path after all.

One outage is one state per part, shared by its consumers (one per partition): it is logged
once when it begins and once when it ends, and the heartbeat shows it (:meth:`detail`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hub.components import HELD_KEY, SINCE_KEY, WHY_KEY
from hub.errors import Contention, DatabaseUnavailable, HubError
from hub.store.types import utcnow

__all__ = ["Outage", "is_outage"]

log = logging.getLogger(__name__)

_FIRST_PROBE, _PROBE_CAP = 0.5, 5.0  # seconds between probes: doubling, capped


def is_outage(error: BaseException | None) -> bool:
    """A failure that may be an outage of a system (a deadlock is not one)."""
    return isinstance(error, DatabaseUnavailable) and not isinstance(error, Contention)


class Outage:
    """The outage ``part`` is waiting out, if any. ``probe`` raises a
    :class:`~hub.errors.HubError` saying what does not answer."""

    def __init__(self, part: str, probe: Callable[[], None]) -> None:
        self.part = part
        self._probe = probe
        self._lock = threading.Lock()
        self._since: float | None = None  # monotonic
        self._since_at: str | None = None  # UTC, ISO
        self._why = ""
        self._held = 0

    def unreachable(self) -> str | None:
        """Why the systems do not answer now, or None when they all do."""
        try:
            self._probe()
        except HubError as exc:
            return str(exc) or type(exc).__name__
        return None

    def wait(self, count: int, stop: threading.Event, until: float) -> bool:
        """Hold ``count`` messages while the systems do not answer: True once they do
        again (apply the messages now); False at once when they answer already (the failure
        was something else), or when ``stop`` is set or the monotonic ``until`` passes
        first (the messages take the retry path)."""
        why = self.unreachable()
        if why is None:
            return False
        self._begin(why, count)
        try:
            delay = _FIRST_PROBE
            while not stop.wait(min(delay, max(0.0, until - time.monotonic()))):
                if time.monotonic() >= until:
                    log.warning("%s: held %d messages as long as it may; they take the "
                                "retry path (%s)", self.part, count, why)
                    return False
                still = self.unreachable()
                if still is None:
                    self._end()
                    return True
                why, delay = still, min(delay * 2, _PROBE_CAP)
            return False
        finally:
            with self._lock:
                self._held -= count
                if not self._held:  # given up on: the next batch that fails looks again
                    self._since = self._since_at = None

    def _begin(self, why: str, count: int) -> None:
        with self._lock:
            self._held += count
            self._why = why
            if self._since is None:
                self._since, self._since_at = time.monotonic(), utcnow().isoformat()
                log.warning("%s: %s; holding its messages until it answers", self.part, why)

    def _end(self) -> None:
        with self._lock:
            if self._since is not None:
                log.info("%s: answered again after %.1f s; applying the messages held",
                         self.part, time.monotonic() - self._since)
                self._since = self._since_at = None

    def detail(self) -> dict[str, object]:
        """For the heartbeat: the messages held now, and since when and why, during an
        outage; nothing otherwise."""
        with self._lock:
            if self._since is None:
                return {}
            return {HELD_KEY: self._held, SINCE_KEY: self._since_at, WHY_KEY: self._why}
