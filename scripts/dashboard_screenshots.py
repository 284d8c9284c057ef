"""Screenshots of the operations dashboard for ``docs/screenshots/``.

Runs the whole hub on embedded defaults in a temporary directory, lets the demo simulation
act as the systems' users for a few minutes (plus one order for an item the ERP does not
know, so there is a dead letter), then photographs the login, overview, trace and dead-letter
pages in headless Chromium (Debian's ``/usr/bin/chromium``)::

    .venv/bin/python scripts/dashboard_screenshots.py --minutes 4
"""

from __future__ import annotations

import argparse
import random
import socket
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from playwright.sync_api import sync_playwright
from sqlalchemy import Engine, select

from connectors.crm.schema import crm_account, crm_order, crm_shipment
from connectors.erp.schema import ordr
from hub.daemon import Daemon
from hub.demo.people import ErpUser, Line, SalesPerson
from hub.demo.reference import init
from hub.demo.simulate import Simulator
from hub.parts import build_parts
from hub.runtime import Runtime
from hub.settings import Settings
from hub.tokens import STAFF, ApiTokens

ROOT = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--rate", type=float, default=3.0, help="simulated actions per second")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        settings = Settings(_env_file=None, var_dir=var, http_port=_port(),  # type: ignore[call-arg]
                            poll_interval=0.5, retry_delays=(0.5, 1.0))
        init(settings, seed=True)
        runtime = Runtime.open(settings)
        daemon = Daemon(runtime, build_parts(runtime))
        daemon.prepare()
        daemon.start()
        crm, erp, lims = runtime.system("crm"), runtime.system("erp"), runtime.system("lims")
        try:
            with runtime.store.begin() as conn:
                _, staff = ApiTokens.create(conn, STAFF, "ops-anna")
            with crm.connect() as conn:
                account = conn.execute(select(crm_account.c.account_id).where(
                    crm_account.c.account_number == "C00042")).scalar_one()
            SalesPerson(crm, "ben").submit_order(
                account, [Line("SOLV-NEW", Decimal("5"), Decimal("2.1"))])
            stop = threading.Event()
            simulator = Simulator(crm, erp, lims, rng=random.Random(7), quiet=True,
                                  echo=lambda _: None, settle=3.0)

            def act() -> None:
                while not stop.is_set():
                    simulator.step()
                    stop.wait(1.0 / args.rate)

            worker = threading.Thread(target=act, daemon=True)
            worker.start()
            time.sleep(args.minutes * 60)
            stop.set()
            worker.join(10)
            _conflicts(crm, erp)
            time.sleep(3)
            with crm.connect() as conn:
                shipped = conn.execute(
                    select(crm_order.c.order_number)
                    .join(crm_shipment, crm_shipment.c.order_id == crm_order.c.order_id)
                    .order_by(crm_order.c.order_number.desc()).limit(1)).scalar()
            _photograph(f"http://127.0.0.1:{settings.http_port}", staff, shipped, args.out)
        finally:
            daemon.shutdown()
            runtime.close()


def _conflicts(crm: Engine, erp: Engine) -> None:
    """Change the notes of a few synced orders in the CRM and the ERP at once: conflicts,
    which the notes' owner (the CRM) wins."""
    with crm.connect() as conn:
        synced = conn.execute(select(crm_order.c.order_id).where(
            crm_order.c.integration_status == "synced", crm_order.c.status != "cancelled")
            .order_by(crm_order.c.order_number.desc()).limit(3)).scalars().all()
    sales, erp_user = SalesPerson(crm, "carla"), ErpUser(erp, "planner")
    for order_id in synced:
        with erp.connect() as conn:
            doc = conn.execute(select(ordr.c.DocEntry).where(
                order_id == ordr.c.U_CRM_ID)).scalar()
        if doc is not None:
            sales.edit(order_id, notes="Deliver before Friday, gate 3")
            erp_user.comment(doc, "Customer asked for Monday delivery")


def _photograph(base: str, staff: str, order: str | None, out: Path) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        page.goto(f"{base}/ops/")
        page.screenshot(path=str(out / "login.png"))
        page.fill("#token", staff)
        page.click("button:has-text('Log in')")
        page.goto(f"{base}/ops/?hours=1")
        page.screenshot(path=str(out / "overview.png"), full_page=True)
        if order:
            page.fill("#trace-key", order)
            page.press("#trace-key", "Enter")
            page.wait_for_load_state()
            page.screenshot(path=str(out / "trace.png"), full_page=True)
        page.goto(f"{base}/ops/dead-letters")
        page.screenshot(path=str(out / "dead-letters.png"))  # the first rows
        first = page.locator("tr[data-letter] a").first
        if first.count():
            first.click()
            page.wait_for_load_state()
            page.screenshot(path=str(out / "dead-letter.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
