"""What the dashboard shows, arranged for its pages.

Every figure comes from :mod:`hub.readings`, which ``/metrics`` and ``hub status`` read too,
so the three agree by construction; this module only arranges them for the page:

- **flows**: one row per route operations know by name (shown even when idle, in a fixed
  order), then any other route that moved, then the certificates the certificate service
  issued or could not issue yet, all over the last five minutes;
- **lag**, **parts**, **queues**, **conflicts**, **dead letters** (how many are open): as
  read (``figures``);
- **dead letters**: the latest as rows to act on (:class:`hub.store.deadletters.DeadLetters`);
- **history**: :func:`hub.readings.series` over the last hours in a fixed number of steps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from hub import readings
from hub.bus.base import Bus
from hub.errors import HubError
from hub.store.db import Store
from hub.store.deadletters import DeadLetter, DeadLetters
from hub.store.types import utcnow

__all__ = ["FLOWS", "FlowRow", "History", "Overview", "history", "overview"]

#: The window of the live rates.
RATE_WINDOW = dt.timedelta(minutes=5)
#: The flows always shown (even when idle), in order: (route, what, source, type, target as
#: :func:`hub.readings.target_of` names it).
FLOWS: tuple[tuple[str, str, str, str, str], ...] = (
    ("CRM → ERP", "orders", "crm", "order.changed", "erp"),
    ("CRM → ERP", "customers", "crm", "party.changed", "erp"),
    ("ERP → CRM", "answers (DocNum, status)", "erp", "order.status", "crm"),
    ("ERP → CRM", "order changes", "erp", "order.changed", "crm"),
    ("ERP → CRM", "deliveries", "erp", "delivery.posted", "crm"),
    ("ERP → CRM", "customers", "erp", "party.changed", "crm"),
    ("ERP → certificates", "deliveries (who got which batch)", "erp", "delivery.posted",
     "certificates"),
)
_SYSTEM_NAMES = {"crm": "CRM", "erp": "ERP", "lims": "LIMS", "hub": "hub"}
_NO_OUTBOX = readings.OutboxReading(0, 0.0)


@dataclass(frozen=True)
class FlowRow:
    """One line of the flows table: a route as operations name it, and its figures over the
    rate window (``failed`` counts retries and dead letters)."""

    route: str
    what: str
    key: str
    applied: int = 0
    failed: int = 0
    dead: int = 0
    p95: float | None = None
    per_minute: float = 0.0

    @classmethod
    def of(cls, route: str, what: str, key: str, flow: readings.Flow | None) -> FlowRow:
        if flow is None:
            return cls(route, what, key)
        return cls(route, what, key, flow.applied, flow.retried + flow.dead_lettered,
                   flow.dead_lettered, flow.latency.quantile(0.95), flow.rate_per_minute)


@dataclass(frozen=True)
class Overview:
    """One reading of everything the overview page shows."""

    figures: readings.Readings  # shown as read: parts, sources, queues, dead letters open
    flows: list[FlowRow]
    dead_letters: list[DeadLetter]  # the latest, to act on
    errors: list[str]

    @property
    def outbox(self) -> readings.OutboxReading:
        return self.figures.outbox or _NO_OUTBOX

    @property
    def awaiting(self) -> readings.OrdersAwaiting | None:
        """CRM orders awaiting the ERP, as the CRM poller last counted them."""
        return readings.orders_awaiting(self.figures.components, now=self.figures.at)

    @property
    def conflicts(self) -> Sequence[readings.ConflictSeen]:
        return self.figures.conflicts.recent if self.figures.conflicts else ()

    def routes(self) -> list[tuple[str, float, int]]:
        """Per route (``CRM → ERP`` ...), in flow order: messages per minute and failures."""
        totals: dict[str, tuple[float, int]] = {}
        for f in self.flows:
            rate, failed = totals.get(f.route, (0.0, 0))
            totals[f.route] = (rate + f.per_minute, failed + f.failed)
        return [(route, rate, failed) for route, (rate, failed) in totals.items()]

    @property
    def healthy(self) -> bool:
        running = [p for p in self.figures.components if p.state != "stopped"]
        return not self.errors and bool(running) and all(p.up for p in running)


def overview(store: Store, bus: Bus | None, *, now: dt.datetime | None = None,
             conflicts: int = 10, letters: int = 10) -> Overview:
    """Read the overview; what cannot be read is listed in ``errors``, never raised."""
    found = readings.read(store, bus, window=RATE_WINDOW, recent_conflicts=conflicts, now=now)
    errors = list(found.errors)
    latest: list[DeadLetter] = []
    if found.outbox is not None:  # the store answered
        try:
            with store.reading("hub store: read for the dashboard") as conn:
                latest = DeadLetters.list(conn, status="dead", limit=letters)
        except HubError as exc:
            errors.append(f"store: {exc}")
    return Overview(found, _flows(found), latest, errors)


def _flows(found: readings.Readings) -> list[FlowRow]:
    moved = {f"{f.route.source}:{f.route.type}:{f.route.target}": f for f in found.flows}
    rows = []
    for route, what, source, type_, target in FLOWS:
        key = f"{source}:{type_}:{target}"
        rows.append(FlowRow.of(route, what, key, moved.pop(key, None)))
    for key, f in moved.items():  # routes outside FLOWS that moved, under their own names
        route = (f"{_SYSTEM_NAMES.get(f.route.source, f.route.source)} → "
                 f"{_SYSTEM_NAMES.get(f.route.target, f.route.target)}")
        rows.append(FlowRow.of(route, f.route.type, key, f))
    minutes = found.window_seconds / 60.0
    issued = found.certificate_outcomes.get("issued", 0)
    blocked = sum(n for o, n in found.certificate_outcomes.items() if o != "issued")
    return [*rows,
            FlowRow("LIMS → certificates", "certificates issued", "lims:certificate:issued",
                    issued, per_minute=issued / minutes),
            FlowRow("LIMS → certificates", "certificates not issued yet",
                    "lims:certificate:blocked", blocked, per_minute=blocked / minutes)]


# -- history ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """Throughput and latency per step over the last hours (:func:`hub.readings.series`)."""

    step: dt.timedelta
    points: list[readings.SeriesPoint]

    @property
    def start(self) -> dt.datetime:
        return self.points[0].start if self.points else utcnow()


def history(store: Store, *, hours: int = 6, buckets: int = 36,
            now: dt.datetime | None = None) -> History:
    """``buckets`` steps over the last ``hours``. Raises HubError when the store cannot be
    read."""
    step = dt.timedelta(seconds=max(1, int(hours * 3600 / buckets)))
    with store.reading("hub store: read for the dashboard") as conn:
        points = readings.series(conn, hours=hours, step=step, now=now)
    return History(step, points)
