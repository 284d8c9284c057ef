"""Prometheus metrics read from the store and the bus at scrape time.

Counting from the store rather than from in-process counters means every process of a
distributed deployment reports the same truth, and a restart loses nothing. Scrapes within
``ttl`` seconds share one reading, so a busy Prometheus cannot load the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from hub.components import Components
from hub.errors import HubError
from hub.outbox import Outbox
from hub.runtime import Runtime
from hub.store.tables import dead_letter, journal
from hub.store.types import utcnow

__all__ = ["HubCollector"]


class HubCollector(Collector):
    def __init__(self, runtime: Runtime, ttl: float = 2.0) -> None:
        self.runtime = runtime
        self.ttl = ttl
        self._cached: tuple[float, list[Metric]] = (0.0, [])
        self._lock = threading.Lock()

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
            metrics.extend(self._from_store())
            up.add_metric(["store"], 1)
        except HubError:
            up.add_metric(["store"], 0)
        try:
            depth = GaugeMetricFamily("hub_queue_depth", "Messages waiting per queue",
                                      labels=["queue"])
            for queue, count in sorted(self.runtime.bus.queue_depths().items()):
                depth.add_metric([queue], count)
            metrics.append(depth)
            up.add_metric(["bus"], 1)
        except HubError:
            up.add_metric(["bus"], 0)
        return metrics

    def _from_store(self) -> list[Metric]:
        now = utcnow()
        with self.runtime.store.begin() as conn:
            pending = Outbox.pending(conn)
            oldest = Outbox.oldest(conn)
            dead = conn.execute(
                select(dead_letter.c.status, func.count()).group_by(dead_letter.c.status)
            ).all()
            events = conn.execute(
                select(journal.c.event, journal.c.target, func.count())
                .group_by(journal.c.event, journal.c.target)
            ).all()
            components = Components.all(conn)
        outbox_pending = GaugeMetricFamily("hub_outbox_pending", "Messages not yet published")
        outbox_pending.add_metric([], pending)
        outbox_age = GaugeMetricFamily("hub_outbox_oldest_seconds",
                                       "Age of the oldest unpublished message")
        outbox_age.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)
        dead_family = GaugeMetricFamily("hub_dead_letters", "Dead letters by status",
                                        labels=["status"])
        for status, count in dead:
            dead_family.add_metric([status], count)
        messages = CounterMetricFamily(
            "hub_messages", "Messages by journal event and target (within retention)",
            labels=["event", "target"],
        )
        for event, target, count in events:
            messages.add_metric([event, target or ""], count)
        part_up = GaugeMetricFamily("hub_component_up",
                                    "1 when a part is running and its heartbeat is fresh",
                                    labels=["component", "process"])
        for c in components:
            fresh = c.state == "running" and c.age(now) < 30
            part_up.add_metric([c.name, c.process], 1 if fresh else 0)
        return [outbox_pending, outbox_age, dead_family, messages, part_up]
