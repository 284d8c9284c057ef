"""What operations need to know, read from the hub's store (and bus) as typed values.

One module serves ``/metrics``, ``hub status`` and the ``/ops/`` dashboard, so the three
always agree. Every reading is a few set-based queries (GROUP BY in the database, never a
row per message into Python) in the caller's transaction; they are cheap enough to run at
scrape time and every few seconds. Everything comes from the store, so every process of a
distributed hub reads the same truth.

The whole picture at once (one read-only store transaction, see :meth:`Store.reading`; a bus
that does not answer is reported in ``errors``, not raised)::

    r = readings.read(runtime.store, runtime.bus, window=dt.timedelta(minutes=5))
    for f in r.flows:            # per route, over the window
        print(f.route, f.applied, f.rate_per_minute, f.latency.quantile(0.95))
    r.series                     # throughput and latency per step over the last hours
    r.outbox.pending, r.queues, r.dead_letters, r.conflicts.recent, r.sources,
    r.components, r.connectors, r.certificates, r.certificate_outcomes
    r.as_dict()                  # the same as plain JSON-able data

Or one piece, inside your own ``with store.begin() as conn``: :func:`message_counts`
(outcome counts per route, all time or ``since``), :func:`latencies` (source commit → target
commit histograms per route), :func:`flows`, :func:`series`, :func:`outbox`,
:func:`dead_letters`, :func:`conflicts`, :func:`sources`, :func:`components` (then
:func:`connectors`), :func:`certificates`, :func:`certificate_outcomes`;
:func:`queue_depths` asks the bus. All-time
counts scan the whole journal: a process that needs them often keeps a
:class:`hub.tally.RunningTotals` and passes what it reads to :func:`by_route`.

A **route** is a message type plus source system → target: ``order.changed crm→erp``. The
target is the consuming part with its partition and queue prefix taken off (``erp-applier``
→ ``erp``; ``certificates``); a published message's target is ``bus``. **Outcomes** are the
journal's events: ``published``, ``applied``, ``retried``, ``dead_lettered``, ``replayed``,
``discarded``. **Latency** is from the source's commit of the change (the message's
``occurred_at``) to the journal's ``applied`` entry written after the target's commit; it
exists for messages published since migration 0004. Times are naive UTC. Histograms hold
cumulative counts per upper bound in seconds, like Prometheus's; :meth:`Histogram.quantile`
interpolates within a bucket as ``histogram_quantile`` does. Counts over all time include
what housekeeping pruned from the journal (:mod:`hub.tally`), so they never go back.

The values themselves are in :mod:`hub.reading_values` (import them from here).

Raises: the store's errors as :class:`hub.errors.HubError` (translated by
:meth:`hub.store.db.Store.begin`); :func:`queue_depths` raises the bus's.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from hub.components import (
    AWAITING_KEY,
    OLDEST_KEY,
    PEAK_KEY,
    RSS_KEY,
    WORKERS_KEY,
    Components,
)
from hub.errors import HubError
from hub.outbox import Outbox
from hub.reading_values import (
    CertificateReading,
    ComponentHealth,
    ConflictCount,
    ConflictReading,
    ConflictSeen,
    ConnectorHealth,
    DeadLetterCount,
    Flow,
    OrdersAwaiting,
    OutboxReading,
    ProcessMemory,
    Readings,
    Route,
    RouteCount,
    SeriesPoint,
    SourceLag,
)
from hub.store.histograms import EPOCH, Histogram, hist_columns, hist_of, time_bucket
from hub.store.tables import (
    certificate,
    certificate_file,
    conflict,
    dead_letter,
    journal,
    watermark,
)
from hub.store.types import utcnow
from hub.tally import LATENCY_BUCKETS, OUTCOMES, Tallied, scan, totals

if TYPE_CHECKING:
    from hub.bus.base import Bus
    from hub.store.db import Store

__all__ = [
    "LATENCY_BUCKETS", "OUTCOMES", "RENDER_BUCKETS", "STALE_SECONDS", "CertificateReading",
    "ComponentHealth", "ConflictCount", "ConflictReading", "ConflictSeen", "ConnectorHealth",
    "DeadLetterCount", "Flow", "Histogram", "OrdersAwaiting", "OutboxReading", "ProcessMemory",
    "Readings", "Route", "RouteCount", "SeriesPoint", "SourceLag", "by_route",
    "certificate_outcomes", "certificates", "components", "conflicts", "connector_of",
    "connectors", "dead_letters", "flows", "latencies", "message_counts", "orders_awaiting",
    "outbox", "processes", "queue_depths", "read", "series", "sources", "target_of",
]

#: Upper bounds (seconds) of the certificate render-time histograms.
RENDER_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: A part whose heartbeat is older than this is down.
STALE_SECONDS = 30.0


# -- routes -------------------------------------------------------------------------------

_PARTITION = re.compile(r"\.p\d+$")


def target_of(event: str, raw: str | None) -> str:
    """The target system or part of a journal entry (see the module docstring)."""
    if event == "published":
        return "bus"
    if not raw:
        return ""
    name = _PARTITION.sub("", raw).rsplit(".", 1)[-1]
    return name.removesuffix("-applier")


def _route(type_: str | None, source: str | None, event: str, target: str | None) -> Route:
    return Route(type_ or "unknown", source or "unknown", target_of(event, target))


# -- messages -----------------------------------------------------------------------------

def by_route(tallied: Iterable[Tallied]) -> tuple[list[RouteCount], dict[Route, Histogram]]:
    """Counts from :mod:`hub.tally` per route and outcome, and the latency histogram of
    applied messages per route (only routes with timed messages)."""
    counted: dict[tuple[Route, str], int] = {}
    timed: dict[Route, Histogram] = {}
    for t in tallied:
        route = _route(t.type, t.source, t.event, t.target)
        counted[(route, t.event)] = counted.get((route, t.event), 0) + t.count
        if t.event == "applied" and t.latency.count:
            timed[route] = timed[route] + t.latency if route in timed else t.latency
    counts = [RouteCount(route, outcome, n) for (route, outcome), n in sorted(counted.items())]
    return counts, dict(sorted(timed.items()))


def _tallied(conn: Connection, since: dt.datetime | None) -> list[Tallied]:
    return scan(conn, since=since) + (totals(conn) if since is None else [])


def message_counts(conn: Connection, *, since: dt.datetime | None = None) -> list[RouteCount]:
    """Journal entries per route and outcome: all time (what housekeeping pruned included,
    see :mod:`hub.tally`; a scan of the whole journal, so a process that asks often keeps
    a :class:`hub.tally.RunningTotals`) or ``since``."""
    return by_route(_tallied(conn, since))[0]


def latencies(conn: Connection, *, since: dt.datetime | None = None) -> dict[Route, Histogram]:
    """Source commit → target commit of applied messages, per route: all time (as
    :func:`message_counts`) or ``since``."""
    return by_route(_tallied(conn, since))[1]


def flows(conn: Connection, *, window: dt.timedelta = dt.timedelta(minutes=5),
          now: dt.datetime | None = None) -> list[Flow]:
    """Each route that delivered to a consumer within ``window`` up to ``now``."""
    counts, timed = by_route(scan(conn, since=(now or utcnow()) - window))
    consumed: dict[Route, dict[str, int]] = {}
    for c in counts:
        if c.outcome in ("applied", "retried", "dead_lettered"):
            consumed.setdefault(c.route, {})[c.outcome] = c.count
    seconds = window.total_seconds()
    return [Flow(route, seconds, n.get("applied", 0), n.get("retried", 0),
                 n.get("dead_lettered", 0), timed.get(route, Histogram.empty(LATENCY_BUCKETS)))
            for route, n in sorted(consumed.items())]


def series(conn: Connection, *, hours: float = 6.0, step: dt.timedelta = dt.timedelta(minutes=5),
           now: dt.datetime | None = None, target: str | None = None) -> list[SeriesPoint]:
    """Throughput and latency per ``step`` over the last ``hours``, oldest first, every step
    present (zeros where nothing happened). ``target`` keeps one target's messages only
    (e.g. ``erp``: its raw queue names are matched by their ``-applier`` stem)."""
    seconds = max(1, int(step.total_seconds()))
    end = now or utcnow()
    origin = int((end - dt.timedelta(hours=hours) - EPOCH).total_seconds()) // seconds * seconds
    start = EPOCH + dt.timedelta(seconds=origin)
    bucket = time_bucket(journal.c.at, start, seconds)
    query = (select(bucket, journal.c.event, journal.c.target, func.count(),
                    *hist_columns(journal.c.latency_ms, LATENCY_BUCKETS))
             .where(journal.c.at >= start,
                    journal.c.event.in_(("published", "applied", "retried", "dead_lettered")))
             .group_by(bucket, journal.c.event, journal.c.target))
    steps = int((end - start).total_seconds()) // seconds + 1
    points: list[dict[str, Any]] = [{"published": 0, "applied": 0, "retried": 0,
                                     "dead_lettered": 0,
                                     "latency": Histogram.empty(LATENCY_BUCKETS)}
                                    for _ in range(steps)]
    for row in conn.execute(query):
        index, event = int(row[0]), row[1]
        if not 0 <= index < steps or (target is not None
                                      and target_of(event, row[2]) != target):
            continue
        points[index][event] += int(row[3])
        if event == "applied":
            points[index]["latency"] += hist_of(row, 4, LATENCY_BUCKETS)
    return [SeriesPoint(start + dt.timedelta(seconds=i * seconds), **p)
            for i, p in enumerate(points)]


# -- the rest of the store ----------------------------------------------------------------

def outbox(conn: Connection, *, now: dt.datetime | None = None) -> OutboxReading:
    oldest = Outbox.oldest(conn)
    age = max(0.0, ((now or utcnow()) - oldest).total_seconds()) if oldest else 0.0
    return OutboxReading(Outbox.pending(conn), age)


def dead_letters(conn: Connection) -> list[DeadLetterCount]:
    """Dead letters by status, queue and error code."""
    rows = conn.execute(
        select(dead_letter.c.status, dead_letter.c.queue, dead_letter.c.error_code, func.count())
        .group_by(dead_letter.c.status, dead_letter.c.queue, dead_letter.c.error_code)
        .order_by(dead_letter.c.status, dead_letter.c.queue, dead_letter.c.error_code))
    return [DeadLetterCount(s, q, e, int(n)) for s, q, e, n in rows]


def conflicts(conn: Connection, *, recent: int = 20) -> ConflictReading:
    """Conflicts counted by kind, field and winner, and the ``recent`` latest."""
    counts = conn.execute(
        select(conflict.c.kind, conflict.c.field, conflict.c.winner, func.count())
        .group_by(conflict.c.kind, conflict.c.field, conflict.c.winner)
        .order_by(conflict.c.kind, conflict.c.field, conflict.c.winner))
    latest = conn.execute(select(conflict).order_by(conflict.c.id.desc()).limit(recent))
    return ConflictReading(
        tuple(ConflictCount(k, f, w, int(n)) for k, f, w, n in counts),
        tuple(ConflictSeen(r.id, r.at, r.kind, r.correlation_key, r.field, r.crm_value,
                           r.erp_value, r.base_value, r.winner, r.message_id) for r in latest))


def sources(conn: Connection, *, now: dt.datetime | None = None) -> list[SourceLag]:
    """Each source stream's watermark (``crm.crm_order`` ...)."""
    now = now or utcnow()
    return [SourceLag(r.source, r.position,
                      None if r.position is None else _age(now, r.position),
                      _age(now, r.updated_at))
            for r in conn.execute(select(watermark).order_by(watermark.c.source))]


