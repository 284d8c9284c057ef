"""API tokens: who calls the HTTP API, a customer or a member of staff.

A token is 32 random bytes, URL-safe base64 (43 characters), shown once when it is created
(``hub token create``). The store keeps only its SHA-256, so a copy of the database (or a
backup) gives nobody a usable token; a token is never logged. Tokens are looked up by that
hash, and revoked tokens stay in the table (with ``revoked_at``) so ``token list`` shows them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, insert, select, update

from hub.store.tables import api_token
from hub.store.types import utcnow

__all__ = ["CUSTOMER", "STAFF", "ApiTokens", "Principal", "TokenInfo", "hash_token"]

CUSTOMER: Literal["customer"] = "customer"
STAFF: Literal["staff"] = "staff"
Kind = Literal["customer", "staff"]

#: What a token looks like: the 43 characters of 32 bytes in URL-safe base64.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_SUBJECT_LENGTH = {CUSTOMER: 15, STAFF: 80}


def hash_token(token: str) -> str:
    """The SHA-256 (hex) the store keeps of ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a customer (by its customer code) or staff (by name)."""

    kind: Kind
    subject: str
    token_id: int
    #: The token's hash: the key of its rate limit (never the token itself).
    token_hash: str

    @property
    def is_staff(self) -> bool:
        return self.kind == STAFF


@dataclass(frozen=True)
class TokenInfo:
    id: int
    kind: str
    subject: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class ApiTokens:
    """Create, check, list and revoke tokens; every method runs in the caller's transaction."""

    @staticmethod
    def create(conn: Connection, kind: Kind, subject: str) -> tuple[int, str]:
        """A new token for ``subject`` (a customer code, or a staff member's name); returns
        (its id, the token). The token itself is not stored: show it once, then forget it."""
        subject = subject.strip()
        limit = _SUBJECT_LENGTH[kind]
        if not subject or len(subject) > limit or not subject.isprintable():
            raise ValueError(f"a {kind} must be named by 1 to {limit} printable characters")
        token = secrets.token_urlsafe(32)
        result = conn.execute(insert(api_token).values(
            token_hash=hash_token(token), kind=kind, subject=subject, created_at=utcnow()))
        (token_id,) = result.inserted_primary_key or (None,)
        return int(token_id or 0), token

    @staticmethod
    def check(conn: Connection, token: str) -> Principal | None:
        """Who ``token`` belongs to; None for an unknown, malformed or revoked token."""
        if not _TOKEN.fullmatch(token):
            return None
        digest = hash_token(token)
        row = conn.execute(
            select(api_token.c.id, api_token.c.kind, api_token.c.subject)
            .where(api_token.c.token_hash == digest, api_token.c.revoked_at.is_(None))
        ).first()
        if row is None or row.kind not in (CUSTOMER, STAFF):
            return None
        kind: Kind = CUSTOMER if row.kind == CUSTOMER else STAFF
        return Principal(kind=kind, subject=row.subject, token_id=int(row.id),
                         token_hash=digest)

    @staticmethod
    def list(conn: Connection) -> list[TokenInfo]:
        rows = conn.execute(select(api_token.c.id, api_token.c.kind, api_token.c.subject,
                                   api_token.c.created_at, api_token.c.revoked_at)
                            .order_by(api_token.c.id))
        return [TokenInfo(int(r.id), r.kind, r.subject, r.created_at, r.revoked_at)
                for r in rows]

    @staticmethod
    def revoke(conn: Connection, token_id: int) -> bool:
        """Revoke token ``token_id``; False when there is no such live token."""
        result = conn.execute(update(api_token).where(
            api_token.c.id == token_id, api_token.c.revoked_at.is_(None),
        ).values(revoked_at=utcnow()))
        return bool(result.rowcount)
