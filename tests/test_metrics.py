"""``/metrics`` and ``hub status`` of a running ``hub run``, after orders synced: parsed with
the Prometheus text parser, and the counts matched against what was done.

Embedded (zero configuration, SQLite files and the embedded bus) and the real stack (store,
CRM and LIMS on PostgreSQL, ERP on MariaDB through ODBC, RabbitMQ)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select

from connectors.crm.schema import crm_account, crm_order
from connectors.erp.schema import ordr
from hub.demo.people import ErpUser, Line, SalesPerson
from hub.demo.reference import init
from hub.settings import Settings
from hub.store.engine import make_engine
from hub.store.tables import certificate
from tests.bus.kit import QUEUE_PREFIX, delete_test_queues
from tests.databases import AMQP_URL, Databases
from tests.helpers import daemon, free_port, hub_env, wait_for

ORDERS = 3
ROUTE = {"type": "order.changed", "source": "crm", "target": "erp"}


@dataclass
class Running:
    """A ``hub run`` subprocess's environment and the engines to drive its systems with."""

    cwd: Path
    env: dict[str, str]
    base: str
    store: Engine
    crm: Engine
    erp: Engine

    def start(self) -> Any:
        return daemon(self.cwd, self.env)

    def scrape(self) -> dict[str, Any]:
        text = httpx.get(f"{self.base}/metrics", timeout=10).text
        return {f.name: f for f in text_string_to_metric_families(text)}

    def status(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hub", "status", "--json"], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, timeout=60)


@pytest.fixture(params=["embedded", "real"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    port = free_port()
    env = hub_env(HUB_HTTP_PORT=str(port), HUB_POLL_INTERVAL="0.2", HUB_PARTITIONS="2",
                  HUB_RETRY_DELAYS="0.2,0.5,1.0")
    databases: list[Databases] = []
    prefix = f"{QUEUE_PREFIX}{uuid.uuid4().hex[:8]}"
    if request.param == "embedded":
        var = tmp_path / "var"
        urls = {k: f"sqlite:///{var}/{k}.db" for k in ("hub", "crm", "erp", "lims")}
    else:
        pg, maria = Databases("postgresql", tmp_path), Databases("mariadb", tmp_path)
        databases = [pg, maria]
        urls = {"hub": pg.url("hub", create=True), "crm": pg.url("crm"),
                "erp": maria.url("erp"), "lims": pg.url("lims")}
        env.update(HUB_DATABASE_URL=urls["hub"], HUB_CRM_URL=urls["crm"],
                   HUB_ERP_URL=urls["erp"], HUB_LIMS_URL=urls["lims"], HUB_BROKER_URL=AMQP_URL,
                   HUB_EXCHANGE=f"{prefix}-x", HUB_QUEUE_PREFIX=f"{prefix}.")
        init(Settings(_env_file=None, database_url=urls["hub"],  # type: ignore[call-arg]
                      crm_url=urls["crm"], erp_url=urls["erp"], lims_url=urls["lims"]),
             seed=True)
    engines = [make_engine(urls[k]) for k in ("hub", "crm", "erp")]
    try:
        yield Running(tmp_path, env, f"http://127.0.0.1:{port}", *engines)
    finally:
        for engine in engines:
            engine.dispose()
        if request.param == "real":
            delete_test_queues(prefix)
        for db in databases:
            db.drop_all()


def _order(crm: Engine, order_id: str) -> Any:
    with crm.connect() as conn:
        return conn.execute(select(crm_order).where(crm_order.c.order_id == order_id)).one()


def _doc_entry(erp: Engine, order_id: str) -> int:
    with erp.connect() as conn:
        found: int = conn.execute(select(ordr.c.DocEntry).where(
            order_id == ordr.c.U_CRM_ID)).scalar_one()
    return found


def _sample(families: dict[str, Any], family: str, sample: str | None = None,
            **labels: str) -> float:
    """The sum of ``sample`` (default: the family's own) values whose labels include
    ``labels``."""
    name = sample or family
    return sum(s.value for s in families[family].samples
               if s.name == name and labels.items() <= s.labels.items())


def test_metrics_and_status_match_what_was_synced(running: Running) -> None:
    line = [Line("ETAC-99", D("1200"), D("1.25"))]
    with running.start() as proc:
        wait_for(lambda: httpx.get(f"{running.base}/readyz").status_code == 200, 90, "ready")
        sales, erp = SalesPerson(running.crm), ErpUser(running.erp)
        with running.crm.connect() as conn:
            account = conn.execute(select(crm_account.c.account_id).where(
                crm_account.c.account_number == "C00042")).scalar_one()
        orders = [sales.submit_order(account, line, notes=f"order {n}") for n in range(ORDERS)]
        poison = sales.submit_order(account, [Line("SOLV-NEW", D("5"), D("2"))])
        for order_id in orders:
            wait_for(lambda o=order_id: _order(running.crm, o).integration_status == "synced",
                     60, "the order synced")
        wait_for(lambda: _order(running.crm, poison).integration_status == "error", 60,
                 "the unknown item refused")
        doc = _doc_entry(running.erp, orders[0])
        erp.confirm(doc)
        erp.deliver(doc, [(0, D("700"), "B2611-0001")])

        def issued() -> int:
            with running.store.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(certificate))
                           .scalar_one())

        wait_for(lambda: issued() >= 1, 90, "the delivered batch's certificate")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    # Both sides change the notes while the hub is down: the CRM owns notes and wins.
    sales.edit(orders[1], notes="sales says")
    erp.comment(_doc_entry(running.erp, orders[1]), "plant says")
    with running.start() as proc:
        wait_for(lambda: _order(running.crm, orders[1]).notes == "sales says"
                 and _order(running.crm, orders[1]).integration_status == "synced", 60,
                 "the conflict resolved")
        wait_for(lambda: _sample(running.scrape(), "hub_conflicts", "hub_conflicts_total") >= 1,
                 30, "the conflict counted")
        # The journal's "applied" is written after the ack, so it can trail the conflict.
        wait_for(lambda: _sample(running.scrape(), "hub_messages", "hub_messages_total",
                                 outcome="applied", **ROUTE) >= ORDERS + 1,
                 30, "the edit's apply journaled")
        # The CRM poller's count of orders awaiting the ERP comes with its next heartbeat.
        wait_for(lambda: "hub_crm_orders_awaiting_erp" in running.scrape(), 30,
                 "the orders awaiting the ERP counted")
        families = running.scrape()
        status = running.status()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

    for name in ("hub_up", "hub_messages", "hub_message_latency_seconds", "hub_queue_depth",
                 "hub_outbox_pending", "hub_dead_letters", "hub_conflicts",
                 "hub_source_watermark_lag_seconds", "hub_source_watermark_idle_seconds",
                 "hub_component_up", "hub_connector_up", "hub_certificates_issued",
                 "hub_certificates_rendered", "hub_certificate_render_seconds"):
        assert name in families, name
    assert families["hub_messages"].type == "counter"
    assert families["hub_message_latency_seconds"].type == "histogram"
    assert families["hub_certificate_render_seconds"].type == "histogram"
    assert _sample(families, "hub_up", dependency="store") == 1
    assert _sample(families, "hub_up", dependency="bus") == 1

    total = "hub_messages_total"
    applied = _sample(families, "hub_messages", total, outcome="applied", **ROUTE)
    # Each order once, and the conflicting edit (counted across the restart: from the store).
    assert applied >= ORDERS + 1
    assert _sample(families, "hub_messages", total, outcome="published", type="order.changed",
                   source="crm", target="bus") >= ORDERS + 2
    assert _sample(families, "hub_messages", total, outcome="dead_lettered", **ROUTE) >= 1
    assert _sample(families, "hub_messages", total, outcome="applied", type="order.status",
                   source="erp", target="crm") >= ORDERS
    latency = "hub_message_latency_seconds"
    timed = _sample(families, latency, f"{latency}_count", **ROUTE)
    assert timed == applied, "every applied CRM order carries its source commit time"
    assert _sample(families, latency, f"{latency}_bucket", le="+Inf", **ROUTE) == timed
    assert 0 < _sample(families, latency, f"{latency}_sum", **ROUTE) < 60 * timed
    assert _sample(families, latency, f"{latency}_bucket", le="60.0", **ROUTE) == timed

    assert _sample(families, "hub_dead_letters", status="dead") >= 1
    assert _sample(families, "hub_conflicts", "hub_conflicts_total", kind="order",
                   field="notes", winner="crm") >= 1
    assert _sample(families, "hub_certificates_issued", "hub_certificates_issued_total") >= 1
    assert _sample(families, "hub_certificates_rendered", "hub_certificates_rendered_total",
                   lang="en") >= 1
    render = "hub_certificate_render_seconds"
    assert _sample(families, render, f"{render}_count", lang="en") >= 1
    assert _sample(families, render, f"{render}_sum", lang="en") > 0
    assert _sample(families, "hub_connector_up", connector="crm") == 1
    assert _sample(families, "hub_connector_up", connector="erp") == 1
    held = families.get("hub_applier_held_messages")
    assert held is None or not held.samples, "no applier holds messages: every system answers"
    sources = {s.labels["source"] for s in families["hub_source_watermark_lag_seconds"].samples}
    assert {"crm.crm_order", "erp.ORDR"} <= sources

    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    # The daemon's memory, from its parts' heartbeats: one process, the one that served.
    host = socket.gethostname()
    memory = {m.labels["process"]: m.value for m in families[
        "hub_process_resident_memory_bytes"].samples}
    peak = {m.labels["process"]: m.value for m in families[
        "hub_process_resident_memory_peak_bytes"].samples}
    assert list(memory) == [m["process"] for m in report["processes"]] == [f"{host}:{proc.pid}"]
    assert 20 * 2**20 < memory[f"{host}:{proc.pid}"] <= peak[f"{host}:{proc.pid}"] < 2**31
    # Every order synced or refused: none awaits the ERP (the CRM poller counted at start).
    assert _sample(families, "hub_crm_orders_awaiting_erp") == 0
    assert _sample(families, "hub_crm_orders_awaiting_erp_oldest_seconds") == 0
    assert report["orders_awaiting_erp"] == {"count": 0, "oldest_seconds": None}
    flow = next(f for f in report["flows"] if f["route"] == "order.changed crm→erp")
    assert flow["applied"] >= 1 and flow["latency_p50"] is not None
    assert report["conflicts"]["total"] >= 1 and report["dead_letters"] >= 1
    assert report["certificates"]["issued"] >= 1 and report["certificates"]["rendered"]["en"] >= 1
    assert {c["name"]: c["up"] for c in report["connectors"]}["crm"] is True