def _age(now: dt.datetime, then: dt.datetime) -> float:
    # A row written after ``now`` was taken (by another process) is as fresh as can be.
    return max(0.0, (now - then).total_seconds())


def connector_of(component: str) -> str:
    """The system a part serves: ``crm-poller`` → ``crm``; the hub's own parts → ``hub``."""
    head = component.split("-", 1)[0]
    if head in ("crm", "erp", "lims"):
        return head
    if head in ("certificate", "certificates"):
        return "certificates"
    return "hub"


def components(conn: Connection, *, now: dt.datetime | None = None,
               stale: float = STALE_SECONDS) -> list[ComponentHealth]:
    """Every part that has beaten, with whether it is up (running, heartbeat fresh)."""
    now = now or utcnow()
    return [ComponentHealth(
        c.name, c.process, connector_of(c.name), c.state,
        c.state == "running" and c.age(now) < stale, round(_age(now, c.heartbeat_at), 3),
        None if c.last_poll_at is None else round(_age(now, c.last_poll_at), 3),
        c.detail) for c in Components.all(conn)]


def processes(parts: Iterable[ComponentHealth]) -> list[ProcessMemory]:
    """The processes with parts up, each with its memory from its freshest heartbeat (every
    part of a process beats with the process's figures: :func:`~hub.components.process_memory`),
    each followed by its worker processes (:func:`~hub.components.worker_memory`)."""
    freshest: dict[str, ComponentHealth] = {}
    names: dict[str, list[str]] = {}
    for p in parts:
        if not p.up or RSS_KEY not in p.detail:
            continue
        names.setdefault(p.process, []).append(p.name)
        if p.process not in freshest or p.heartbeat_age < freshest[p.process].heartbeat_age:
            freshest[p.process] = p
    found: list[ProcessMemory] = []
    for process, p in sorted(freshest.items()):
        found.append(ProcessMemory(process, int(p.detail[RSS_KEY]),
                                   int(p.detail.get(PEAK_KEY, p.detail[RSS_KEY])),
                                   tuple(sorted(names[process]))))
        host = process.rsplit(":", 1)[0]
        for pid, memory in sorted(p.detail.get(WORKERS_KEY, {}).items()):
            found.append(ProcessMemory(f"{host}:{pid}", int(memory[RSS_KEY]),
                                       int(memory.get(PEAK_KEY, memory[RSS_KEY])), (),
                                       worker_of=process))
    return found


