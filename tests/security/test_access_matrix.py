"""Every HTTP route, for every kind of caller: nobody gets in where they should not.

The routes are enumerated from the application itself, so a route added without a line in
:data:`ROUTES` fails :func:`test_every_route_is_classified` with instructions, and a route
whose class is wrong fails the matrix. Broken object-level authorisation is checked by
comparing answers byte for byte: somebody else's batch, a missing batch and a malformed
batch number answer the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from hub.http.app import create_app
from tests.certificates.world import HUAYI, RHEINLAND
from tests.security.conftest import BATCH, MISSING, Site, site_on

#: Anyone, no token needed.
PUBLIC = "public"
#: A customer token for its own batches, or a staff token; BOLA-checked.
OWNER = "customer's own or staff"
#: Staff bearer tokens only.
STAFF = "staff"
#: The operations dashboard: a staff login session (cookie); bearer tokens of customers
#: must never open it.
STAFF_SESSION = "staff session"

#: (method, route path) -> who may call it. A new route must be added here.
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    # FastAPI's own documentation of the API (no data).
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/verify/{token}"): PUBLIC,
    ("GET", "/api/v1/certificates/{batch}"): OWNER,
    ("GET", "/api/v1/certificates/{batch}/pdf"): OWNER,
    ("GET", "/api/v1/trace/{key}"): STAFF,
    ("GET", "/api/v1/dead-letters"): STAFF,
    ("GET", "/api/v1/dead-letters/{letter_id}"): STAFF,
    ("POST", "/api/v1/dead-letters/replay"): STAFF,
    ("POST", "/api/v1/dead-letters/{letter_id}/replay"): STAFF,
    ("POST", "/api/v1/dead-letters/{letter_id}/discard"): STAFF,
    ("POST", "/api/v1/dead-letters/{letter_id}/edit"): STAFF,
}
#: Routes under these prefixes are classified by prefix.
PREFIXES: dict[str, str] = {"/ops": STAFF_SESSION}
#: Pages of the dashboard that must open without a session (its login form, its assets).
OPEN_SESSION_PAGES = re.compile(r"/ops/(login|logout|static|assets)(/|$)")

CALLERS = ("no token", "wrong customer", "customer", "staff")
#: What nobody but staff may ever see in an answer.
STAFF_SECRETS = ("unknown item XYZ", "SO-2026-000001")


def enumerate_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route of ``app``; a mount counts as GET on its path."""
    found: list[tuple[str, str]] = []
    for route in app.routes:
        path = getattr(route, "path", None)
        if path is None:
            found.append(("?", repr(route)))
            continue
        if isinstance(route, Mount):
            found.append(("GET", path.rstrip("/") + "/{path}"))
            continue
        methods = sorted((getattr(route, "methods", None) or {"GET"}) - {"HEAD", "OPTIONS"})
        found.extend((method, path) for method in methods)
    return found


def classify(method: str, path: str) -> str | None:
    if (method, path) in ROUTES:
        return ROUTES[(method, path)]
    for prefix, kind in PREFIXES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return kind
    return None


@pytest.fixture(scope="module")
def sqlite_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with site_on(("sqlite", "sqlite"), tmp_path_factory.mktemp("matrix")) as made:
        yield made


def test_every_route_is_classified(sqlite_site: Site) -> None:
    app = create_app(sqlite_site.w.runtime)
    unknown = [f"{m} {p}" for m, p in enumerate_routes(app) if classify(m, p) is None]
    assert not unknown, (
        "routes that the security matrix does not know: " + ", ".join(unknown)
        + ". Add each to ROUTES in tests/security/test_access_matrix.py as PUBLIC, OWNER, "
        "STAFF or STAFF_SESSION (and teach fill() its path parameters)."
    )


