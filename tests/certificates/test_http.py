"""The certificate API and the verification page, over HTTP, on real databases."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select

from hub.http.app import create_app
from hub.store.tables import api_token, certificate, entitlement, journal
from hub.tokens import CUSTOMER, STAFF, ApiTokens
from tests.certificates.kit import pdftotext
from tests.certificates.world import HUAYI, RHEINLAND, STACKS, World, served, sha256, world

BASE = "/api/v1/certificates"
HOSTILE = [
    "B2611-0001' OR '1'='1",
    "' OR 1=1 --",
    "B2611-0001'; DROP TABLE certificate; --",
    "B2611-0001\" OR \"\"=\"",
    "1; SELECT pg_sleep(5)",
    "B2611-%",
    "B2611-_001",
    "{{7*7}}",
    "{% for x in range(9) %}x{% endfor %}",
    "${7*7}",
    "<script>alert(1)</script>",
    "b2611-0001",
    "B2611-0001 ",
    " B2611-0001",
    "B2611-0001\x00",
    "\x00",
    "\u202eB2611",
    "\U0001d505" "2611-0001",  # outside the Basic Multilingual Plane
    "\ud800",
    "..",
    "x" * 37,
    "B" * 5000,
    "%",
    "\\",
]


@pytest.fixture(params=STACKS)
def w(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with world(request.param, tmp_path) as made:
        yield made


@pytest.fixture
def client(w: World) -> Iterator[httpx.Client]:
    with served(create_app(w.runtime)) as http:
        yield http


def _token(w: World, kind: str, subject: str) -> dict[str, str]:
    with w.runtime.store.begin() as conn:
        _, token = ApiTokens.create(conn, kind, subject)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


def _path(batch: str) -> str:
    return f"{BASE}/{quote(batch, safe='', errors='surrogatepass')}"


def test_a_customer_gets_its_certificate_and_nobody_else_does(
    w: World, client: httpx.Client, tmp_path: Path,
) -> None:
    w.deliver(HUAYI, "B2611-0001")
    w.deliver(RHEINLAND, "B2611-0002")
    huayi, rheinland = _token(w, CUSTOMER, HUAYI), _token(w, CUSTOMER, RHEINLAND)

    listed = client.get(f"{BASE}/B2611-0001", headers=huayi)
    assert listed.status_code == 200, listed.text
    (entry,) = listed.json()["certificates"]
    assert entry["number"] == "COA-B2611-0001-C00042" and entry["version"] == 1
    assert entry["superseded_by"] is None and "customer" not in entry
    assert len(entry["sha256"]) == 64 and entry["issued_at"].endswith("Z")

    pdf = client.get(f"{BASE}/B2611-0001/pdf", headers=huayi)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert sha256(pdf.content) == entry["sha256"]
    assert pdf.headers["etag"] == f'"{entry["sha256"]}"'
    assert pdf.headers["x-certificate-version"] == "1"
    text = pdftotext(pdf.content, tmp_path)
    assert "B2611-0001" in text and "COA-B2611-0001-C00042" in text and "C00042" in text
    again = client.get(f"{BASE}/B2611-0001/pdf", headers={**huayi,
                                                          "If-None-Match": pdf.headers["etag"]})
    assert again.status_code == 304
    assert client.get(f"{BASE}/B2611-0001/pdf?version=1", headers=huayi).content == pdf.content

    # Somebody else's batch and a batch that does not exist look the same from outside.
    for url in ("/B2611-0001", "/B2611-0001/pdf", "/B2611-0001/pdf?version=1",
                f"/B2611-0001/pdf?customer={HUAYI}"):
        theirs = client.get(f"{BASE}{url}", headers=rheinland)
        missing = client.get(f"{BASE}{url.replace('B2611-0001', 'B2611-9999')}",
                             headers=rheinland)
        assert theirs.status_code == missing.status_code == 404, url
        assert theirs.content == missing.content, url
        assert theirs.headers["content-type"] == missing.headers["content-type"]
    assert client.get(f"{BASE}/B2611-0002", headers=rheinland).status_code == 200
    assert client.get(f"{BASE}/B2611-0002", headers=huayi).status_code == 404
    # A version that does not exist.
    assert client.get(f"{BASE}/B2611-0001/pdf?version=7", headers=huayi).status_code == 404

    # Chinese, rendered from the stored snapshot.
    chinese = client.get(f"{BASE}/B2611-0001/pdf?lang=zh", headers=huayi)
    assert chinese.status_code == 200
    assert "质量检验报告单" in pdftotext(chinese.content, tmp_path)
    assert client.get(f"{BASE}/B2611-0001/pdf?lang=fr", headers=huayi).status_code == 422


def test_no_token_or_a_wrong_one_is_401(w: World, client: httpx.Client) -> None:
    w.deliver(HUAYI, "B2611-0001")
    good = _token(w, CUSTOMER, HUAYI)
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic Zm9vOmJhcg=="},
                    {"Authorization": "Bearer " + "A" * 43},
                    {"Authorization": good["Authorization"] + "x"},
                    {"Authorization": good["Authorization"].replace("Bearer ", "")}):
        for url in ("/B2611-0001", "/B2611-0001/pdf"):
            answer = client.get(f"{BASE}{url}", headers=headers)
            assert answer.status_code == 401, (headers, url)
            assert answer.headers["www-authenticate"].startswith("Bearer")
    assert client.get(f"{BASE}/B2611-0001", headers=good).status_code == 200
    # A revoked token stops working (this server cached it as valid for a while).
    with w.runtime.store.begin() as conn:
        (row,) = ApiTokens.list(conn)
        assert ApiTokens.revoke(conn, row.id)
    with served(create_app(w.runtime)) as fresh:
        assert fresh.get(f"{BASE}/B2611-0001", headers=good).status_code == 401


def test_tokens_are_stored_hashed(w: World) -> None:
    with w.runtime.store.begin() as conn:
        _, token = ApiTokens.create(conn, CUSTOMER, HUAYI)
        _, staff = ApiTokens.create(conn, STAFF, "li.wang")
    with w.runtime.store.engine.connect() as conn:
        rows = [tuple(str(v) for v in row) for row in conn.execute(select(api_token))]
    assert len(token) == 43 and token != staff
    stored = " ".join(" ".join(row) for row in rows)
    assert token not in stored and staff not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored


def test_a_lot_not_authorised_is_409_with_the_reason(w: World, client: httpx.Client) -> None:
    w.deliver(HUAYI, "B2611-0011")
    huayi = _token(w, CUSTOMER, HUAYI)
    for url in ("/B2611-0011", "/B2611-0011/pdf"):
        answer = client.get(f"{BASE}{url}", headers=huayi)
        assert answer.status_code == 409, answer.text
        detail = answer.json()["detail"]
        assert detail["batch"] == "B2611-0011" and "not authorised" in detail["reason"]
    # ... and to somebody it was not delivered to, it does not exist.
    assert client.get(f"{BASE}/B2611-0011",
                      headers=_token(w, CUSTOMER, RHEINLAND)).status_code == 404
    staff = client.get(f"{BASE}/B2611-0011", headers=_token(w, STAFF, "li.wang"))
    assert staff.status_code == 409 and HUAYI in staff.json()["detail"]["reason"]


def test_a_disagreement_is_409_with_the_reason(w: World, client: httpx.Client) -> None:
    from tests.certificates.world import LATER

    w.deliver(HUAYI, "B2611-0003")
    w.flag("B2611-0003", "COLOUR", "F", LATER)
    answer = client.get(f"{BASE}/B2611-0003/pdf", headers=_token(w, CUSTOMER, HUAYI))
    assert answer.status_code == 409
    assert "Colour" in answer.json()["detail"]["reason"]
    assert answer.json()["detail"]["code"] == "certificate_blocked"


@pytest.mark.parametrize("who", ["customer", "staff"])
def test_hostile_batch_numbers_are_404_or_422_never_an_error(
    w: World, client: httpx.Client, who: str,
) -> None:
    w.deliver(HUAYI, "B2611-0001")
    headers = _token(w, CUSTOMER, HUAYI) if who == "customer" else _token(w, STAFF, "ops")
    assert client.get(f"{BASE}/B2611-0001", headers=headers).status_code == 200
    missing = client.get(f"{BASE}/B2611-9999", headers=headers)
    for batch in HOSTILE:
        for suffix in ("", "/pdf", "/pdf?version=1&lang=en"):
            answer = client.get(_path(batch) + suffix, headers=headers)
            assert answer.status_code in (404, 422), (batch, suffix, answer.text)
            if answer.status_code == 404:
                assert answer.content == missing.content, (batch, suffix)
    for params in ("version=0", "version=abc", "version=1e9", "lang=../../x",
                   "customer=" + "C" * 40, "customer=%27%20OR%201%3D1"):
        answer = client.get(f"{BASE}/B2611-0001/pdf?{params}", headers=headers)
        assert answer.status_code in (404, 422), (params, answer.text)
    with w.runtime.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(certificate)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(entitlement)).scalar_one() == 1


def test_staff_see_every_customer(w: World, client: httpx.Client) -> None:
    w.deliver(HUAYI, "B2611-0001")
    w.deliver(RHEINLAND, "B2611-0001", "800")
    staff = _token(w, STAFF, "li.wang")
    listed = client.get(f"{BASE}/B2611-0001", headers=staff)
    assert listed.status_code == 200
    body = listed.json()
    assert sorted(c["customer"] for c in body["certificates"]) == [HUAYI, RHEINLAND]
    assert body["pending"] == []
    ambiguous = client.get(f"{BASE}/B2611-0001/pdf", headers=staff)
    assert ambiguous.status_code == 400
    assert sorted(ambiguous.json()["detail"]["customers"]) == [HUAYI, RHEINLAND]
    theirs = client.get(f"{BASE}/B2611-0001/pdf?customer={RHEINLAND}", headers=staff)
    assert theirs.status_code == 200
    assert theirs.headers["x-certificate-number"] == "COA-B2611-0001-C00043"
    # A customer sees only its own certificate of the same batch.
    own = client.get(f"{BASE}/B2611-0001", headers=_token(w, CUSTOMER, RHEINLAND)).json()
    assert [c["number"] for c in own["certificates"]] == ["COA-B2611-0001-C00043"]
    assert client.get(f"{BASE}/B2611-9999", headers=staff).status_code == 404


def test_versions_and_the_verification_page(w: World, client: httpx.Client) -> None:
    w.applier().apply(w.deliver(HUAYI, "B2611-0001"), final=False)
    huayi = _token(w, CUSTOMER, HUAYI)
    watcher = w.watcher()
    watcher.poll()
    (v1,) = w.service.versions("B2611-0001")
    first_pdf = client.get(f"{BASE}/B2611-0001/pdf", headers=huayi).content

    page = client.get(f"/verify/{v1.verify_token}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for shown in ("COA-B2611-0001-C00042 v1", "B2611-0001", f"{v1.issued_at:%Y-%m-%d}",
                  v1.sha256, "Current"):
        assert shown in page.text, shown
    for hidden in ("上海华谊", "Ethyl acetate", "ETAC-99", "Purity", "SO-2026"):
        assert hidden not in page.text, hidden
    assert "default-src 'none'" in page.headers["content-security-policy"]

    w.retest("B2611-0001", "WATER", "0.031")
    assert watcher.poll() == 1
    listed = client.get(f"{BASE}/B2611-0001", headers=huayi).json()["certificates"]
    assert [(c["version"], c["superseded_by"]) for c in listed] == [(1, 2), (2, None)]
    latest = client.get(f"{BASE}/B2611-0001/pdf", headers=huayi)
    assert latest.headers["x-certificate-version"] == "2"
    assert sha256(latest.content) == listed[1]["sha256"] != listed[0]["sha256"]
    old = client.get(f"{BASE}/B2611-0001/pdf?version=1", headers=huayi)
    assert old.content == first_pdf and old.headers["x-certificate-superseded-by"] == "2"

    superseded = client.get(f"/verify/{v1.verify_token}")
    assert "Superseded by COA-B2611-0001-C00042 v2" in superseded.text
    assert "Current" not in superseded.text
    v2 = w.service.find("B2611-0001", HUAYI)
    assert v2 is not None and "Current" in client.get(f"/verify/{v2.verify_token}").text
    for token in ("nope", v1.verify_token[:-1] + ("B" if v1.verify_token.endswith("A") else "A"),
                  "COA-B2611-0001-C00042",
                  "' OR 1=1 --", "{{7*7}}", "x" * 300):
        unknown = client.get(f"/verify/{quote(token, safe='')}")
        assert unknown.status_code == 404, token
        assert v1.sha256 not in unknown.text


def test_the_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    with world(("sqlite", "sqlite"), tmp_path, rate_limit=5) as w:
        w.deliver(HUAYI, "B2611-0001")
        huayi, other = _token(w, CUSTOMER, HUAYI), _token(w, CUSTOMER, RHEINLAND)
        with served(create_app(w.runtime)) as client:
            codes = [client.get(f"{BASE}/B2611-0001", headers=huayi).status_code
                     for _ in range(5)]
            assert codes == [200] * 5
            limited = client.get(f"{BASE}/B2611-0001/pdf", headers=huayi)
            assert limited.status_code == 429
            assert int(limited.headers["retry-after"]) >= 1
            # Another token has its own allowance.
            assert client.get(f"{BASE}/B2611-0001", headers=other).status_code == 404
            pages = [client.get("/verify/unknown-token-0000").status_code for _ in range(6)]
            assert pages == [404] * 5 + [429]


def test_every_certificate_served_is_journaled_with_who_and_which(
    w: World, client: httpx.Client,
) -> None:
    w.deliver(HUAYI, "B2611-0001")
    huayi, staff = _token(w, CUSTOMER, HUAYI), _token(w, STAFF, "ops-emil")
    assert client.get(f"{BASE}/B2611-0001", headers=huayi).status_code == 200
    pdf = client.get(f"{BASE}/B2611-0001/pdf?lang=zh", headers=huayi)
    assert pdf.status_code == 200
    again = client.get(f"{BASE}/B2611-0001/pdf?lang=zh",
                       headers={**huayi, "If-None-Match": pdf.headers["etag"]})
    assert again.status_code == 304
    assert client.get(f"{BASE}/B2611-0001/pdf?customer={HUAYI}&version=1",
                      headers=staff).status_code == 200
    not_theirs = _token(w, CUSTOMER, RHEINLAND)
    assert client.get(f"{BASE}/B2611-0001/pdf", headers=not_theirs).status_code == 404
    with w.runtime.store.begin() as conn:
        rows = conn.execute(select(journal).where(journal.c.event == "downloaded")
                            .order_by(journal.c.id)).all()
    assert [(r.type, r.outcome, r.correlation_key) for r in rows] == [
        ("certificate.json", "served", "B2611-0001"),
        ("certificate.pdf", "served", "B2611-0001"),
        ("certificate.pdf", "not_modified", "B2611-0001"),
        ("certificate.pdf", "served", "B2611-0001"),
    ], "what was served, and nothing for a refusal"
    details = [json.loads(r.detail) for r in rows]
    assert [(d["by"], d["by_kind"], d.get("lang")) for d in details] == [
        (HUAYI, "customer", None), (HUAYI, "customer", "zh"), (HUAYI, "customer", "zh"),
        ("ops-emil", "staff", "en")]
    assert all(d["customer"] == HUAYI for d in details)
    assert details[1]["certificates"] == [
        {"number": "COA-B2611-0001-C00042", "version": 1, "customer": HUAYI}]
    assert "token" not in json.dumps(details), "who, never the token"
