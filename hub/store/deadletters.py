"""Dead letters in the hub's store: messages that could not be applied, with the reason."""

from __future__ import annotations

import base64
import builtins
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update

from hub.headers import H_BODY_ENCODING
from hub.store.tables import dead_letter
from hub.store.types import utcnow

__all__ = ["DeadLetter", "DeadLetters", "NewDeadLetter", "body_from_text", "body_to_text"]

#: The largest id a BIGINT column holds.
_MAX_ID = 2**63 - 1

def body_to_text(body: bytes) -> tuple[str, str | None]:
    """A body as text for a TEXT column; bytes that are not UTF-8 are kept as base64."""
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"


def body_from_text(text: str, encoding: str | None) -> bytes:
    return base64.b64decode(text) if encoding == "base64" else text.encode("utf-8")


@dataclass(frozen=True)
class NewDeadLetter:
    """A message on its way into dead letters."""

    message_id: str
    queue: str
    routing_key: str
    body: bytes
    headers: Mapping[str, Any]
    reason: str
    error_code: str
    attempts: int
    type: str | None = None
    correlation_key: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A stored dead letter, as list / show / replay see it."""

    id: int
    message_id: str
    queue: str
    routing_key: str
    type: str | None
    correlation_key: str | None
    body: bytes
    headers: dict[str, Any]
    reason: str
    error_code: str
    attempts: int
    dead_at: dt.datetime
    status: str
    resolved_at: dt.datetime | None
    resolved_by: str | None
    note: str | None


class DeadLetters:
    """Insert, list and resolve dead letters; every method runs in the caller's transaction."""

    @staticmethod
    def add(conn: Connection, letters: Sequence[NewDeadLetter]) -> int:
        """Store ``letters``; a message already dead in the same queue is not stored twice."""
        added = 0
        for letter in letters:
            message_id = letter.message_id[:36]  # a foreign message's id may be longer
            exists = conn.execute(
                select(dead_letter.c.id).where(
                    dead_letter.c.queue == letter.queue,
                    dead_letter.c.message_id == message_id,
                    dead_letter.c.status == "dead",
                )
            ).first()
            if exists:
                continue
            text, encoding = body_to_text(letter.body)
            headers = {k: v for k, v in letter.headers.items() if k != H_BODY_ENCODING}
            if encoding:
                headers[H_BODY_ENCODING] = encoding
            conn.execute(
                dead_letter.insert().values(
                    message_id=message_id,
                    queue=letter.queue,
                    routing_key=letter.routing_key,
                    type=(letter.type or None) and letter.type[:40],
                    correlation_key=(letter.correlation_key or None)
                    and letter.correlation_key[:64],
                    body=text,
                    headers=json.dumps(headers, sort_keys=True, default=str),
                    reason=letter.reason,
                    error_code=letter.error_code[:40],
                    attempts=letter.attempts,
                    dead_at=utcnow(),
                    status="dead",
                )
            )
            added += 1
        return added

    @staticmethod
    def list(
        conn: Connection, *, status: str | None = "dead", limit: int = 100, offset: int = 0
    ) -> list[DeadLetter]:
        query = select(dead_letter).order_by(dead_letter.c.id.desc()).limit(limit).offset(offset)
        if status:
            query = query.where(dead_letter.c.status == status)
        return [_row(r) for r in conn.execute(query).mappings()]

    @staticmethod
    def matching(
        conn: Connection, *, queue: str | None = None, error_code: str | None = None,
        type: str | None = None, key: str | None = None, limit: int = 100,
    ) -> builtins.list[int]:
        """Ids of the dead letters still dead that match every criterion given, oldest
        first (so a bulk replay keeps each key's order)."""
        query = select(dead_letter.c.id).where(dead_letter.c.status == "dead")
        for column, wanted in ((dead_letter.c.queue, queue),
                               (dead_letter.c.error_code, error_code),
                               (dead_letter.c.type, type),
                               (dead_letter.c.correlation_key, key)):
            if wanted is not None:
                query = query.where(column == wanted)
        return [int(r.id) for r in conn.execute(query.order_by(dead_letter.c.id).limit(limit))]

    @staticmethod
    def count(conn: Connection, *, status: str = "dead") -> int:
        return int(
            conn.execute(
                select(func.count()).select_from(dead_letter).where(dead_letter.c.status == status)
            ).scalar_one()
        )

    @staticmethod
    def get(conn: Connection, letter_id: int) -> DeadLetter | None:
        """The dead letter ``letter_id``; None when there is none (or it cannot be an id)."""
        if not _plausible_id(letter_id):
            return None
        row = conn.execute(select(dead_letter).where(dead_letter.c.id == letter_id)).mappings()
        found = row.first()
        return _row(found) if found else None

    @staticmethod
    def resolve(
        conn: Connection, letter_id: int, *, status: str, by: str, note: str | None = None
    ) -> bool:
        """Mark a dead letter replayed or discarded; False if it was not dead any more."""
        if not _plausible_id(letter_id):
            return False
        result = conn.execute(
            update(dead_letter)
            .where(dead_letter.c.id == letter_id, dead_letter.c.status == "dead")
            .values(status=status, resolved_at=utcnow(), resolved_by=by, note=note)
        )
        return bool(result.rowcount)


def _plausible_id(letter_id: int) -> bool:
    # Ids are BIGINT: a larger number would be a driver error (SQLite: OverflowError, which
    # is not even a database error), not "no such dead letter".
    return 0 < letter_id <= _MAX_ID


def _row(row: Any) -> DeadLetter:
    headers: dict[str, Any] = json.loads(row["headers"] or "{}")
    return DeadLetter(
        id=int(row["id"]),
        message_id=row["message_id"],
        queue=row["queue"],
        routing_key=row["routing_key"],
        type=row["type"],
        correlation_key=row["correlation_key"],
        body=body_from_text(row["body"], headers.get(H_BODY_ENCODING)),
        headers=headers,
        reason=row["reason"],
        error_code=row["error_code"],
        attempts=int(row["attempts"]),
        dead_at=row["dead_at"],
        status=row["status"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        note=row["note"],
    )
