"""The certificate API and the public verification page.

``GET /api/v1/certificates/{batch}``
    The batch's certificate versions as JSON: a customer sees its own certificate's
    versions, staff see every customer's (and, in ``pending``, the customers whose
    certificate cannot be issued yet, with why).
``GET /api/v1/certificates/{batch}/pdf?version=N&lang=en|zh[&customer=CODE]``
    The PDF, the latest version unless one is named. Staff name the customer when several
    got the batch.
``GET /verify/{token}``
    Public: the certificate's number and version, batch, issue date, SHA-256 of its primary
    PDF and whether it has been superseded. Nothing else.

Every certificate served (the JSON list and each PDF) is recorded in the hub's journal under
the batch number: event ``downloaded``, who (the token's subject and kind), which customer's
certificate, number, version and language, so ``hub trace`` shows it for the batch and for
the orders the batch was delivered on.

Answers: no or an unknown bearer token 401; a batch that does not exist, is not the
caller's, or is not a batch number at all 404, always with the same body; a certificate the
caller may have but that cannot be issued yet (lot not authorised, the hub's verdict
disagrees with the LIMS) 409 with the reason; more than ``HUB_RATE_LIMIT`` requests a minute
on one token 429 with ``Retry-After``; an unreachable database 503.

A stored PDF is served without rendering, from a small in-process LRU cache of recently served
files (by certificate id and language, which never change) or the store. The first request
of a certificate that was never issued issues it (a render, ~0.2 s); so does the first
request of a language other than English (rendered from the stored snapshot, then stored).
"""

from __future__ import annotations

import html
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from certificates.entitlements import plausible_batch
from certificates.labels import Language
from certificates.service import (
    PRIMARY_LANGUAGE,
    CertificateInfo,
    CertificateService,
    NotAvailable,
)
from hub.errors import HubError, RetryableError
from hub.http.auth import Authenticator, RateLimiter, bearer_token
from hub.journal import Entry, record
from hub.store.db import Store
from hub.tokens import Principal

__all__ = ["NOT_FOUND", "PdfCache", "add_certificate_routes"]

log = logging.getLogger(__name__)

#: The one body of every 404, FastAPI's own: a missing batch and somebody else's batch (and
#: an unknown route) cannot be told apart.
NOT_FOUND = "Not Found"
_VERIFY_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Cache-Control": "no-store",
}


class PdfCache:
    """Recently served PDFs by (certificate id, language), up to ``max_bytes`` in all.

    A stored certificate file never changes, so an entry is never stale."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[int, str]) -> bytes | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[int, str], pdf: bytes) -> None:
        if len(pdf) > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = pdf
            self._bytes += len(pdf)
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped)


def _journal_download(store: Store, who: Principal, batch: str, infos: list[CertificateInfo],
                      *, what: str, lang: str | None = None, outcome: str = "served") -> None:
    """Record that ``who`` was served ``infos`` of ``batch`` (``what``: ``pdf`` or ``json``).
    A journal that cannot be written does not fail the download: it is only a record."""
    customers = sorted({i.customer for i in infos})
    detail: dict[str, Any] = {
        "by": who.subject, "by_kind": who.kind, "format": what,
        "certificates": [{"number": i.number, "version": i.version, "customer": i.customer}
                         for i in infos[:50]],
    }
    if len(customers) == 1:
        detail["customer"] = customers[0]
    else:
        detail["customers"] = customers
    if lang is not None:
        detail["lang"] = lang
    try:
        with store.begin() as conn:
            record(conn, [Entry(event="downloaded", type=f"certificate.{what}",
                                correlation_key=batch, source="hub", target="http",
                                outcome=outcome, detail=detail)])
    except HubError as exc:
        log.warning("certificate download of %s not journaled: %s", batch, exc)


def _not_found() -> NoReturn:
    raise HTTPException(status_code=404, detail=NOT_FOUND)


def _not_available(exc: NotAvailable) -> NoReturn:
    raise HTTPException(status_code=409, detail={
        "batch": exc.batch, "reason": exc.reason, "code": exc.code})


@contextmanager
def _answers() -> Iterator[None]:
    """The hub's errors as HTTP answers."""
    try:
        yield
    except LookupError:
        _not_found()
    except NotAvailable as exc:
        _not_available(exc)
    except RetryableError as exc:
        log.warning("certificate request: %s", exc)
        raise HTTPException(status_code=503, detail="temporarily unavailable, try again",
                            headers={"Retry-After": "5"}) from exc
    except HubError as exc:
        log.error("certificate request failed: %s", exc)
        raise HTTPException(status_code=500,
                            detail="the certificate could not be produced") from exc