def fill(site: Site, path: str, *, batch: str = BATCH) -> str:
    """``path`` with its parameters filled with values that exist."""
    values = {"batch": quote(batch, safe=""), "key": BATCH, "letter_id": str(site.letter_id),
              "token": _verify_token(site), "path": "x"}

    def one(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        assert name in values, f"fill() does not know the path parameter {{{name}}} of {path}"
        return values[name]

    return re.sub(r"\{([^}]+)\}", one, path)


def _verify_token(site: Site) -> str:
    infos = site.w.service.versions(BATCH)
    if not infos:
        site.w.service.ensure(BATCH, HUAYI)
        infos = site.w.service.versions(BATCH)
    return infos[0].verify_token


#: A valid body for the routes that need one (so a refusal is about the caller, not the body).
BODIES: dict[str, Any] = {
    "/api/v1/dead-letters/replay": {"ids": [1]},
    "/api/v1/dead-letters/{letter_id}/discard": {"reason": "security matrix"},
    "/api/v1/dead-letters/{letter_id}/edit": {"set": {"source_version": "2"}},
}


def _call(site: Site, method: str, url: str, caller: str, path: str = "") -> httpx.Response:
    site.client.cookies.clear()
    return site.client.request(method, url, headers=site.headers[caller],
                               json=BODIES.get(path) if method == "POST" else None)


def _body(answer: httpx.Response) -> tuple[int, str, bytes]:
    return answer.status_code, answer.headers.get("content-type", ""), answer.content


@pytest.mark.parametrize("caller", CALLERS)
def test_the_matrix(sqlite_site: Site, caller: str) -> None:
    site = sqlite_site
    app = create_app(site.w.runtime)
    failures: list[str] = []
    for method, path in enumerate_routes(app):
        kind = classify(method, path)
        if kind is None:
            continue  # reported by test_every_route_is_classified
        url = fill(site, path)
        answer = _call(site, method, url, caller, path)
        where = f"{caller}: {method} {url} ({kind}) -> {answer.status_code} {answer.text[:200]}"
        # 503: readiness, or a replay to a queue this test never declared: said, not crashed.
        if answer.status_code >= 500 and answer.status_code != 503:
            failures.append(f"server error: {where}")
            continue
        if caller != "staff" and any(s in answer.text for s in STAFF_SECRETS):
            failures.append(f"staff data shown: {where}")
        if kind == PUBLIC:
            if answer.status_code in (401, 403):
                failures.append(f"public route refused: {where}")
        elif kind == STAFF_SESSION:
            failures.extend(_session_failures(path, answer, where, caller))
        elif caller == "no token":
            if answer.status_code != 401 or not answer.headers.get(
                    "www-authenticate", "").startswith("Bearer"):
                failures.append(f"expected 401 with WWW-Authenticate: {where}")
        elif kind == OWNER:
            expected = 404 if caller == "wrong customer" else 200
            if answer.status_code != expected:
                failures.append(f"expected {expected}: {where}")
            if caller == "wrong customer":
                missing = _call(site, method, fill(site, path, batch=MISSING), caller, path)
                if _body(answer) != _body(missing):
                    failures.append(f"somebody else's batch differs from a missing one: {where}")
        elif kind == STAFF:
            expected_ok = caller == "staff"
            if expected_ok and answer.status_code not in (200, 409, 503):
                failures.append(f"staff refused: {where}")
            if not expected_ok and answer.status_code != 403:
                failures.append(f"expected 403: {where}")
    assert not failures, "\n".join(failures)


def _session_failures(path: str, answer: httpx.Response, where: str, caller: str) -> list[str]:
    """The dashboard: without a staff session, only its login page and assets open."""
    if caller == "staff" or OPEN_SESSION_PAGES.match(path):
        return []  # staff log in with a session, not a bearer token: nothing to require here
    status = answer.status_code
    if status in (401, 403, 404, 405):
        return []
    location = answer.headers.get("location", "")
    if status in (302, 303, 307) and ("login" in location or location.endswith("/ops/")):
        return []
    return [f"dashboard page open without a staff session: {where}"]


def test_a_customer_bearer_token_does_not_open_the_dashboard(sqlite_site: Site) -> None:
    """Whatever the dashboard's login, a customer's API token is no staff session."""
    site = sqlite_site
    token = site.tokens["customer"]
    for name in ("session", "hub_session", "ops_session"):
        site.client.cookies.clear()
        site.client.cookies.set(name, token)
        answer = site.client.get("/ops/", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code in (302, 303, 307, 401, 403, 404), answer.text[:200]
        assert "unknown item XYZ" not in answer.text
    site.client.cookies.clear()


@pytest.mark.parametrize("suffix", ["", "/pdf", "/pdf?version=1", "/pdf?lang=zh",
                                    f"/pdf?customer={HUAYI}"])
def test_theirs_missing_and_malformed_look_the_same(site: Site, suffix: str) -> None:
    """To RHEINLAND, HUAYI's batch, a batch that does not exist and things that are not batch
    numbers at all are one and the same answer."""
    headers = site.headers["wrong customer"]
    answers = {}
    for batch in (BATCH, MISSING, "B2611-0001' OR '1'='1", "x" * 37, "%", "b2611-0001",
                  "B2611-0001 ", "{{7*7}}"):
        answer = site.client.get(
            f"/api/v1/certificates/{quote(batch, safe='')}{suffix}", headers=headers)
        answers[batch] = _body(answer)
    assert answers[MISSING][0] == 404
    different = {b: a for b, a in answers.items() if a != answers[MISSING]}
    assert not different, different
    # The owner still gets it, so the 404 above was about who asked.
    own = site.client.get(f"/api/v1/certificates/{BATCH}{suffix}", headers=site.headers["customer"])
    assert own.status_code == 200, own.text


def test_a_customer_never_sees_another_customers_certificate(site: Site) -> None:
    """Both customers got the batch: each sees only its own certificate, by any route."""
    site.w.deliver(RHEINLAND, BATCH, "800")
    mine = site.client.get(f"/api/v1/certificates/{BATCH}", headers=site.headers["customer"])
    theirs = site.client.get(f"/api/v1/certificates/{BATCH}",
                             headers=site.headers["wrong customer"])
    assert mine.status_code == theirs.status_code == 200
    (m,), (t,) = mine.json()["certificates"], theirs.json()["certificates"]
    assert HUAYI in m["number"] and RHEINLAND in t["number"]
    assert RHEINLAND not in mine.text and HUAYI not in theirs.text
    for params in (f"?customer={HUAYI}", f"?customer={HUAYI}&version=1",
                   f"?customer={quote(HUAYI + chr(39) + ' OR 1=1 --')}"):
        answer = site.client.get(f"/api/v1/certificates/{BATCH}/pdf{params}",
                                 headers=site.headers["wrong customer"])
        assert answer.status_code in (404, 422), (params, answer.text)
        assert "application/pdf" not in answer.headers.get("content-type", "")
    pdf = site.client.get(f"/api/v1/certificates/{BATCH}/pdf",
                          headers=site.headers["wrong customer"])
    assert pdf.headers["x-certificate-number"] == t["number"]


def test_batch_enumeration_is_rate_limited(tmp_path: Path) -> None:
    """Guessing batch numbers: the first few are indistinguishable 404s, then 429, while
    other tokens keep their own allowance."""
    with site_on(("sqlite", "sqlite"), tmp_path, rate_limit=12) as site:
        headers = site.headers["wrong customer"]
        codes, bodies = [], set()
        for n in range(30):
            answer = site.client.get(f"/api/v1/certificates/B2611-{n:04d}", headers=headers)
            codes.append(answer.status_code)
            if answer.status_code == 404:
                bodies.add(answer.content)
        assert codes[:12] == [404] * 12 and set(codes[12:]) == {429}, codes
        assert len(bodies) == 1
        limited = site.client.get(f"/api/v1/certificates/{BATCH}", headers=headers)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert site.client.get(f"/api/v1/certificates/{BATCH}",
                               headers=site.headers["customer"]).status_code == 200
        # The same limit holds for the operations API.
        staff = site.headers["staff"]
        ops = [site.client.get("/api/v1/dead-letters", headers=staff).status_code
               for _ in range(14)]
        assert ops[:11] == [200] * 11 and ops[-1] == 429, ops


def _cookie(answer: httpx.Response, name: str) -> str | None:
    # Set by hand: the site's public URL is https, so its cookies are Secure and a client
    # on plain http would not send them back.
    for header in answer.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header.split(";", 1)[0]
    return None


def _login(site: Site, token: str) -> httpx.Response:
    site.client.cookies.clear()
    form = site.client.get("/ops/login")
    assert form.status_code == 200, form.text[:200]
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    login = _cookie(form, "hub_ops_login")
    assert csrf is not None and login is not None
    return site.client.post("/ops/login", headers={"Cookie": login},
                            data={"csrf": csrf.group(1), "next": "/ops/", "token": token})


def test_only_a_staff_token_opens_a_dashboard_session(sqlite_site: Site) -> None:
    site = sqlite_site
    for token, status in ((site.tokens["customer"], 403), (site.tokens["wrong customer"], 403),
                          ("A" * 43, 401), ("' OR 1=1 --", 401)):
        answer = _login(site, token)
        assert answer.status_code == status, answer.text[:300]
        assert _cookie(answer, "hub_ops_session") is None
    answer = _login(site, site.tokens["staff"])
    assert answer.status_code in (302, 303), answer.text[:300]
    session = _cookie(answer, "hub_ops_session")
    assert session is not None and site.tokens["staff"] not in session
    page = site.client.get("/ops/dead-letters?status=all", headers={"Cookie": session})
    assert page.status_code == 200 and "unknown item XYZ" in page.text
    site.client.cookies.clear()
