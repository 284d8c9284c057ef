"""The daemon on the production stack: hub store on PostgreSQL, RabbitMQ, CRM and LIMS on
PostgreSQL, ERP on MariaDB through ODBC — and a broker outage it must ride out."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.bus.kit import QUEUE_PREFIX, delete_test_queues
from tests.databases import AMQP_URL, Databases
from tests.helpers import daemon, free_port, hub_env, wait_for


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    pg, maria = Databases("postgresql", tmp_path), Databases("mariadb", tmp_path)
    try:
        yield hub_env(
            HUB_DATABASE_URL=pg.url("hub", create=True),
            HUB_CRM_URL=pg.url("crm"), HUB_LIMS_URL=pg.url("lims"), HUB_ERP_URL=maria.url("erp"),
            HUB_BROKER_URL=AMQP_URL, HUB_EXCHANGE=f"{QUEUE_PREFIX}x-{uuid.uuid4().hex[:8]}",
            HUB_QUEUE_PREFIX=f"{QUEUE_PREFIX}{uuid.uuid4().hex[:8]}.",
            HUB_HTTP_PORT=str(free_port()),
        )
    finally:
        pg.drop_all()
        maria.drop_all()
        delete_test_queues(QUEUE_PREFIX)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=120, capture_output=True)


def test_daemon_runs_on_the_real_stack_and_rides_out_a_broker_outage(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    init = subprocess.run([sys.executable, "-m", "hub", "demo", "init", "--seed"],
                          env=stack_env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    assert "erp: schema ready and seeded at mysql+pyodbc://root:***@" in init.stdout
    base = f"http://127.0.0.1:{stack_env['HUB_HTTP_PORT']}"

    def ready() -> httpx.Response:
        return httpx.get(f"{base}/readyz", timeout=15)

    with daemon(tmp_path, stack_env) as proc:
        wait_for(lambda: ready().status_code == 200, 90, "readiness on the real stack")
        assert ready().json()["checks"] == {k: "ok" for k in ("store", "bus", "crm", "erp",
                                                              "lims")}
        assert 'hub_up{dependency="bus"} 1.0' in httpx.get(f"{base}/metrics").text
        try:
            rabbitmqctl("stop_app")
            wait_for(lambda: ready().status_code == 503, 30, "readiness to notice the outage")
            assert ready().json()["checks"]["bus"] != "ok"
            assert ready().json()["checks"]["store"] == "ok"
        finally:
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup")
        wait_for(lambda: ready().status_code == 200, 60, "readiness after the broker is back")
        assert proc.poll() is None, "the daemon survived the outage"
        status = subprocess.run([sys.executable, "-m", "hub", "status"], env=stack_env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout
        assert "amqp://guest:***@" in status.stdout and "guest:guest" not in status.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=45) == 0
    assert "guest:guest" not in (tmp_path / "daemon.log").read_text()
