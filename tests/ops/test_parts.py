"""The dashboard's pieces without a browser: session signing, charts from the journal, the
overview arranged from :mod:`hub.readings`."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hub import readings
from hub.components import Components
from hub.http.dashboard.charts import latency_chart, throughput_chart
from hub.http.dashboard.readings import RATE_WINDOW, history, overview
from hub.http.dashboard.session import Signer, session_key
from hub.journal import Entry, record
from hub.settings import Settings
from hub.store.db import Store
from hub.store.deadletters import DeadLetters, NewDeadLetter
from hub.store.types import utcnow
from hub.sync.conflicts import Conflicts
from hub.sync.merge import Conflict
from hub.watermark import Change, Watermark


def test_a_session_cookie_cannot_be_forged_changed_or_reused_after_expiry() -> None:
    now = [1_000_000.0]
    signer = Signer(b"k" * 32, ttl=60, clock=lambda: now[0])
    session, cookie = signer.new_session(7, "ops-anna")
    assert signer.session(cookie) == session
    payload, _, mac = cookie.rpartition(".")
    assert signer.session(payload[:-2] + "xx." + mac) is None
    assert Signer(b"other" * 8).session(cookie) is None
    assert signer.unsign("login", cookie) is None, "a value signed for one purpose only"
    assert signer.csrf_ok(session.nonce, signer.csrf(session.nonce))
    assert not signer.csrf_ok(session.nonce, signer.csrf("another nonce"))
    now[0] += 61
    assert signer.session(cookie) is None


def test_the_session_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path / "var")  # type: ignore[call-arg]
    first = session_key(settings)
    assert len(first) >= 32 and session_key(settings) == first
    assert (tmp_path / "var" / "ops-session.key").stat().st_mode & 0o077 == 0
    chosen = Settings(_env_file=None, var_dir=tmp_path / "var",  # type: ignore[call-arg]
                      session_secret="s3cret-s3cret")
    assert session_key(chosen) == b"s3cret-s3cret"


def test_charts_are_bucketed_from_the_journal(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.migrate()
    now = utcnow()
    entries = []
    for i in range(12):  # one message every 5 minutes, 2 s from publish to apply
        at = now - dt.timedelta(minutes=5 * i + 1)
        mid = f"m-{i}"
        entries += [Entry("published", mid, "order.changed", f"SO-{i}", "crm",
                          "crm.order.changed.p0", at=at - dt.timedelta(seconds=2)),
                    Entry("applied", mid, "order.changed", f"SO-{i}", "crm",
                          "hub.erp-applier.p0", at=at, latency_ms=2000.0)]
    entries.append(Entry("dead_lettered", "m-x", "order.changed", "SO-x", "crm",
                         "hub.erp-applier.p0", error="<script>", at=now))
    with store.begin() as conn:
        record(conn, entries)
    found = history(store, hours=1, buckets=12, now=now + dt.timedelta(seconds=1))
    assert sum(p.applied for p in found.points) == 12
    assert sum(p.dead_lettered for p in found.points) == 1
    medians = [p.latency.quantile(0.5) for p in found.points if p.latency.count]
    assert len(medians) >= 10 and all(1.0 <= m <= 2.5 for m in medians)
    for svg in (throughput_chart(found), latency_chart(found)):
        ET.fromstring(str(svg))  # well-formed
    assert str(throughput_chart(found)).count('class="s-applied"') >= 10
    assert str(throughput_chart(found)).count('class="s-dead"') == 1

    live = overview(store, None, now=now + dt.timedelta(seconds=1))
    orders = next(f for f in live.flows if f.key == "crm:order.changed:erp")
    assert (orders.applied, orders.failed, orders.dead) == (1, 1, 1)
    assert orders.p95 is not None and 1.0 <= orders.p95 <= 2.5
    assert not live.errors
    store.dispose()


def test_the_overview_shows_what_hub_readings_reads(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.migrate()
    now = utcnow()
    with store.begin() as conn:
        Conflicts.record(conn, kind="order", canonical_id="c1", key="SO-1", source="crm",
                         conflicts=[Conflict("qty", 5, 7, 4, "erp")])
        Watermark("crm.crm_order").commit(conn, [Change("o1", "1", now - dt.timedelta(
            seconds=90), None)])
        Components.beat(conn, "erp-applier", "running", started_at=now, last_poll_at=now)
        DeadLetters.add(conn, [NewDeadLetter(
            message_id="d1", queue="hub.erp-applier.p0", routing_key="crm.order.changed.p0",
            body=b"{}", headers={}, reason="unknown item", error_code="unknown_item",
            attempts=1, type="order.changed", correlation_key="SO-1")])
        record(conn, [Entry(event="certificate", outcome="issued", at=now),
                      Entry(event="certificate", outcome="blocked", at=now)])
    live = overview(store, None, now=now + dt.timedelta(seconds=1))
    figures = readings.read(store, None, window=RATE_WINDOW, now=now + dt.timedelta(seconds=1))
    assert not live.errors and live.healthy
    assert live.figures.sources == figures.sources and live.figures.components == figures.components
    (c,) = live.conflicts
    assert (c.correlation_key, c.field, c.crm, c.erp, c.base, c.winner) == (
        "SO-1", "qty", 5, 7, 4, "erp")
    assert live.figures.dead_open == 1 and [d.message_id for d in live.dead_letters] == ["d1"]
    rows = {f.key: f for f in live.flows}
    assert live.flows[0].key == "crm:order.changed:erp" and live.flows[0].applied == 0
    assert rows["lims:certificate:issued"].applied == 1
    assert rows["lims:certificate:blocked"].per_minute == pytest.approx(0.2)
    assert live.outbox.pending == 0
    store.dispose()
