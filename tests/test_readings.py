"""hub.readings against SQLite and PostgreSQL stores: what the journal, outbox, dead letters,
conflicts, watermarks, heartbeats and certificates hold, counted in the database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import insert, update

from hub import readings
from hub.components import Components
from hub.errors import BrokerUnavailable
from hub.headers import H_KEY, H_OCCURRED, H_TYPE
from hub.journal import Entry, prune, record
from hub.readings import Histogram, Route
from hub.store import Store
from hub.store.deadletters import DeadLetters, NewDeadLetter
from hub.store.tables import certificate, certificate_file, component, outbox
from hub.store.types import utcnow
from hub.sync.conflicts import Conflicts
from hub.sync.merge import Conflict
from hub.tally import RunningTotals, Tallied, fold, merge, scan
from hub.watermark import Change, Watermark

NOW = dt.datetime(2026, 11, 23, 12, 0, 0)
CRM_ERP = Route("order.changed", "crm", "erp")
ERP_CRM = Route("order.status", "erp", "crm")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Store:
    found: Store = request.getfixturevalue(
        "pg_store" if request.param == "postgresql" else "sqlite_store")
    return found


def _headers(type_: str, occurred: dt.datetime | None) -> dict[str, Any]:
    headers: dict[str, Any] = {H_TYPE: type_, H_KEY: "SO-1"}
    if occurred is not None:
        headers[H_OCCURRED] = occurred.isoformat()
    return headers


def _applied(at: dt.datetime, latency: float | None, type_: str = "order.changed",
             source: str = "crm", queue: str = "hub.erp-applier.p1") -> Entry:
    occurred = None if latency is None else at - dt.timedelta(seconds=latency)
    return Entry.for_message("applied", "m", _headers(type_, occurred), f"{source}.{type_}.p1",
                             target=queue, at=at)


def _journal(store: Store) -> None:
    """Three CRM orders applied in the ERP in the last minutes (0.3 s, 1.5 s and 12 s from
    the CRM's commit), one retried and one dead; an ERP answer without a source time; and
    one old order outside any window."""
    ago = lambda minutes: NOW - dt.timedelta(minutes=minutes)  # noqa: E731
    entries = [
        _applied(ago(1), 0.3), _applied(ago(2), 1.5),
        _applied(ago(2), 12.0, queue="q.erp-applier.p0"),
        _applied(ago(3), None, "order.status", "erp", "hub.crm-applier.p0"),
        _applied(ago(600), 2000.0),
        Entry.for_message("retried", "m", _headers("order.changed", None), "crm.order.changed.p0",
                          target="hub.erp-applier.p0", at=ago(1)),
        Entry.for_message("dead_lettered", "m", _headers("order.changed", None),
                          "crm.order.changed.p0", target="hub.erp-applier.p0", at=ago(4)),
        Entry(event="published", type="order.changed", source="crm",
              target="crm.order.changed.p0", at=ago(2)),
        Entry(event="observed", type="delivery.posted", source="erp", at=ago(2)),
    ]
    with store.begin() as conn:
        record(conn, entries)


def test_message_counts_and_latency_by_route(store: Store) -> None:
    _journal(store)
    with store.begin() as conn:
        counts = {(c.route, c.outcome): c.count for c in readings.message_counts(conn)}
        recent = {(c.route, c.outcome): c.count
                  for c in readings.message_counts(conn, since=NOW - dt.timedelta(hours=1))}
        hists = readings.latencies(conn)
    assert counts == {
        (CRM_ERP, "applied"): 4, (CRM_ERP, "retried"): 1, (CRM_ERP, "dead_lettered"): 1,
        (Route("order.changed", "crm", "bus"), "published"): 1, (ERP_CRM, "applied"): 1}
    assert recent[(CRM_ERP, "applied")] == 3
    assert set(hists) == {CRM_ERP}, "a message without its source time is not timed"
    hist = hists[CRM_ERP]
    assert hist.count == 4 and hist.sum == pytest.approx(2013.8, abs=0.01)
    by_bound = dict(zip(hist.bounds, hist.cumulative, strict=True))
    assert (by_bound[0.25], by_bound[0.5], by_bound[2.0], by_bound[10.0], by_bound[30.0],
            by_bound[3600.0]) == (0, 1, 2, 2, 3, 4)


def test_flows_over_a_window(store: Store) -> None:
    _journal(store)
    with store.begin() as conn:
        flows = {f.route: f for f in readings.flows(conn, window=dt.timedelta(minutes=5),
                                                     now=NOW)}
    assert set(flows) == {CRM_ERP, ERP_CRM}
    crm_erp = flows[CRM_ERP]
    assert (crm_erp.applied, crm_erp.retried, crm_erp.dead_lettered) == (3, 1, 1)
    assert crm_erp.rate_per_minute == pytest.approx(0.6)
    assert crm_erp.latency.count == 3
    p50 = crm_erp.latency.quantile(0.5)
    assert p50 is not None and 1.0 <= p50 <= 2.0
    assert flows[ERP_CRM].latency.count == 0 and flows[ERP_CRM].latency.quantile(0.5) is None


def test_series_puts_each_event_in_its_step(store: Store) -> None:
    _journal(store)
    with store.begin() as conn:
        points = readings.series(conn, hours=1, step=dt.timedelta(minutes=1), now=NOW)
        erp_only = readings.series(conn, hours=1, step=dt.timedelta(minutes=1), now=NOW,
                                   target="crm")
    assert len(points) == 61 and points[0].start == NOW - dt.timedelta(hours=1)
    assert points[-1].start == NOW
    by_start = {p.start: p for p in points}
    one, two = by_start[NOW - dt.timedelta(minutes=1)], by_start[NOW - dt.timedelta(minutes=2)]
    assert (one.applied, one.retried, one.latency.count) == (1, 1, 1)
    assert (two.applied, two.published, two.latency.count) == (2, 1, 2)
    assert by_start[NOW - dt.timedelta(minutes=4)].dead_lettered == 1
    assert sum(p.applied for p in points) == 4
    assert sum(p.applied for p in erp_only) == 1


def test_outbox_dead_letters_conflicts_and_sources(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        conn.execute(insert(outbox), [
            {"message_id": f"m{n}", "routing_key": "crm.order.changed.p0",
             "type": "order.changed", "correlation_key": "SO-1", "body": "{}",
             "created_at": now - dt.timedelta(seconds=30 - n), "attempts": 0} for n in range(2)])
        DeadLetters.add(conn, [NewDeadLetter(
            message_id=f"d{n}", queue="hub.erp-applier.p0", routing_key="crm.order.changed.p0",
            body=b"{}", headers={}, reason="unknown item", error_code="unknown_item",
            attempts=1, type="order.changed", correlation_key="SO-1") for n in range(3)])
        Conflicts.record(conn, kind="order", canonical_id="c1", key="SO-1", source="crm",
                         conflicts=[Conflict("notes", "sales says", "plant says", "first",
                                             "crm")])
        Watermark("crm.crm_order").commit(conn, [Change("o1", "1", now - dt.timedelta(
            seconds=90), None)])
    with store.begin() as conn:
        letter = DeadLetters.list(conn, status="dead", limit=1)[0]
        assert DeadLetters.resolve(conn, letter.id, status="discarded", by="anna")
        box = readings.outbox(conn, now=now)
        dead = readings.dead_letters(conn)
        seen = readings.conflicts(conn, recent=5)
        lags = readings.sources(conn, now=now)
    assert box.pending == 2 and box.oldest_age_seconds == pytest.approx(30, abs=0.01)
    assert {(d.status, d.queue, d.error_code): d.count for d in dead} == {
        ("dead", "hub.erp-applier.p0", "unknown_item"): 2,
        ("discarded", "hub.erp-applier.p0", "unknown_item"): 1}
    assert seen.total == 1 and seen.counts[0].winner == "crm"
    (recent,) = seen.recent
    assert (recent.correlation_key, recent.field, recent.winner) == ("SO-1", "notes", "crm")
    assert "sales says" in str(recent.crm_value) and "plant says" in str(recent.erp_value)
    assert (recent.crm, recent.erp, recent.base) == ("sales says", "plant says", "first")
    (lag,) = lags
    assert lag.source == "crm.crm_order" and lag.lag_seconds == pytest.approx(90, abs=0.01)
    assert 0 <= lag.idle_seconds < 60


def test_components_and_connectors_up_or_down(store: Store) -> None:
    started = utcnow()
    with store.begin() as conn:
        for name in ("crm-poller", "crm-applier", "erp-poller", "erp-applier", "relay",
                     "certificates"):
            Components.beat(conn, name, "running", started_at=started, last_poll_at=started)
        Components.beat(conn, "certificate-watcher", "stopped", started_at=started)
        conn.execute(update(component).where(component.c.name == "erp-applier").values(
            heartbeat_at=started - dt.timedelta(minutes=5)))
    with store.begin() as conn:
        parts = {p.name: p for p in readings.components(conn)}
    assert parts["crm-poller"].up and parts["crm-poller"].connector == "crm"
    assert not parts["erp-applier"].up and parts["erp-applier"].heartbeat_age >= 299
    assert parts["relay"].connector == "hub" and parts["crm-poller"].last_poll_age is not None
    up = {c.name: c.up for c in readings.connectors(parts.values())}
    assert up == {"crm": True, "erp": False, "hub": True, "certificates": True}


def test_processes_memory_from_their_parts_heartbeats() -> None:
    def part(name: str, process: str, age: float, rss: int | None, up: bool = True
             ) -> readings.ComponentHealth:
        detail = {} if rss is None else {"memory_rss_bytes": rss, "memory_peak_bytes": 2 * rss}
        return readings.ComponentHealth(name, process, readings.connector_of(name), "running",
                                        up, age, None, detail)

    found = readings.processes([
        part("relay", "h:1", 4.0, 100), part("crm-poller", "h:1", 1.0, 120),
        part("erp-applier", "h:2", 2.0, 80),
        part("certificates", "h:3", 90.0, 70, up=False),  # stale: its process may be gone
        part("http", "h:4", 1.0, None),  # a heartbeat from before the hub kept memory
    ])
    assert found == [
        readings.ProcessMemory("h:1", 120, 240, ("crm-poller", "relay")),  # the freshest beat
        readings.ProcessMemory("h:2", 80, 160, ("erp-applier",)),
    ]
    # A process's workers (the certificate renderer) come with its heartbeats, after it.
    daemon = part("certificates", "h:1", 1.0, 120)
    workers = {"memory_workers": {"77": {"memory_rss_bytes": 90, "memory_peak_bytes": 95}}}
    found = readings.processes([dataclasses.replace(daemon, detail={**daemon.detail,
                                                                    **workers})])
    assert found == [readings.ProcessMemory("h:1", 120, 240, ("certificates",)),
                     readings.ProcessMemory("h:77", 90, 95, (), worker_of="h:1")]


def test_orders_awaiting_the_erp_from_the_freshest_crm_poller() -> None:
    now = dt.datetime(2026, 11, 25, 23, 0, 0)

    def poller(process: str, age: float, detail: dict[str, Any], up: bool = True
               ) -> readings.ComponentHealth:
        return readings.ComponentHealth("crm-poller", process, "crm", "running", up, age,
                                        None, detail)

    assert readings.orders_awaiting([poller("h:1", 1.0, {})], now=now) is None  # not counted
    found = readings.orders_awaiting([
        poller("h:1", 9.0, {"orders_awaiting_erp": 7,
                            "oldest_awaiting_erp_at": "2026-11-25T22:00:00"}),
        poller("h:2", 2.0, {"orders_awaiting_erp": 3,
                            "oldest_awaiting_erp_at": "2026-11-25T22:59:30"}),
        poller("h:3", 0.5, {"orders_awaiting_erp": 99}, up=False),  # stopped beating
    ], now=now)
    assert found == readings.OrdersAwaiting(3, 30.0)
    assert readings.orders_awaiting([poller("h:1", 1.0, {
        "orders_awaiting_erp": 0, "oldest_awaiting_erp_at": None})], now=now) == (
        readings.OrdersAwaiting(0, None))


def _certificate(conn: Any, version: int, superseded: bool,
                 renders: Mapping[str, float | None]) -> None:
    now = utcnow()
    (cid,) = conn.execute(insert(certificate).values(
        number=f"COA-{version}", batch_number="B2611-0001", customer="C00042", version=version,
        issued_at=now, sha256="0" * 64, verify_token=f"t{version}", quality_hash="q",
        data=json.dumps({}), superseded_by=version + 1 if superseded else None,
    )).inserted_primary_key
    for lang, ms in renders.items():
        conn.execute(insert(certificate_file).values(
            certificate_id=cid, lang=lang, pdf=b"%PDF", sha256="0" * 64, size=4,
            rendered_at=now, render_ms=ms))


def test_certificates_rendered_and_render_time(store: Store) -> None:
    with store.begin() as conn:
        _certificate(conn, 1, True, {"en": 120.0, "zh": 2400.0})
        _certificate(conn, 2, False, {"en": 80.0})
        _certificate(conn, 3, False, {"en": None})  # rendered before render time was kept
    with store.begin() as conn:
        found = readings.certificates(conn)
    assert (found.issued, found.superseded) == (3, 1)
    assert dict(found.rendered) == {"en": 3, "zh": 1}
    en = found.render_time["en"]
    assert en.count == 2 and en.sum == pytest.approx(0.2)
    assert dict(zip(en.bounds, en.cumulative, strict=True))[0.1] == 1
    assert found.render_time["zh"].quantile(0.5) == pytest.approx(1.75)


class _DeadBus:
    def queue_depths(self) -> dict[str, int]:
        raise BrokerUnavailable("the broker is away")


def test_read_gathers_everything_and_reports_what_failed(store: Store) -> None:
    _journal(store)
    bus: Any = _DeadBus()
    found = readings.read(store, bus, window=dt.timedelta(minutes=5), hours=1, now=NOW)
    assert found.errors == ("bus: the broker is away",)
    assert {f.route for f in found.flows} == {CRM_ERP, ERP_CRM}
    assert len(found.series) == 13 and found.outbox is not None
    plain = found.as_dict()
    json.dumps(plain)  # JSON-able as it is
    crm_erp = next(f for f in plain["flows"] if f["route"]["name"] == "order.changed crm→erp")
    assert crm_erp["applied"] == 3 and crm_erp["latency"]["p50"] is not None
    assert crm_erp["rate_per_minute"] == pytest.approx(0.6)
    assert found.dead_open == 0 and dict(found.certificate_outcomes) == {}


def test_certificate_outcomes_over_a_window(store: Store) -> None:
    ago = lambda minutes: NOW - dt.timedelta(minutes=minutes)  # noqa: E731
    with store.begin() as conn:
        record(conn, [Entry(event="certificate", outcome=outcome, at=ago(minutes))
                      for outcome, minutes in (("issued", 1), ("issued", 2), ("blocked", 3),
                                               ("issued", 60))])
    with store.begin() as conn:
        found = readings.certificate_outcomes(conn, since=ago(5))
    assert found == {"blocked": 1, "issued": 2}


def test_histogram_quantiles_interpolate_like_prometheus() -> None:
    hist = Histogram((1.0, 2.0, 4.0), (2, 6, 8), 10, 30.0)
    assert hist.quantile(0.1) == pytest.approx(0.5)
    assert hist.quantile(0.5) == pytest.approx(1.75)
    assert hist.quantile(0.8) == pytest.approx(4.0)
    assert hist.quantile(0.99) == 4.0, "beyond the last bound: the last bound"
    assert Histogram.empty((1.0,)).quantile(0.5) is None
    assert (hist + hist).count == 20 and hist.mean == 3.0
    with pytest.raises(ValueError):
        _ = hist + Histogram.empty((1.0,))


def test_targets_are_systems_or_parts() -> None:
    assert readings.target_of("applied", "hub.erp-applier.p3") == "erp"
    assert readings.target_of("applied", "hubt-1a2b.x.crm-applier.p0") == "crm"
    assert readings.target_of("applied", "hub.certificates.p1") == "certificates"
    assert readings.target_of("published", "crm.order.changed.p1") == "bus"
    assert readings.target_of("replayed", None) == ""


def test_what_housekeeping_prunes_is_still_counted(store: Store) -> None:
    _journal(store)
    with store.begin() as conn:
        before = readings.message_counts(conn)
        timed = readings.latencies(conn)
    cutoff = NOW - dt.timedelta(minutes=3)  # the old order and the dead letter go
    for _ in range(2):  # a second housekeeping round finds nothing more to fold
        with store.begin() as conn:
            fold(conn, cutoff)
            prune(conn, cutoff)
    with store.begin() as conn:
        assert readings.message_counts(conn) == before
        assert readings.latencies(conn) == timed
        assert readings.message_counts(conn, since=NOW - dt.timedelta(hours=1)) != before
        record(conn, [_applied(NOW - dt.timedelta(hours=1), 0.2)])
        fold(conn, NOW)
        prune(conn, NOW)
    with store.begin() as conn:
        counts = {(c.route, c.outcome): c.count for c in readings.message_counts(conn)}
        hist = readings.latencies(conn)[CRM_ERP]
    assert counts[(CRM_ERP, "applied")] == 5 and counts[(ERP_CRM, "applied")] == 1
    assert hist.count == 5 and hist.cumulative[1] == 1  # 0.2 s is within 0.25 s


def _by_key(tallied: list[Tallied]) -> dict[Any, tuple[int, Histogram]]:
    return {t.key: (t.count, t.latency) for t in tallied if t.count}


def test_running_totals_add_only_what_is_new_and_never_go_back(store: Store) -> None:
    _journal(store)
    running, now = RunningTotals(), NOW + dt.timedelta(minutes=1)
    with store.begin() as conn:
        first = _by_key(running.read(conn, now=now))
        assert first == _by_key(merge(scan(conn)))
        # Written since: one settled (older than a minute), one fresh, one stamped long ago
        # but committed only now (its id is still new, so it is counted).
        record(conn, [_applied(now - dt.timedelta(minutes=2), 0.7), _applied(now, 0.1),
                      _applied(now - dt.timedelta(days=3), 4.0)])
        second = _by_key(running.read(conn, now=now))
        assert second == _by_key(merge(scan(conn)))
        assert second[("applied", "order.changed", "crm", "hub.erp-applier.p1")][0] == 6
        assert _by_key(running.read(conn, now=now + dt.timedelta(minutes=5))) == second
    with store.begin() as conn:
        fold(conn, NOW - dt.timedelta(minutes=3))
        prune(conn, NOW - dt.timedelta(minutes=3))
    with store.begin() as conn:
        assert _by_key(running.read(conn, now=now)) == second
        assert _by_key(RunningTotals().read(conn, now=now)) == second, "a new process agrees"
        counts, timed = readings.by_route(running.read(conn, now=now))
    assert {(c.route, c.outcome): c.count for c in counts}[(CRM_ERP, "applied")] == 7
    assert timed[CRM_ERP].count == 7 and ERP_CRM not in timed
