"""``hub status``: the report (``--json``) and the page, from a store with some history."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from sqlalchemy import update

from hub.components import AWAITING_KEY, OLDEST_KEY, Components
from hub.headers import H_KEY, H_OCCURRED, H_TYPE
from hub.journal import Entry, record
from hub.settings import Settings
from hub.status import collect, render
from hub.store import Store
from hub.store.tables import component
from hub.store.types import utcnow
from hub.sync.conflicts import Conflicts
from hub.sync.merge import Conflict
from hub.watermark import Change, Watermark


def _settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, var_dir=tmp_path / "var",  # type: ignore[call-arg]
                    database_url=f"sqlite:///{tmp_path}/hub.db")


def _history(store: Store) -> None:
    now = utcnow()
    with store.begin() as conn:
        record(conn, [
            Entry.for_message("applied", f"m{n}", {
                H_TYPE: "order.changed", H_KEY: f"SO-{n}",
                H_OCCURRED: (now - dt.timedelta(seconds=latency)).isoformat()},
                "crm.order.changed.p0", target="hub.erp-applier.p0", at=now)
            for n, latency in enumerate((0.4, 0.8, 3.0))])
        Conflicts.record(conn, kind="order", canonical_id="c1", key="SO-1", source="crm",
                         conflicts=[Conflict("notes", "sales says", "plant says", None, "crm")])
        Watermark("crm.crm_order").commit(conn, [Change("o1", "1", now, None)])
        Components.beat(conn, "crm-poller", "running", started_at=now, last_poll_at=now,
                        detail={AWAITING_KEY: 4, OLDEST_KEY: (
                            now - dt.timedelta(seconds=95)).isoformat()})
        Components.beat(conn, "erp-applier", "running", started_at=now, last_poll_at=now)


def test_status_reports_flows_latency_lag_and_conflicts(tmp_path: Path,
                                                        sqlite_store: Store) -> None:
    settings = _settings(tmp_path)
    _history(sqlite_store)
    report = collect(settings)
    assert report["healthy"] is True, report["errors"]
    json.dumps(report)
    (flow,) = report["flows"]
    assert flow["route"] == "order.changed crm→erp" and flow["applied"] == 3
    assert flow["rate_per_minute"] == 0.6
    assert 0.25 < flow["latency_p50"] < 1.0 and 2.0 < flow["latency_p95"] <= 5.0
    assert report["conflicts"]["total"] == 1
    assert report["conflicts"]["recent"][0]["winner"] == "crm"
    assert report["sources"][0]["source"] == "crm.crm_order"
    assert {c["name"]: c["up"] for c in report["connectors"]} == {"crm": True, "erp": True}
    assert report["certificates"]["issued"] == 0 and report["dead_letters"] == 0
    page = render(report)
    assert "order.changed crm→erp" in page and "P95" in page
    assert "conflicts: 1" in page and "notes: crm won" in page
    assert "crm.crm_order" in page and "connectors: crm up  erp up" in page
    awaiting = report["orders_awaiting_erp"]
    assert awaiting["count"] == 4 and 95 <= awaiting["oldest_seconds"] < 120
    assert re.search(r"CRM orders awaiting the ERP: 4, the oldest changed 9\d\.\ds ago", page)


def test_status_is_unhealthy_when_a_part_stops_beating(tmp_path: Path,
                                                       sqlite_store: Store) -> None:
    _history(sqlite_store)
    with sqlite_store.begin() as conn:
        conn.execute(update(component).where(component.c.name == "erp-applier").values(
            heartbeat_at=utcnow() - dt.timedelta(minutes=2)))
    report = collect(_settings(tmp_path))
    assert report["healthy"] is False
    assert {c["name"]: c["up"] for c in report["connectors"]}["erp"] is False
    assert "erp DOWN" in render(report) and "running!" in render(report)
