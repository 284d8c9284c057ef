"""sqlmap (Debian's) against the certificate API on loopback, with a customer's token: the
batch number in the path and every query parameter, level 2 (also the cookie), risk 1."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.certificates.world import HUAYI
from tests.security.conftest import BATCH, site_on

SQLMAP = shutil.which("sqlmap") or "/usr/bin/sqlmap"


def _sqlmap(url: str, token: str, out: Path) -> str:
    done = subprocess.run(
        [SQLMAP, "-u", url, "-H", f"Authorization: Bearer {token}", "--batch",
         "--level", "2", "--risk", "1", "--time-sec", "2", "--timeout", "10",
         "--disable-coloring", "--flush-session", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    log = done.stdout + done.stderr
    (out / "sqlmap.log").write_text(log)
    return log


def _assert_nothing_injectable(log: str, parameters: list[str]) -> None:
    assert "all tested parameters do not appear to be injectable" in log, log[-3000:]
    for found in ("is vulnerable", "identified the following injection point",
                  "appears to be injectable", "might be injectable"):
        assert found not in log, (found, log[-3000:])
    for parameter in parameters:
        assert re.search(rf"parameter '{re.escape(parameter)}' does not seem to be injectable",
                         log), (parameter, log[-3000:])
    codes = re.search(r"HTTP error codes detected during run:\n(.*)", log)
    assert codes is None or "500" not in codes.group(1), codes and codes.group(1)


def test_sqlmap_finds_nothing_injectable(tmp_path: Path) -> None:
    with site_on(("sqlite", "sqlite"), tmp_path, rate_limit=0) as site:
        base = str(site.client.base_url).rstrip("/")
        token = site.tokens["customer"]
        path = _sqlmap(f"{base}/api/v1/certificates/{BATCH}*", token, tmp_path / "path")
        _assert_nothing_injectable(path, ["#1*"])
        query = _sqlmap(f"{base}/api/v1/certificates/{BATCH}/pdf?version=1&lang=en"
                        f"&customer={HUAYI}", token, tmp_path / "query")
        _assert_nothing_injectable(query, ["version", "lang", "customer"])
        # The API still answers as before: sqlmap's requests changed nothing.
        assert site.client.get(f"/api/v1/certificates/{BATCH}",
                               headers=site.headers["customer"]).status_code == 200