def _describe(info: CertificateInfo, *, staff: bool) -> dict[str, Any]:
    described: dict[str, Any] = {
        "number": info.number,
        "version": info.version,
        "label": info.label,
        "issued_at": info.issued_at.isoformat(timespec="seconds") + "Z",
        "sha256": info.sha256,
        "superseded_by": info.superseded_by,
        "pdf": f"/api/v1/certificates/{quote(info.batch_number, safe='')}/pdf"
               f"?version={info.version}"
               + (f"&customer={quote(info.customer, safe='')}" if staff else ""),
    }
    if staff:
        described["customer"] = info.customer
    return described


@dataclass(frozen=True)
class _Access:
    authenticator: Authenticator
    limiter: RateLimiter


def caller(request: Request) -> Principal:
    """The principal of the request's bearer token: 401 without a valid one, 429 when its
    rate limit is spent."""
    access: _Access = request.app.state.certificate_access
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise HTTPException(status_code=401, detail="a bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})
    with _answers():
        principal = access.authenticator.principal(token)
    if principal is None:
        raise HTTPException(status_code=401, detail="unknown or revoked token",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    wait = access.limiter.retry_after(principal.token_hash)
    if wait is not None:
        raise HTTPException(status_code=429, detail="too many requests",
                            headers={"Retry-After": str(wait)})
    return principal


Caller = Annotated[Principal, Depends(caller)]


def add_certificate_routes(app: FastAPI, service: CertificateService, *, rate_limit: int,
                           cache: PdfCache | None = None) -> None:
    """Add the certificate API and the verification page to ``app``."""
    limiter = RateLimiter(rate_limit)
    app.state.certificate_access = _Access(Authenticator(service.store), limiter)
    pdfs = cache if cache is not None else PdfCache()

    @app.get("/api/v1/certificates/{batch}")
    def list_certificates(batch: str, who: Caller) -> JSONResponse:
        """The batch's certificate versions (a customer's own; staff: every customer's)."""
        with _answers():
            if not who.is_staff:
                infos = service.versions(batch, who.subject)
                if not infos:
                    service.ensure(batch, who.subject)
                    infos = service.versions(batch, who.subject)
                _journal_download(service.store, who, batch, infos, what="json")
                return JSONResponse({"batch": batch, "certificates": [
                    _describe(info, staff=False) for info in infos]})
            infos = service.versions(batch)
            have = {info.customer for info in infos}
            pending: list[dict[str, str]] = []
            issued = False
            for customer in service.customers(batch, ask_erp=not infos):
                if customer in have:
                    continue
                try:
                    issued |= service.ensure(batch, customer).issued
                except NotAvailable as exc:
                    pending.append({"customer": customer, "reason": exc.reason})
            if issued:
                infos = service.versions(batch)
        if not infos and not pending:
            _not_found()
        if not infos:
            raise HTTPException(status_code=409, detail={
                "batch": batch, "reason": "; ".join(
                    f"{p['customer']}: {p['reason']}" for p in pending),
                "pending": pending})
        _journal_download(service.store, who, batch, infos, what="json")
        return JSONResponse({"batch": batch, "pending": pending, "certificates": [
            _describe(info, staff=True) for info in infos]})

    @app.get("/api/v1/certificates/{batch}/pdf")
    def certificate_pdf(
        batch: str, request: Request, who: Caller,
        version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
        lang: Annotated[Language, Query()] = PRIMARY_LANGUAGE,
        customer: Annotated[str | None, Query(min_length=1, max_length=15)] = None,
    ) -> Response:
        """The certificate as PDF: version ``version``, or the latest."""
        with _answers():
            if customer is not None and not plausible_batch(customer):
                _not_found()  # the same plausibility rules as batch numbers
            if who.is_staff:
                customer = customer or _only_customer(service, batch)
            elif customer is not None and customer != who.subject:
                _not_found()
            else:
                customer = who.subject
            info = service.find(batch, customer, version)
            if info is None:
                if version is not None and service.find(batch, customer) is not None:
                    _not_found()
                info = service.ensure(batch, customer).certificate
                if version is not None and info.version != version:
                    _not_found()
            key = (info.id, lang)
            pdf = pdfs.get(key)
            if pdf is None:
                pdf = service.pdf(info, lang)
                pdfs.put(key, pdf)
        etag = f'"{info.sha256}"' if lang == PRIMARY_LANGUAGE else f'"{info.id}-{lang}"'
        headers = {
            "ETag": etag,
            "Cache-Control": ("private, max-age=31536000, immutable" if version is not None
                              else "private, no-cache"),
            "Content-Disposition": f'inline; filename="{_filename(info, lang)}"',
            "X-Certificate-Number": quote(info.number, safe="-._"),
            "X-Certificate-Version": str(info.version),
        }
        if info.superseded_by is not None:
            headers["X-Certificate-Superseded-By"] = str(info.superseded_by)
        if request.headers.get("if-none-match") == etag:
            _journal_download(service.store, who, batch, [info], what="pdf", lang=lang,
                              outcome="not_modified")
            return Response(status_code=304, headers=headers)
        _journal_download(service.store, who, batch, [info], what="pdf", lang=lang)
        return Response(content=pdf, media_type="application/pdf", headers=headers)

    @app.get("/verify/{token}", response_class=HTMLResponse)
    def verify(token: str, request: Request) -> HTMLResponse:
        """Public: is this certificate genuine, and is it still the current version?"""
        client = request.client.host if request.client else "unknown"
        wait = limiter.retry_after(f"verify:{client}")
        if wait is not None:
            return HTMLResponse(_page("Too many requests", "<p>Please try again shortly.</p>"),
                                status_code=429,
                                headers={**_PAGE_HEADERS, "Retry-After": str(wait)})
        info = None
        try:
            if _VERIFY_TOKEN.fullmatch(token):
                info = service.by_verify_token(token)
            successor = service.successor(info) if info is not None else None
        except HubError as exc:
            log.warning("verification page: %s", exc)
            return HTMLResponse(_page("Temporarily unavailable", "<p>Please try again.</p>"),
                                status_code=503, headers={**_PAGE_HEADERS, "Retry-After": "5"})
        if info is None:
            return HTMLResponse(_page("Unknown certificate", "<p>No certificate of analysis "
                                      "has this verification link.</p>"),
                                status_code=404, headers=_PAGE_HEADERS)
        return HTMLResponse(_verification(info, successor), headers=_PAGE_HEADERS)


def _only_customer(service: CertificateService, batch: str) -> str:
    """The one customer that got ``batch`` (for staff who did not name one)."""
    customers = service.customers(batch)
    if not customers:
        raise LookupError(batch)
    if len(customers) > 1:
        raise HTTPException(status_code=400, detail={
            "reason": "several customers got this batch: name one with ?customer=CODE",
            "customers": customers})
    return customers[0]


def _filename(info: CertificateInfo, lang: str) -> str:
    name = _FILENAME_UNSAFE.sub("_", f"{info.number}-v{info.version}-{lang}")
    return f"{name}.pdf"


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;"
        "color:#1b1b1b}dt{font-weight:600;margin-top:.8rem}dd{margin:0;word-break:break-all}"
        ".current{color:#0a6b2d}.superseded{color:#a4260b}"
        f"</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def _verification(info: CertificateInfo, successor: CertificateInfo | None) -> str:
    e = html.escape
    if info.superseded_by is None:
        status = ('<p class="current" id="status">Current: this is the latest version of '
                  "this certificate.</p>")
    else:
        by = successor.label if successor is not None else f"version {info.superseded_by}"
        when = (f" on {info.superseded_at:%Y-%m-%d}" if info.superseded_at is not None else "")
        status = (f'<p class="superseded" id="status">Superseded by {e(by)}{e(when)}: ask '
                  "your supplier for the current version.</p>")
    body = (
        "<p>This certificate of analysis was issued by us.</p>"
        "<dl>"
        f"<dt>Certificate</dt><dd id=\"number\">{e(info.label)}</dd>"
        f"<dt>Batch</dt><dd id=\"batch\">{e(info.batch_number)}</dd>"
        f"<dt>Issued</dt><dd id=\"issued\">{info.issued_at:%Y-%m-%d}</dd>"
        f"<dt>SHA-256 of the PDF</dt><dd id=\"sha256\"><code>{e(info.sha256)}</code></dd>"
        "</dl>" + status
    )
    return _page("Certificate of analysis: verified", body)
