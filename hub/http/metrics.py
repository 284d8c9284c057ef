"""Prometheus metrics read from the store and the bus at scrape time.

Counting from the store rather than from in-process counters means every process of a
distributed deployment reports the same truth, and a restart loses nothing. Scrapes within
``ttl`` seconds share one reading, so a busy Prometheus cannot load the store. What is read,
and how, is :mod:`hub.readings` (shared with ``hub status`` and the dashboard); all-time
message counts are read incrementally (:class:`hub.tally.RunningTotals`: the whole journal
at the first scrape, then what was written since) and include what housekeeping pruned, so
counters never go back.

Families (``route`` labels are ``type``, ``source``, ``target``; see :mod:`hub.readings`):

- ``hub_up{dependency}``: 1 when the store / the bus answered this scrape.
- ``hub_messages_total{type,source,target,outcome}``: journal events per route.
- ``hub_message_latency_seconds{type,source,target}``: histogram, source commit to target
  commit of applied messages.
- ``hub_queue_depth{queue}``, ``hub_outbox_pending``, ``hub_outbox_oldest_seconds``.
- ``hub_dead_letters{status,queue,error_code}``: dead letters now, by status.
- ``hub_conflicts_total{kind,field,winner}``: fields changed on both sides, and who won.
- ``hub_source_watermark_lag_seconds{source}``: age of the newest change read from a source
  stream; ``hub_source_watermark_idle_seconds{source}``: since the watermark last moved.
- ``hub_component_up{component,process}``, ``hub_connector_up{connector}``.
- ``hub_applier_held_messages{component,process}``: messages an applier holds while a system
  it needs does not answer (:mod:`hub.sync.outage`); absent when none is held.
- ``hub_process_resident_memory_bytes{process}`` and ``..._peak_bytes``: every process's,
  from its parts' heartbeats (a ``HUB_APART`` child's too, which serves no HTTP of its own,
  and the certificate render worker's, from its parent's).
- ``hub_crm_orders_awaiting_erp`` and ``..._oldest_seconds``: CRM orders sent on with no ERP
  number and no error yet, from the CRM poller's heartbeat (it counts every 30 s). An order
  stuck there is one the sync has not finished: alert on the age.
- ``hub_certificates_issued_total``, ``hub_certificates_superseded``,
  ``hub_certificates_rendered_total{lang}``, ``hub_certificate_render_seconds{lang}``
  (histogram).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Connection

from hub import readings
from hub.components import HELD_KEY
from hub.errors import HubError
from hub.readings import Histogram, Route
from hub.runtime import Runtime
from hub.store.types import utcnow
from hub.tally import RunningTotals

__all__ = ["HubCollector"]

_ROUTE = ["type", "source", "target"]


class HubCollector(Collector):
    def __init__(self, runtime: Runtime, ttl: float = 2.0) -> None:
        self.runtime = runtime
        self.ttl = ttl
        self._cached: tuple[float, list[Metric]] = (0.0, [])
        self._lock = threading.Lock()
        self._totals = RunningTotals()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            at, metrics = self._cached
            if time.monotonic() - at > self.ttl:
                metrics = self._read()
                self._cached = (time.monotonic(), metrics)
        yield from metrics

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("hub_up", "1 when the store and the bus answered this scrape",
                               labels=["dependency"])
        metrics: list[Metric] = [up]
        try:
            with self.runtime.store.begin() as conn:
                metrics.extend(self._from_store(conn))
            up.add_metric(["store"], 1)
        except HubError:
            up.add_metric(["store"], 0)
        try:
            depth = GaugeMetricFamily("hub_queue_depth", "Messages waiting per queue",
                                      labels=["queue"])
            for queue, count in readings.queue_depths(self.runtime.bus).items():
                depth.add_metric([queue], count)
            metrics.append(depth)
            up.add_metric(["bus"], 1)
        except HubError:
            up.add_metric(["bus"], 0)
        return metrics

    def _from_store(self, conn: Connection) -> list[Metric]:
        now = utcnow()
        return [*_outbox(readings.outbox(conn, now=now)),
                _dead_letters(readings.dead_letters(conn)),
                *_routes(*readings.by_route(self._totals.read(conn, now=now))),
                _conflicts(readings.conflicts(conn, recent=0)),
                *_sources(readings.sources(conn, now=now)),
                *_components(parts := readings.components(conn, now=now)),
                *_awaiting(readings.orders_awaiting(parts, now=now)),
                *_certificates(readings.certificates(conn))]


def _outbox(box: readings.OutboxReading) -> list[Metric]:
    pending = GaugeMetricFamily("hub_outbox_pending", "Messages not yet published")
    pending.add_metric([], box.pending)
    age = GaugeMetricFamily("hub_outbox_oldest_seconds", "Age of the oldest unpublished message")
    age.add_metric([], box.oldest_age_seconds)
    return [pending, age]


def _dead_letters(counts: Iterable[readings.DeadLetterCount]) -> Metric:
    family = GaugeMetricFamily(
        "hub_dead_letters", "Dead letters by status (dead, replayed, discarded), queue and error",
        labels=["status", "queue", "error_code"])
    for c in counts:
        family.add_metric([c.status, c.queue, c.error_code], c.count)
    return family


def _routes(counts: Iterable[readings.RouteCount],
            histograms: dict[Route, Histogram]) -> list[Metric]:
    messages = CounterMetricFamily("hub_messages", "Messages by route and outcome",
                                   labels=[*_ROUTE, "outcome"])
    for c in counts:
        messages.add_metric([*_labels(c.route), c.outcome], c.count)
    latency = HistogramMetricFamily(
        "hub_message_latency_seconds",
        "Source commit to target commit of applied messages", labels=_ROUTE)
    for route, hist in sorted(histograms.items()):
        latency.add_metric(_labels(route), _buckets(hist), hist.sum)
    return [messages, latency]


def _conflicts(reading: readings.ConflictReading) -> Metric:
    family = CounterMetricFamily(
        "hub_conflicts", "Fields changed on both sides of a bound record, by the side that won",
        labels=["kind", "field", "winner"])
    for c in reading.counts:
        family.add_metric([c.kind, c.field, c.winner], c.count)
    return family


def _sources(lags: Iterable[readings.SourceLag]) -> list[Metric]:
    lag = GaugeMetricFamily(
        "hub_source_watermark_lag_seconds",
        "Age of the newest change the hub has read from a source stream", labels=["source"])
    idle = GaugeMetricFamily(
        "hub_source_watermark_idle_seconds",
        "Time since a source stream's watermark last moved", labels=["source"])
    for s in lags:
        if s.lag_seconds is not None:
            lag.add_metric([s.source], s.lag_seconds)
        idle.add_metric([s.source], s.idle_seconds)
    return [lag, idle]


def _components(parts: list[readings.ComponentHealth]) -> list[Metric]:
    part_up = GaugeMetricFamily("hub_component_up",
                                "1 when a part is running and its heartbeat is fresh",
                                labels=["component", "process"])
    held = GaugeMetricFamily(
        "hub_applier_held_messages",
        "Messages an applier holds while a system it needs does not answer",
        labels=["component", "process"])
    for p in parts:
        part_up.add_metric([p.name, p.process], 1 if p.up else 0)
        if p.up and HELD_KEY in p.detail:
            held.add_metric([p.name, p.process], p.detail[HELD_KEY])
    connector_up = GaugeMetricFamily(
        "hub_connector_up", "1 when every running part serving a system beats on time",
        labels=["connector"])
    for c in readings.connectors(parts):
        connector_up.add_metric([c.name], 1 if c.up else 0)
    rss = GaugeMetricFamily(
        "hub_process_resident_memory_bytes",
        "Resident memory of each hub process with parts up, at its last heartbeat",
        labels=["process"])
    peak = GaugeMetricFamily(
        "hub_process_resident_memory_peak_bytes",
        "The most resident memory each hub process with parts up has held", labels=["process"])
    for m in readings.processes(parts):
        rss.add_metric([m.process], m.rss_bytes)
        peak.add_metric([m.process], m.peak_bytes)
    return [part_up, held, connector_up, rss, peak]


def _awaiting(found: readings.OrdersAwaiting | None) -> list[Metric]:
    if found is None:
        return []
    count = GaugeMetricFamily(
        "hub_crm_orders_awaiting_erp",
        "CRM orders sent on to the ERP with no ERP number and no error yet")
    count.add_metric([], found.count)
    oldest = GaugeMetricFamily(
        "hub_crm_orders_awaiting_erp_oldest_seconds",
        "Since the oldest CRM order awaiting the ERP last changed (0 when none awaits)")
    oldest.add_metric([], found.oldest_seconds or 0.0)
    return [count, oldest]


def _certificates(reading: readings.CertificateReading) -> list[Metric]:
    issued = CounterMetricFamily("hub_certificates_issued", "Certificate versions issued")
    issued.add_metric([], reading.issued)
    superseded = GaugeMetricFamily("hub_certificates_superseded",
                                   "Certificate versions superseded by a newer one")
    superseded.add_metric([], reading.superseded)
    rendered = CounterMetricFamily("hub_certificates_rendered",
                                   "Certificate PDFs rendered, by language", labels=["lang"])
    render = HistogramMetricFamily("hub_certificate_render_seconds",
                                   "Time to render a certificate PDF", labels=["lang"])
    for lang, count in sorted(reading.rendered.items()):
        rendered.add_metric([lang], count)
        hist = reading.render_time[lang]
        render.add_metric([lang], _buckets(hist), hist.sum)
    return [issued, superseded, rendered, render]


def _labels(route: Route) -> list[str]:
    return [route.type, route.source, route.target]


def _buckets(hist: Histogram) -> list[tuple[str, float]]:
    return [*((_le(b), float(n)) for b, n in zip(hist.bounds, hist.cumulative, strict=True)),
            ("+Inf", float(hist.count))]


def _le(bound: float) -> str:
    return repr(float(bound))
