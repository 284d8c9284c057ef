"""The dashboard's pages behind the login: overview and its live fragments, trace, dead
letters (list, show, replay, discard)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from hub.errors import HubError
from hub.http.dashboard import charts
from hub.http.dashboard.forms import Form, FormData
from hub.http.dashboard.readings import overview
from hub.replay import discard, replay
from hub.store.deadletters import DeadLetters, body_to_text
from hub.trace import trace

if TYPE_CHECKING:
    from hub.http.dashboard.views import Dashboard

__all__ = ["add_pages"]

STATUSES = ("dead", "replayed", "discarded", "all")
#: Chart spans offered, hours.
SPANS = (1, 6, 24)
#: Seconds between refreshes of the live numbers, and of the charts.
LIVE_EVERY, CHARTS_EVERY = 3, 30


def _span(hours: int) -> int:
    return hours if hours in SPANS else 6


def _back(value: str, fallback: str) -> str:
    """Where a form returns to: a dashboard page, never another site."""
    ok = value.startswith("/ops/") and not value.startswith("//") and "\\" not in value
    return value if ok else fallback


def _ids(values: list[str]) -> list[int]:
    return sorted({int(v) for v in values if v.isdigit() and len(v) < 19})


def add_pages(app: FastAPI, ops: Dashboard) -> None:
    """Add every page that needs a staff session."""
    runtime = ops.runtime

    @app.get("/ops/", include_in_schema=False)
    def overview_page(request: Request, hours: int = 6) -> Response:
        session = ops.session(request)
        if session is None:
            return ops.login_redirect(request)
        hours = _span(hours)
        return ops.page(request, "overview.html", session=session,
                        o=overview(runtime.store, runtime.bus), hours=hours, spans=SPANS,
                        live_every=LIVE_EVERY, charts_every=CHARTS_EVERY,
                        **_charts(ops, hours))

    @app.get("/ops/live", include_in_schema=False)
    def live(request: Request) -> Response:
        session = ops.session(request)
        if session is None:
            return Response("log in again", status_code=401)
        return ops.page(request, "_live.html", session=session,
                        o=overview(runtime.store, runtime.bus))

    @app.get("/ops/charts", include_in_schema=False)
    def charts_fragment(request: Request, hours: int = 6) -> Response:
        session = ops.session(request)
        if session is None:
            return Response("log in again", status_code=401)
        hours = _span(hours)
        return ops.page(request, "_charts.html", session=session, hours=hours,
                        **_charts(ops, hours))

    @app.get("/ops/trace", include_in_schema=False)
    def trace_page(request: Request, key: str = "") -> Response:
        session = ops.session(request)
        if session is None:
            return ops.login_redirect(request)
        key = key.strip()
        if not key:
            return ops.redirect("/ops/")
        try:
            found = trace(runtime.store, key, systems=ops.systems())
        except HubError as exc:
            return ops.page(request, "trace.html", session=session, key=key, t=None,
                            error=str(exc), status=503)
        state = json.dumps(found.to_json()["state"], indent=2, ensure_ascii=False,
                           default=str)
        return ops.page(request, "trace.html", session=session, key=key, t=found,
                        state=state, status=200 if found.found else 404)

    @app.get("/ops/dead-letters", include_in_schema=False)
    def dead_letters(request: Request, status: str = "dead", limit: int = 100) -> Response:
        session = ops.session(request)
        if session is None:
            return ops.login_redirect(request)
        status = status if status in STATUSES else "dead"
        limit = max(1, min(limit, 1000))
        with runtime.store.reading("hub store: read for the dashboard") as conn:
            letters = DeadLetters.list(conn, status=None if status == "all" else status,
                                       limit=limit)
            open_count = DeadLetters.count(conn)
        return ops.page(request, "dead_letters.html", session=session, letters=letters,
                        shown=status, statuses=STATUSES, open_count=open_count)

    @app.get("/ops/dead-letters/{letter_id}", include_in_schema=False)
    def dead_letter(request: Request, letter_id: int) -> Response:
        session = ops.session(request)
        if session is None:
            return ops.login_redirect(request)
        letter = None
        if 0 < letter_id < 2**62:
            with runtime.store.reading("hub store: read for the dashboard") as conn:
                letter = DeadLetters.get(conn, letter_id)
        if letter is None:
            return ops.page(request, "dead_letter.html", session=session, letter=None,
                            letter_id=letter_id, status=404)
        body, encoding = body_to_text(letter.body)
        return ops.page(request, "dead_letter.html", session=session, letter=letter,
                        letter_id=letter_id, body=_pretty(body), encoding=encoding,
                        headers=json.dumps(letter.headers, indent=2, sort_keys=True,
                                           default=str))

    @app.post("/ops/dead-letters/replay", include_in_schema=False)
    def replay_letters(request: Request, form: FormData) -> Response:
        return _act(ops, request, form, "replay")

    @app.post("/ops/dead-letters/discard", include_in_schema=False)
    def discard_letters(request: Request, form: FormData) -> Response:
        return _act(ops, request, form, "discard")


def _act(ops: Dashboard, request: Request, form: Form, action: str) -> Response:
    """Replay or discard the dead letters a form names, then back to where it came from."""
    session = ops.session(request)
    if session is None:
        return ops.login_redirect(request)
    if not ops.post_ok(request, session, form):
        return Response("This form had expired: go back, reload the page and try again.",
                        status_code=403)
    back = _back(form.one("back"), "/ops/dead-letters")
    ids = _ids(form.get("ids", []))
    if not ids:
        return ops.redirect(back, flash="No dead letter was selected.", ok=False)
    by = f"staff:{session.subject}"
    if action == "replay":
        outcomes = replay(ops.runtime.store, ops.runtime.bus, ids, by=by)
    else:
        note = " ".join(form.one("reason").split())[:500]
        if not note:
            return ops.redirect(back, flash="Say why the dead letter is discarded.", ok=False)
        outcomes = discard(ops.runtime.store, ids, by=by, note=note)
    done = [f"#{o.id}" for o in outcomes if o.ok]
    failed = [f"#{o.id}: {o.detail}" for o in outcomes if not o.ok]
    verb = "replayed" if action == "replay" else "discarded"
    text = " ".join(filter(None, [
        f"{', '.join(done)} {verb}." if done else "",
        f"Not {verb}: {'; '.join(failed)}." if failed else "",
    ]))
    return ops.redirect(back, flash=text, ok=not failed)


def _charts(ops: Dashboard, hours: int) -> dict[str, Any]:
    try:
        found = ops.charts(hours)
    except HubError as exc:
        return {"charts_error": str(exc)}
    return {"throughput": charts.throughput_chart(found), "latency": charts.latency_chart(found),
            "applied_total": sum(p.applied for p in found.points), "step": found.step}


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body
