"""The operations API (staff only): trace an order or batch, list and replay dead letters."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from certificates.api import Caller
from hub.errors import HubError
from hub.replay import replay
from hub.runtime import SYSTEMS, Runtime
from hub.store.deadletters import DeadLetter, DeadLetters
from hub.store.deadletters import body_to_text as _text
from hub.trace import trace

__all__ = ["add_ops_routes"]


def _staff(who: Caller) -> None:
    if not who.is_staff:
        raise HTTPException(status_code=403, detail="staff only")


def _letter(d: DeadLetter, *, body: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id, "message_id": d.message_id, "queue": d.queue, "routing_key": d.routing_key,
        "type": d.type, "correlation_key": d.correlation_key, "reason": d.reason,
        "error_code": d.error_code, "attempts": d.attempts, "dead_at": d.dead_at.isoformat(),
        "status": d.status,
    }
    if body:
        out["body"] = _text(d.body)[0]
        out["headers"] = d.headers
    return out


def add_ops_routes(app: FastAPI, runtime: Runtime) -> None:
    """``/api/v1/trace/{key}``, ``/api/v1/dead-letters`` and replay, for staff tokens."""

    def systems() -> dict[str, Engine]:
        found: dict[str, Engine] = {}
        for name in SYSTEMS:
            try:
                found[name] = runtime.system(name)
            except HubError:
                continue  # traced without it; the trace lists what it could not read
        return found

    @app.get("/api/v1/trace/{key}")
    def get_trace(key: str, who: Caller) -> JSONResponse:
        _staff(who)
        try:
            found = trace(runtime.store, key, systems=systems())
        except HubError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        return JSONResponse(found.to_json(), status_code=200 if found.found else 404)

    @app.get("/api/v1/dead-letters")
    def list_dead_letters(who: Caller, status: str = Query("dead"),
                          limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        _staff(who)
        if status not in ("dead", "replayed", "discarded", "all"):
            raise HTTPException(status_code=422, detail="status: dead, replayed, discarded, all")
        with runtime.store.begin() as conn:
            letters = DeadLetters.list(conn, status=None if status == "all" else status,
                                       limit=limit)
        return [_letter(d) for d in letters]

    @app.get("/api/v1/dead-letters/{letter_id}")
    def show_dead_letter(letter_id: int, who: Caller) -> dict[str, Any]:
        _staff(who)
        with runtime.store.begin() as conn:
            letter = DeadLetters.get(conn, letter_id)
        if letter is None:
            raise HTTPException(status_code=404)
        return _letter(letter, body=True)

    @app.post("/api/v1/dead-letters/{letter_id}/replay")
    def replay_dead_letter(letter_id: int, who: Caller) -> JSONResponse:
        _staff(who)
        outcome = replay(runtime.store, runtime.bus, [letter_id], by=f"staff:{who.subject}")[0]
        status = 200 if outcome.ok else (404 if "no such dead letter" in outcome.detail else 409)
        return JSONResponse({"id": outcome.id, "ok": outcome.ok, "detail": outcome.detail},
                            status_code=status)
