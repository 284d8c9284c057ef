"""The operations API (staff only): trace an order or batch; list, show, replay (one or
many), edit-and-replay and discard dead letters.

``POST /api/v1/dead-letters/replay``
    ``{"ids": [1, 2]}`` or a filter ``{"queue": ..., "error_code": ..., "type": ...,
    "key": ..., "limit": 100}`` (at least one criterion): each letter's outcome.
``POST /api/v1/dead-letters/{id}/discard``
    ``{"reason": "..."}``, required.
``POST /api/v1/dead-letters/{id}/edit``
    ``{"body": {...}}`` (the whole corrected message) or ``{"set": {"order.notes": "..."}}``:
    validated against the message model first, 422 with the reason otherwise (nothing
    changed); then replayed. The journal keeps who changed what; the letter its original.

Answers: 404 no such dead letter, 409 not dead any more (or not a bus message), 503 the bus
did not take it.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import Engine

from certificates.api import Caller
from hub.errors import HubError, InvalidMessage
from hub.replay import Outcome, assign, discard, edit_and_replay, edits, replay
from hub.runtime import SYSTEMS, Runtime
from hub.store.deadletters import DeadLetter, DeadLetters
from hub.store.deadletters import body_to_text as _text
from hub.trace import trace

__all__ = ["add_ops_routes"]

_STATUS = {"missing": 404, "not_dead": 409, "not_a_message": 409, "invalid": 422,
           "unchanged": 422, "bus": 503}


class ReplayMany(BaseModel):
    """Which dead letters to replay: ``ids``, or every dead one matching the filter."""

    ids: list[int] | None = Field(None, max_length=1000)
    queue: str | None = Field(None, max_length=200)
    error_code: str | None = Field(None, max_length=40)
    type: str | None = Field(None, max_length=40)
    key: str | None = Field(None, max_length=64)
    limit: int = Field(100, ge=1, le=1000)

    @model_validator(mode="after")
    def _something(self) -> ReplayMany:
        if self.ids is None and not (self.queue or self.error_code or self.type or self.key):
            raise ValueError("name the ids, or filter by queue, error_code, type or key")
        return self


class Discard(BaseModel):
    reason: str = Field(..., min_length=1, max_length=2000)


class Edit(BaseModel):
    """The corrected message (``body``), or the fields to set (``set``: path -> value)."""

    body: dict[str, Any] | str | None = None
    set: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> Edit:
        if (self.body is None) == (self.set is None):
            raise ValueError("give either body or set")
        return self


def _outcome(o: Outcome) -> dict[str, Any]:
    out: dict[str, Any] = {"id": o.id, "ok": o.ok, "detail": o.detail}
    if o.code:
        out["code"] = o.code
    if o.changes:
        out["changes"] = o.changes
    return out


def _answer(o: Outcome) -> JSONResponse:
    return JSONResponse(_outcome(o), status_code=200 if o.ok else _STATUS.get(o.code, 409))


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
            changed = edits(conn, letter) if letter is not None else []
        if letter is None:
            raise HTTPException(status_code=404)
        return {**_letter(letter, body=True), "resolved_by": letter.resolved_by,
                "note": letter.note,
                "edits": [{**e, "at": e["at"].isoformat()} for e in changed]}

    @app.post("/api/v1/dead-letters/replay")
    def replay_many(wanted: ReplayMany, who: Caller) -> dict[str, Any]:
        """Replay the dead letters named, or those matching the filter (oldest first)."""
        _staff(who)
        ids = wanted.ids
        if ids is None:
            with runtime.store.begin() as conn:
                ids = DeadLetters.matching(conn, queue=wanted.queue, error_code=wanted.error_code,
                                           type=wanted.type, key=wanted.key, limit=wanted.limit)
        outcomes = replay(runtime.store, runtime.bus, ids, by=f"staff:{who.subject}")
        return {"replayed": sum(o.ok for o in outcomes),
                "failed": sum(not o.ok for o in outcomes),
                "outcomes": [_outcome(o) for o in outcomes]}

    @app.post("/api/v1/dead-letters/{letter_id}/replay")
    def replay_dead_letter(letter_id: int, who: Caller) -> JSONResponse:
        _staff(who)
        return _answer(replay(runtime.store, runtime.bus, [letter_id],
                              by=f"staff:{who.subject}")[0])

    @app.post("/api/v1/dead-letters/{letter_id}/discard")
    def discard_dead_letter(letter_id: int, why: Discard, who: Caller) -> JSONResponse:
        _staff(who)
        return _answer(discard(runtime.store, [letter_id], by=f"staff:{who.subject}",
                               note=why.reason)[0])

    @app.post("/api/v1/dead-letters/{letter_id}/edit")
    def edit_dead_letter(letter_id: int, edit: Edit, who: Caller) -> JSONResponse:
        """Correct the message and replay it (validated first: 422 and nothing changed)."""
        _staff(who)
        if edit.set is not None:
            with runtime.store.begin() as conn:
                letter = DeadLetters.get(conn, letter_id)
            if letter is None:
                raise HTTPException(status_code=404)
            try:
                body = assign(letter.body, [f"{path}={json.dumps(value)}"
                                            for path, value in edit.set.items()])
            except InvalidMessage as exc:
                return _answer(Outcome(letter_id, False, str(exc), "invalid"))
        elif isinstance(edit.body, str):
            body = edit.body.encode("utf-8")
        else:
            body = json.dumps(edit.body, ensure_ascii=False).encode("utf-8")
        return _answer(edit_and_replay(runtime.store, runtime.bus, letter_id, body,
                                       by=f"staff:{who.subject}"))