def orders_awaiting(parts: Iterable[ComponentHealth], *, now: dt.datetime | None = None
                    ) -> OrdersAwaiting | None:
    """The count of CRM orders awaiting the ERP from the freshest running CRM poller's
    heartbeat (see :class:`OrdersAwaiting`); None when no running poller has counted yet."""
    now = now or utcnow()
    counted = [p for p in parts if p.up and AWAITING_KEY in p.detail]
    if not counted:
        return None
    freshest = min(counted, key=lambda p: p.heartbeat_age)
    oldest = freshest.detail.get(OLDEST_KEY)
    since = None if not oldest else dt.datetime.fromisoformat(oldest)
    if since is not None and since.tzinfo is not None:  # the hub's times are naive UTC
        since = since.astimezone(dt.UTC).replace(tzinfo=None)
    return OrdersAwaiting(int(freshest.detail[AWAITING_KEY]),
                          None if since is None else _age(now, since))


def connectors(parts: Iterable[ComponentHealth]) -> list[ConnectorHealth]:
    """Parts grouped by the system they serve (see :class:`ConnectorHealth`)."""
    grouped: dict[str, list[ComponentHealth]] = {}
    for p in parts:
        grouped.setdefault(p.connector, []).append(p)
    out = []
    for name, members in sorted(grouped.items()):
        live = [p for p in members if p.state != "stopped"]
        out.append(ConnectorHealth(name, bool(live) and all(p.up for p in live),
                                   tuple(sorted({p.name for p in members}))))
    return out


