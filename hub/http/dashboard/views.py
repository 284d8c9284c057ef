"""The dashboard's pages under ``/ops/``: login, overview (with a live fragment), trace and
dead letters. Server-rendered with Jinja2; the one small script refreshes the live parts.

Every page but the login page needs a staff session (see :mod:`.session`); without one a page
redirects to the login page and a fragment answers 401. Forms that change something are
POSTs with a CSRF token, checked together with the request's Origin.
"""

from __future__ import annotations

import threading
import time
from importlib import resources
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import Engine

from hub.errors import HubError
from hub.http.dashboard.forms import Form, FormData
from hub.http.dashboard.readings import History, history
from hub.http.dashboard.session import (
    FLASH_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    Signer,
    session_key,
    staff_token_live,
)
from hub.runtime import SYSTEMS, Runtime
from hub.tokens import ApiTokens

__all__ = ["Dashboard", "add_dashboard_routes"]

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.0f}d"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("hub.http.dashboard", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ago"] = _ago
    env.filters["utc"] = lambda at: "" if at is None else f"{at:%Y-%m-%d %H:%M:%S}"
    env.filters["short"] = lambda text, n=120: (text if len(text or "") <= n
                                                else (text or "")[:n - 1] + "…")
    env.filters["val"] = lambda value: "—" if value is None else value
    env.filters["qs"] = lambda text: quote(str(text), safe="")
    return env


