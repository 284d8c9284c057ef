"""``python -m hub token ...`` and ``python -m hub certificate ...`` as a user runs them, on the
embedded defaults; and the daemon issuing certificates ahead of demand."""

from __future__ import annotations

import hashlib
import re
import signal
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx

from hub.demo.people import ErpUser, LabPerson
from hub.store.engine import make_engine
from tests.certificates.kit import pdftotext
from tests.helpers import daemon, free_port, hub_env, wait_for

TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def _hub(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _deliver(var: Path, customer: str, batch: str, item: str, quantity: str = "1000") -> None:
    """An ERP order of ``customer``, delivered from ``batch``, in the embedded ERP."""
    engine = make_engine(f"sqlite:///{var / 'erp.db'}")
    try:
        user = ErpUser(engine, "warehouse")
        line = SimpleNamespace(product_code=item, description=item, quantity=Decimal(quantity),
                               unit_price=Decimal("2.00"), unit="kg")
        order, _ = user.enter_order(customer, [line], reference=f"PO-{batch}-{customer}")
        user.deliver(order, [(0, Decimal(quantity), batch)])
    finally:
        engine.dispose()


def _rows(database: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as conn:
        return conn.execute(query).fetchall()


def test_tokens_and_certificates_from_the_command_line(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = hub_env(HUB_VAR_DIR=str(var), HUB_PUBLIC_URL="https://coa.example.test/")
    init = _hub(tmp_path, env, "demo", "init", "--seed")
    assert init.returncode == 0, init.stderr
    _deliver(var, "C00042", "B2611-0001", "ETAC-99", "16000")
    _deliver(var, "C00042", "B2611-0011", "PGMEA-995")
    _deliver(var, "C00042", "B2611-0003", "MEK-995")
    _deliver(var, "C00043", "B2611-0003", "MEK-995")

    created = _hub(tmp_path, env, "token", "create", "--customer", "C00042")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert TOKEN.fullmatch(token), created.stdout
    assert token not in created.stderr
    staff = _hub(tmp_path, env, "token", "create", "--staff", "Li Wang")
    assert staff.returncode == 0 and TOKEN.fullmatch(staff.stdout.strip())
    stored = _rows(var / "hub.db", "SELECT token_hash, kind, subject FROM api_token ORDER BY id")
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(), "customer", "C00042"),
                      (hashlib.sha256(staff.stdout.strip().encode()).hexdigest(), "staff",
                       "Li Wang")]
    assert token.encode() not in (var / "hub.db").read_bytes()
    listed = _hub(tmp_path, env, "token", "list")
    assert "C00042" in listed.stdout and token not in listed.stdout
    for wrong in ((), ("--customer", "C00042", "--staff", "x")):
        refused = _hub(tmp_path, env, "token", "create", *wrong)
        assert refused.returncode == 2 and "exactly one" in refused.stderr

    out = tmp_path / "coa.pdf"
    got = _hub(tmp_path, env, "certificate", "get", "B2611-0001", "--customer", "C00042",
               "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert "COA-B2611-0001-C00042 v1" in got.stdout
    pdf = out.read_bytes()
    assert hashlib.sha256(pdf).hexdigest() in got.stdout
    text = pdftotext(pdf, tmp_path)
    for needle in ("COA-B2611-0001-C00042", "Version 1", "B2611-0001", "Ethyl acetate",
                   "C00042", "PO-B2611-0001-C00042", "16,000", "Purity (GC)"):
        assert needle in text, needle
    assert "coa.example.test/verify/" in pdftotext(pdf, tmp_path, raw=True)
    # The same certificate again: stored, not issued anew.
    again = _hub(tmp_path, env, "certificate", "get", "B2611-0001", "-o", str(out))
    assert again.returncode == 0 and out.read_bytes() == pdf
    assert "issued" not in again.stderr
    chinese = tmp_path / "coa-zh.pdf"
    zh = _hub(tmp_path, env, "certificate", "get", "B2611-0001", "--version", "1",
              "--lang", "zh", "-o", str(chinese))
    assert zh.returncode == 0, zh.stderr
    assert "质量检验报告单" in pdftotext(chinese.read_bytes(), tmp_path)
    assert _rows(var / "hub.db", "SELECT count(*) FROM certificate") == [(1,)]

    for args, problem in (
        (("B2611-0002",), "not delivered to any customer"),
        (("B2611-0002", "--customer", "C00042"), "not delivered to customer C00042"),
        (("B2611-0011",), "not authorised"),
        (("B2611-0003",), "several customers"),
        (("B2611-0001", "--version", "2"), "has no version 2"),
        (("' OR 1=1 --",), "not delivered"),
    ):
        failed = _hub(tmp_path, env, "certificate", "get", *args, "-o", str(tmp_path / "x.pdf"))
        assert failed.returncode == 1, (args, failed.stdout, failed.stderr)
        assert problem in failed.stderr, (args, failed.stderr)
        assert "Traceback" not in failed.stderr
    assert not (tmp_path / "x.pdf").exists()

    bulk = _hub(tmp_path, env, "certificate", "render-missing", "--workers", "2")
    assert bulk.returncode == 0, bulk.stderr
    assert "issued 2," in bulk.stdout and "lot not authorised 1" in bulk.stdout
    issued = _rows(var / "hub.db",
                   "SELECT batch_number, customer, version FROM certificate ORDER BY id")
    assert sorted(issued) == [("B2611-0001", "C00042", 1), ("B2611-0003", "C00042", 1),
                              ("B2611-0003", "C00043", 1)]
    nothing = _hub(tmp_path, env, "certificate", "render-missing", "--workers", "1")
    assert nothing.returncode == 0 and "issued 0," in nothing.stdout


def test_the_daemon_issues_ahead_of_demand_and_once_a_lot_is_authorised(tmp_path: Path) -> None:
    var = tmp_path / "var"
    port = free_port()
    env = hub_env(HUB_VAR_DIR=str(var), HUB_HTTP_PORT=str(port), HUB_POLL_INTERVAL="0.2")
    base = f"http://127.0.0.1:{port}"
    with daemon(tmp_path, env) as proc:
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 90, "readyz")
        token = _hub(tmp_path, env, "token", "create", "--customer", "C00051").stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        _deliver(var, "C00051", "B2611-0012", "ETAC-99", "2000")  # not authorised yet
        _deliver(var, "C00051", "B2611-0007", "NBAC-995", "5000")

        def issued(batch: str, count: int = 1) -> bool:
            found = _rows(var / "hub.db", "SELECT count(*) FROM certificate WHERE "
                                          f"batch_number = '{batch}'")
            return found == [(count,)]

        # Issued by the daemon before anybody asked for it.
        wait_for(lambda: issued("B2611-0007"), 60, "the certificate of B2611-0007")
        pdf = httpx.get(f"{base}/api/v1/certificates/B2611-0007/pdf", headers=headers)
        assert pdf.status_code == 200 and pdf.headers["x-certificate-version"] == "1"
        waiting = httpx.get(f"{base}/api/v1/certificates/B2611-0012", headers=headers)
        assert waiting.status_code == 409 and "not authorised" in waiting.text

        lims = make_engine(f"sqlite:///{var / 'lims.db'}")
        try:
            LabPerson(lims).authorise("B2611-0012")
        finally:
            lims.dispose()
        wait_for(lambda: issued("B2611-0012"), 60, "the certificate of B2611-0012")
        listed = httpx.get(f"{base}/api/v1/certificates/B2611-0012", headers=headers).json()
        assert [c["version"] for c in listed["certificates"]] == [1]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert token not in log
