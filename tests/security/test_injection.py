"""SQL injection (and other hostile strings) everywhere a key comes in, over HTTP and on the
command line: never a server error, never a database's error text, and the same answer as a
key that does not exist."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select

from hub.store.tables import api_token, certificate, dead_letter, entitlement
from tests.certificates.test_http import HOSTILE as HOSTILE_BATCHES
from tests.certificates.world import HUAYI, STACKS
from tests.helpers import ROOT, hub_env
from tests.security.conftest import BATCH, MISSING, Site, site_on

#: Classic injections, for keys of any kind.
SQLI = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "1 OR 1=1",
    "1) OR (1=1",
    "1; DROP TABLE dead_letter; --",
    "1' UNION SELECT token_hash, 1, 1 FROM api_token --",
    "1/**/OR/**/1=1",
    "'; SELECT pg_sleep(3); --",
    "1 AND SLEEP(3)",
    "\\'; --",
    "%27%20OR%201%3D1",
    "\"",
    "`",
]
#: Numbers that are not ids: overflow, signs, other notations.
NUMBERS = ["0", "-1", "99999999999999999999", "9223372036854775808", "1e3", "0x10", "١٢", ""]
HOSTILE = [*SQLI, *HOSTILE_BATCHES, *NUMBERS]

#: A database's error text, or a stack trace.
LEAK = re.compile(r"(?i)traceback|sqlalchemy|psycopg|pyodbc|sqlite3?\.|syntax error|"
                  r"operationalerror|programmingerror|dataerror|integrityerror|"
                  r"unterminated|near \"|mariadb|postgres")


@pytest.fixture(params=STACKS)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """A site without a rate limit: these tests send hundreds of requests."""
    with site_on(request.param, tmp_path, rate_limit=0) as made:
        yield made


def _leaks(answer: httpx.Response, hostile: str) -> bool:
    text = answer.text
    for shown in (hostile, json.dumps(hostile)[1:-1], _seg(hostile)):
        if shown:
            text = text.replace(shown, "")
    return bool(LEAK.search(text))


def _seg(value: str) -> str:
    return quote(value, safe="", errors="surrogatepass")


def _counts(site: Site) -> dict[str, int]:
    with site.w.runtime.store.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (api_token, certificate, dead_letter, entitlement)}


def test_hostile_keys_over_http_are_not_found(site: Site) -> None:
    staff, customer = site.headers["staff"], site.headers["customer"]
    assert site.client.get(f"/api/v1/certificates/{BATCH}", headers=customer).status_code == 200
    before = _counts(site)
    missing_batch = site.client.get(f"/api/v1/certificates/{MISSING}", headers=customer)
    missing_letter = site.client.get("/api/v1/dead-letters/987654", headers=staff)
    missing_trace = site.client.get("/api/v1/trace/NOPE-000000", headers=staff)
    missing_replay = site.client.post("/api/v1/dead-letters/987654/replay", headers=staff)
    missing_page = site.client.get("/verify/" + "A" * 32)
    assert missing_letter.status_code == missing_trace.status_code == 404
    assert missing_replay.status_code == missing_page.status_code == 404
    failures: list[str] = []

    def check(answer: httpx.Response, hostile: str, like: httpx.Response | None,
              allowed: tuple[int, ...] = (404,)) -> None:
        where = f"{answer.request.method} {str(answer.request.url)[:150]} -> {answer.status_code}"
        if answer.status_code not in allowed:
            failures.append(f"{where}: {answer.text[:300]}")
        elif _leaks(answer, hostile):
            failures.append(f"{where} shows a database error: {answer.text[:300]}")
        elif (like is not None and answer.status_code == 404 and answer.content != like.content
              and "/" not in hostile and hostile not in (".", "..")):  # those are other routes
            failures.append(f"{where}: {answer.text[:200]} differs from {like.text[:200]}")

    for hostile in HOSTILE:
        seg = _seg(hostile)
        if not seg:
            continue  # an empty segment is another route
        for headers in (customer, staff):
            for suffix in ("", "/pdf"):
                check(site.client.get(f"/api/v1/certificates/{seg}{suffix}", headers=headers),
                      hostile, missing_batch)
        check(site.client.get(f"/api/v1/dead-letters/{seg}", headers=staff), hostile,
              missing_letter)
        # (Not the same body: a replay's answer names the id it was given, when it is one.)
        check(site.client.post(f"/api/v1/dead-letters/{seg}/replay", headers=staff), hostile,
              None)
        check(site.client.get(f"/verify/{seg}"), hostile, missing_page)
        answer = site.client.get(f"/api/v1/trace/{seg}", headers=staff)
        check(answer, hostile, None)
        if answer.status_code == 404 and "found" in answer.json():
            assert _unkeyed(answer.json()) == _unkeyed(missing_trace.json()), hostile
        elif answer.status_code == 404:  # a "/" in the key: no such route
            assert answer.json() == {"detail": "Not Found"}, hostile
    # Query parameters: a clear 404 or 422, never more.
    for hostile in HOSTILE:
        q = _seg(hostile)
        for url, headers in (
            (f"/api/v1/certificates/{BATCH}/pdf?version={q}", customer),
            (f"/api/v1/certificates/{BATCH}/pdf?lang={q}", customer),
            (f"/api/v1/certificates/{BATCH}/pdf?customer={q}", customer),
            (f"/api/v1/certificates/{BATCH}/pdf?customer={q}", staff),
            (f"/api/v1/dead-letters?status={q}", staff),
            (f"/api/v1/dead-letters?limit={q}", staff),
        ):
            check(site.client.get(url, headers=headers), hostile, None, (404, 422))
    assert not failures, "\n".join(failures)
    assert _counts(site) == before
    # Still all there and working.
    assert site.client.get(f"/api/v1/certificates/{BATCH}/pdf",
                           headers=customer).status_code == 200
    assert site.client.get(f"/api/v1/dead-letters/{site.letter_id}",
                           headers=staff).status_code == 200


def _unkeyed(trace: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in trace.items() if k not in ("key", "message", "errors")}


def test_hostile_keys_on_the_command_line(site: Site, tmp_path: Path) -> None:
    """``trace``, ``dead-letters show/replay/discard``, ``certificate get`` and ``token
    create`` with injection strings: a clear message and exit status, no traceback."""
    runtime = site.w.runtime
    env = hub_env(HUB_DATABASE_URL=runtime.settings.database,
                  HUB_ERP_URL=runtime.settings.system_url("erp"),
                  HUB_LIMS_URL=runtime.settings.system_url("lims"),
                  HUB_CRM_URL=f"sqlite:///{tmp_path}/no-crm.db",
                  HUB_VAR_DIR=str(tmp_path / "var"), HUB_LOG_LEVEL="WARNING")
    site.w.service.ensure(BATCH, HUAYI)
    before = _counts(site)
    strings = ["' OR '1'='1", "1; DROP TABLE dead_letter; --", "99999999999999999999",
               "{{7*7}}"]
    script = (
        "import sys\nfrom click.testing import CliRunner\nfrom hub.cli import cli\n"
        "import json\nout = []\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    r = CliRunner().invoke(cli, args)\n"
        "    out.append([args, r.exit_code, r.output, repr(r.exception)"
        " if r.exception and not isinstance(r.exception, SystemExit) else None])\n"
        "print(json.dumps(out))\n"
    )
    commands = []
    for s in strings:
        commands += [["trace", s], ["trace", "--json", s], ["dead-letters", "show", s],
                     ["dead-letters", "replay", s], ["dead-letters", "discard", s],
                     ["certificate", "get", s, "--customer", HUAYI, "-o",
                      str(tmp_path / "out.pdf")],
                     ["certificate", "get", BATCH, "--customer", s, "-o",
                      str(tmp_path / "out.pdf")],
                     ["token", "create", "--customer", s]]
    done = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    failures = []
    for args, code, output, exception in json.loads(done.stdout):
        hostile = next((a for a in args if a in strings), "")
        text = output.replace(hostile, "")
        if exception is not None or "Traceback" in output or LEAK.search(text):
            failures.append(f"{args}: exit {code}, {exception}: {output[-500:]}")
        elif args[0] != "token" and code == 0 and args[:2] != ["trace", "--json"]:
            failures.append(f"{args}: succeeded? {output[-300:]}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "out.pdf").exists()
    after = _counts(site)
    # ``token create`` may make tokens for odd customer names (they match no customer).
    assert {k: v for k, v in after.items() if k != "api_token"} == {
        k: v for k, v in before.items() if k != "api_token"}


def test_hostile_keys_in_bulk_replay_and_the_dashboard(site: Site) -> None:
    """The dead-letter routes that take ids or filters in a body, and the dashboard's pages
    that take a key: refused or not found, never an error, nothing changed."""
    from tests.security.test_access_matrix import _cookie, _login

    staff = site.headers["staff"]
    before = _counts(site)
    bodies: list[dict[str, Any]] = [{"ids": [int("9" * 20)]}, {"ids": [-1, 0, 2**63]}]
    for hostile in SQLI[:6]:
        bodies += [{"key": hostile}, {"queue": hostile}, {"type": hostile},
                   {"error_code": hostile[:40]}]
    for body in bodies:
        answer = site.client.post("/api/v1/dead-letters/replay", headers=staff, json=body)
        assert answer.status_code in (200, 404, 409, 422), (body, answer.text[:300])
        assert not LEAK.search(answer.text.replace(json.dumps(body), "")), answer.text[:300]
    for hostile in SQLI:
        seg = _seg(hostile)
        for action, body in (("discard", {"reason": hostile}), ("edit", {"set": {"x": 1}})):
            answer = site.client.post(f"/api/v1/dead-letters/{seg}/{action}", headers=staff,
                                      json=body)
            assert answer.status_code == 404, (hostile, action, answer.text[:300])
    login = _login(site, site.tokens["staff"])
    session = _cookie(login, "hub_ops_session")
    assert session is not None, login.text[:300]
    cookie = {"Cookie": session}
    for hostile in [*SQLI, "x" * 5000, "\x00"]:
        q = _seg(hostile)
        for url in (f"/ops/trace?key={q}", f"/ops/dead-letters?status={q}",
                    f"/ops/dead-letters?limit={q}", f"/ops/dead-letters/{q}"):
            answer = site.client.get(url, headers=cookie)
            assert answer.status_code in (200, 404, 422), (url[:100], answer.text[:300])
            assert not _leaks(answer, hostile), (url[:100], answer.text[:500])
    assert _counts(site) == before