class Dashboard:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._signer: Signer | None = None
        self.env = _environment()
        self.secure = runtime.settings.public_base.startswith("https:")
        self._history: dict[int, tuple[float, History]] = {}
        self._lock = threading.Lock()
        static = resources.files("hub.http.dashboard") / "static"
        self.static = {name: (static / name).read_bytes() for name in ("ops.css", "ops.js")}

    @property
    def signer(self) -> Signer:
        """Made on first use, so building the app reads no key file."""
        with self._lock:
            if self._signer is None:
                self._signer = Signer(session_key(self.runtime.settings))
            return self._signer

    # -- plumbing --------------------------------------------------------------------------

    def page(self, request: Request, template: str, *, session: Session | None = None,
             status: int = 200, **context: Any) -> HTMLResponse:
        flash = self.signer.unsign("flash", request.cookies.get(FLASH_COOKIE))
        html = self.env.get_template(template).render(
            session=session, csrf=self.signer.csrf(session.nonce) if session else "",
            flash=flash, path=request.url.path, **context)
        response = HTMLResponse(html, status_code=status, headers=_HEADERS)
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/ops")
        return response

    def cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/ops", httponly=True,
                            samesite="strict", secure=self.secure)

    def redirect(self, to: str, *, flash: str | None = None, ok: bool = True) -> Response:
        response = RedirectResponse(to, status_code=303, headers=_HEADERS)
        if flash is not None:
            self.cookie(response, FLASH_COOKIE,
                        self.signer.sign("flash", {"text": flash, "ok": ok}), 60)
        return response

    def session(self, request: Request) -> Session | None:
        found = self.signer.session(request.cookies.get(SESSION_COOKIE))
        if found is None:
            return None
        try:
            live = staff_token_live(self.runtime.store, found.token_id)
        except HubError as exc:
            raise HTTPException(status_code=503, detail=f"the hub store cannot be read: {exc}",
                                headers=_HEADERS) from exc
        return found if live else None

    def login_redirect(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return self.redirect(f"/ops/login?next={quote(target, safe='')}")

    def post_ok(self, request: Request, session: Session | None, form: Form) -> bool:
        """A genuine form post of this session: the CSRF token, and the Origin if sent."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return False
        return session is not None and self.signer.csrf_ok(session.nonce, form.one("csrf"))

    def systems(self) -> dict[str, Engine]:
        found: dict[str, Engine] = {}
        for name in SYSTEMS:
            try:
                found[name] = self.runtime.system(name)
            except HubError:
                continue
        return found

    def charts(self, hours: int) -> History:
        """The history for ``hours``, read at most every 15 seconds per span."""
        with self._lock:
            cached = self._history.get(hours)
        if cached is not None and time.monotonic() - cached[0] < 15:
            return cached[1]
        found = history(self.runtime.store, hours=hours, buckets=36)
        with self._lock:
            self._history[hours] = (time.monotonic(), found)
        return found


def _next(value: str | None) -> str:
    """Where to go after login: a dashboard path, never another site."""
    if value and value.startswith("/ops/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ops/"


def add_dashboard_routes(app: FastAPI, runtime: Runtime) -> None:
    """Mount the operations dashboard under ``/ops/``."""
    ops = Dashboard(runtime)
    from hub.http.dashboard.pages import add_pages

    @app.get("/ops/static/{path}", include_in_schema=False)
    def static(path: str) -> Response:
        if path not in ops.static:
            return Response(status_code=404)
        kind = "text/css" if path.endswith(".css") else "text/javascript"
        return Response(ops.static[path], media_type=f"{kind}; charset=utf-8",
                        headers={"Cache-Control": "max-age=300",
                                 "X-Content-Type-Options": "nosniff"})

    @app.get("/ops", include_in_schema=False)
    def ops_root(request: Request) -> Response:
        if ops.session(request) is None:
            return ops.redirect("/ops/login")
        return ops.redirect("/ops/")

    @app.get("/ops/login", include_in_schema=False)
    def login_form(request: Request, next: str | None = None) -> Response:
        if ops.session(request) is not None:
            return ops.redirect(_next(next))
        nonce, cookie = ops.signer.new_login()
        response = ops.page(request, "login.html", login_csrf=ops.signer.csrf(nonce),
                            next=_next(next))
        ops.cookie(response, LOGIN_COOKIE, cookie, 3600)
        return response

    @app.post("/ops/login", include_in_schema=False)
    def login(request: Request, form: FormData) -> Response:
        nonce = ops.signer.login_nonce(request.cookies.get(LOGIN_COOKIE))
        origin = request.headers.get("origin")
        same = origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"

        def again(message: str, status: int) -> Response:
            fresh, cookie = ops.signer.new_login()
            response = ops.page(request, "login.html", status=status, error=message,
                                login_csrf=ops.signer.csrf(fresh), next=_next(form.one("next")))
            ops.cookie(response, LOGIN_COOKIE, cookie, 3600)
            return response

        if not same or not ops.signer.csrf_ok(nonce, form.one("csrf")):
            return again("The login form had expired. Please try again.", 400)
        token = form.one("token").strip()
        try:
            with runtime.store.reading("hub store: check a staff token") as conn:
                who = ApiTokens.check(conn, token) if token else None
        except HubError:
            return again("The hub's store does not answer just now: try again shortly.", 503)
        if who is None:
            return again("That is not a valid token: it is unknown, revoked or mistyped.", 401)
        if not who.is_staff:
            return again("That is a customer token. The operations dashboard is for staff: "
                         "create a staff token with `hub token create --staff NAME`.", 403)
        _, cookie = ops.signer.new_session(who.token_id, who.subject)
        response = ops.redirect(_next(form.one("next")))
        ops.cookie(response, SESSION_COOKIE, cookie, int(ops.signer.ttl))
        response.delete_cookie(LOGIN_COOKIE, path="/ops")
        return response

    @app.post("/ops/logout", include_in_schema=False)
    def logout(request: Request, form: FormData) -> Response:
        session = ops.session(request)
        if session is not None and not ops.post_ok(request, session, form):
            return Response("bad request", status_code=400, headers=_HEADERS)
        response = ops.redirect("/ops/login", flash="Logged out.")
        response.delete_cookie(SESSION_COOKIE, path="/ops")
        return response

    add_pages(app, ops)