def certificates(conn: Connection) -> CertificateReading:
    """Certificates issued and superseded; PDFs rendered and render time, by language."""
    issued, superseded = conn.execute(
        select(func.count(), func.count(certificate.c.superseded_by))).one()
    rendered: dict[str, int] = {}
    timing: dict[str, Histogram] = {}
    for row in conn.execute(
        select(certificate_file.c.lang, func.count(),
               *hist_columns(certificate_file.c.render_ms, RENDER_BUCKETS))
        .group_by(certificate_file.c.lang).order_by(certificate_file.c.lang)
    ):
        rendered[row[0]] = int(row[1])
        timing[row[0]] = hist_of(row, 2, RENDER_BUCKETS)
    return CertificateReading(int(issued), int(superseded), rendered, timing)


def certificate_outcomes(conn: Connection, *, since: dt.datetime) -> dict[str, int]:
    """The certificate service's journal entries since ``since`` by outcome (``issued``, or
    ``blocked`` while a certificate cannot be issued yet)."""
    return {o: int(n) for o, n in conn.execute(
        select(journal.c.outcome, func.count())
        .where(journal.c.at >= since, journal.c.event == "certificate")
        .group_by(journal.c.outcome).order_by(journal.c.outcome))}


def queue_depths(bus: Bus) -> dict[str, int]:
    """Messages waiting per consumer queue (the dead-letter queue included, on RabbitMQ)."""
    return dict(sorted(bus.queue_depths().items()))


def read(store: Store, bus: Bus | None = None, *,
         window: dt.timedelta = dt.timedelta(minutes=5), hours: float | None = None,
         step: dt.timedelta = dt.timedelta(minutes=5), recent_conflicts: int = 20,
         now: dt.datetime | None = None) -> Readings:
    """Everything above in one store transaction (``series`` only when ``hours`` is given).
    Store and bus failures are reported in ``errors`` with what could be read."""
    now = now or utcnow()
    errors: list[str] = []
    values: dict[str, Any] = {}
    try:
        with store.reading() as conn:
            parts = components(conn, now=now)
            values.update(
                flows=tuple(flows(conn, window=window, now=now)),
                series=() if hours is None else tuple(series(conn, hours=hours, step=step,
                                                             now=now)),
                outbox=outbox(conn, now=now), dead_letters=tuple(dead_letters(conn)),
                conflicts=conflicts(conn, recent=recent_conflicts),
                sources=tuple(sources(conn, now=now)), components=tuple(parts),
                connectors=tuple(connectors(parts)), certificates=certificates(conn),
                certificate_outcomes=certificate_outcomes(conn, since=now - window))
    except HubError as exc:
        errors.append(f"store: {exc}")
    if bus is not None:
        try:
            values["queues"] = queue_depths(bus)
        except HubError as exc:
            errors.append(f"bus: {exc}")
    return Readings(at=now, window_seconds=window.total_seconds(), errors=tuple(errors),
                    **values)
