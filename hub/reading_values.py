"""The values :mod:`hub.readings` reads: routes, flows, series points and the health of each
part, as frozen dataclasses, and :meth:`Readings.as_dict` for plain JSON-able data. Import
them from :mod:`hub.readings`."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.store.histograms import Histogram
from hub.tally import LATENCY_BUCKETS
from hub.trace_view import parse_json

__all__ = [
    "CertificateReading",
    "ComponentHealth",
    "ConflictCount",
    "ConflictReading",
    "ConflictSeen",
    "ConnectorHealth",
    "DeadLetterCount",
    "Flow",
    "OrdersAwaiting",
    "OutboxReading",
    "ProcessMemory",
    "Readings",
    "Route",
    "RouteCount",
    "SeriesPoint",
    "SourceLag",
]


@dataclass(frozen=True, order=True)
class Route:
    """A message type flowing from a source system to a target."""

    type: str
    source: str
    target: str

    def __str__(self) -> str:
        return f"{self.type} {self.source}→{self.target}"


@dataclass(frozen=True)
class RouteCount:
    route: Route
    outcome: str
    count: int


@dataclass(frozen=True)
class Flow:
    """One route over a window: outcomes, rate and latency."""

    route: Route
    window_seconds: float
    applied: int = 0
    retried: int = 0
    dead_lettered: int = 0
    latency: Histogram = field(default_factory=lambda: Histogram.empty(LATENCY_BUCKETS))

    @property
    def rate_per_minute(self) -> float:
        """Applied messages per minute over the window."""
        return 60.0 * self.applied / self.window_seconds if self.window_seconds else 0.0


@dataclass(frozen=True)
class SeriesPoint:
    """Totals over every route for one step of a chart, starting at ``start``."""

    start: dt.datetime
    published: int = 0
    applied: int = 0
    retried: int = 0
    dead_lettered: int = 0
    latency: Histogram = field(default_factory=lambda: Histogram.empty(LATENCY_BUCKETS))


@dataclass(frozen=True)
class OutboxReading:
    pending: int
    oldest_age_seconds: float


@dataclass(frozen=True)
class DeadLetterCount:
    status: str  # dead | replayed | discarded
    queue: str
    error_code: str
    count: int


@dataclass(frozen=True)
class ConflictCount:
    kind: str
    field: str
    winner: str
    count: int


@dataclass(frozen=True)
class ConflictSeen:
    """One recent conflict: both values (JSON text), the base, and which side won."""

    id: int
    at: dt.datetime
    kind: str
    correlation_key: str | None
    field: str
    crm_value: str | None
    erp_value: str | None
    base_value: str | None
    winner: str
    message_id: str | None

    # The values as JSON data (text that is not JSON as itself), for showing.
    @property
    def crm(self) -> Any:
        return parse_json(self.crm_value)

    @property
    def erp(self) -> Any:
        return parse_json(self.erp_value)

    @property
    def base(self) -> Any:
        return parse_json(self.base_value)


@dataclass(frozen=True)
class ConflictReading:
    counts: tuple[ConflictCount, ...]
    recent: tuple[ConflictSeen, ...]

    @property
    def total(self) -> int:
        return sum(c.count for c in self.counts)


@dataclass(frozen=True)
class SourceLag:
    """How far a source stream has been read: ``lag_seconds`` is the age of the newest change
    taken (it grows while the source is quiet too); ``idle_seconds`` since it last moved."""

    source: str
    position: dt.datetime | None
    lag_seconds: float | None
    idle_seconds: float


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    process: str
    connector: str
    state: str
    up: bool
    heartbeat_age: float
    last_poll_age: float | None
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class ProcessMemory:
    """One process of the hub that has parts up, with its resident memory (bytes) as its
    last heartbeat gave it, now and at its peak."""

    process: str
    rss_bytes: int
    peak_bytes: int
    parts: tuple[str, ...]
    #: For a worker process (the certificate renderer), which runs no parts: its parent.
    worker_of: str | None = None


@dataclass(frozen=True)
class OrdersAwaiting:
    """CRM orders sent on to the ERP with no ERP number and no error yet, as the CRM
    poller last counted them (every 30 s): how many, and how long ago the oldest of them
    last changed (None when there are none). Seconds for an order in flight; an order that
    stays is one the sync has not finished."""

    count: int
    oldest_seconds: float | None


@dataclass(frozen=True)
class ConnectorHealth:
    """Up when it has parts and every part not stopped on purpose beats on time."""

    name: str
    up: bool
    parts: tuple[str, ...]


@dataclass(frozen=True)
class CertificateReading:
    issued: int
    superseded: int
    rendered: Mapping[str, int]  # by language
    render_time: Mapping[str, Histogram]  # by language, renders timed since migration 0004


@dataclass(frozen=True)
class Readings:
    """Everything :func:`read` gathers; see the module docstring."""

    at: dt.datetime
    window_seconds: float
    flows: tuple[Flow, ...] = ()
    series: tuple[SeriesPoint, ...] = ()
    outbox: OutboxReading | None = None
    queues: Mapping[str, int] = field(default_factory=dict)
    dead_letters: tuple[DeadLetterCount, ...] = ()
    conflicts: ConflictReading | None = None
    sources: tuple[SourceLag, ...] = ()
    components: tuple[ComponentHealth, ...] = ()
    connectors: tuple[ConnectorHealth, ...] = ()
    certificates: CertificateReading | None = None
    certificate_outcomes: Mapping[str, int] = field(default_factory=dict)  # over the window
    errors: tuple[str, ...] = ()

    @property
    def dead_open(self) -> int:
        """Dead letters waiting for replay or discard."""
        return sum(d.count for d in self.dead_letters if d.status == "dead")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (datetimes as ISO text, quantiles added to histograms)."""
        return _plain(self)  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, Histogram):
        return {"count": value.count, "sum": value.sum,
                "buckets": dict(zip((str(b) for b in value.bounds), value.cumulative,
                                    strict=True)),
                "p50": value.quantile(0.5), "p95": value.quantile(0.95)}
    if isinstance(value, Route):
        return {"type": value.type, "source": value.source, "target": value.target,
                "name": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Flow):
            out["rate_per_minute"] = value.rate_per_minute
        return out
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value
