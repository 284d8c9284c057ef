"""Staff sessions of the operations dashboard: signed cookies and CSRF tokens.

A member of staff logs in once with their staff API token; the dashboard answers with a
session cookie (HttpOnly, SameSite=Strict, path ``/ops``) that holds the token's id, a random
nonce and an expiry, signed with HMAC-SHA256 (itsdangerous, a key derived per purpose). The
token itself is never put in a cookie. Every request re-checks that the token is still a live
staff token, so revoking it (``hub token revoke``) ends its sessions at once.

Forms that change something carry a CSRF token derived from the session's nonce; the login
form's comes from a short-lived pre-login cookie (double submit), so a foreign page cannot
log a browser in under somebody else's token either.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadData, URLSafeSerializer
from itsdangerous import Signer as ItsSigner
from sqlalchemy import select

from hub.settings import Settings
from hub.store.db import Store
from hub.store.tables import api_token
from hub.tokens import STAFF

__all__ = ["LOGIN_COOKIE", "SESSION_COOKIE", "Session", "Signer", "session_key"]

SESSION_COOKIE = "hub_ops_session"
LOGIN_COOKIE = "hub_ops_login"
FLASH_COOKIE = "hub_ops_flash"


@dataclass(frozen=True)
class Session:
    """A logged-in member of staff."""

    token_id: int
    subject: str
    nonce: str
    expires: int


class Signer:
    """Signs and checks cookie values and CSRF tokens with one key."""

    def __init__(self, key: bytes, *, ttl: float = 12 * 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"hub-ops-dashboard:" + key).digest()
        self.ttl = ttl
        self._clock = clock

    def _serializer(self, purpose: str) -> URLSafeSerializer:
        return URLSafeSerializer(self._key, salt=purpose,
                                 signer_kwargs={"digest_method": hashlib.sha256})

    def sign(self, purpose: str, data: dict[str, object]) -> str:
        """``data`` as a cookie value only this key can have made for ``purpose``."""
        return str(self._serializer(purpose).dumps(data))

    def unsign(self, purpose: str, value: str | None) -> dict[str, object] | None:
        """The data of a value :meth:`sign` made for ``purpose``; None for anything else."""
        if not value or len(value) > 4096:
            return None
        try:
            data = self._serializer(purpose).loads(value)
        except BadData:
            return None
        return data if isinstance(data, dict) else None

    # -- sessions --------------------------------------------------------------------------

    def new_session(self, token_id: int, subject: str) -> tuple[Session, str]:
        """A session for staff token ``token_id``, and its cookie value."""
        session = Session(token_id, subject, secrets.token_urlsafe(16),
                          int(self._clock() + self.ttl))
        return session, self.sign("session", {"t": token_id, "s": subject, "n": session.nonce,
                                              "e": session.expires})

    def session(self, value: str | None) -> Session | None:
        """The session a cookie value holds, if it is genuine and not expired."""
        data = self.unsign("session", value)
        if data is None:
            return None
        token_id, subject, nonce, expires = (data.get("t"), data.get("s"), data.get("n"),
                                             data.get("e"))
        if not (isinstance(token_id, int) and isinstance(subject, str)
                and isinstance(nonce, str) and isinstance(expires, int)):
            return None
        if expires < self._clock():
            return None
        return Session(token_id, subject, nonce, expires)

    def csrf(self, nonce: str) -> str:
        """The CSRF token of forms under a session (or pre-login) nonce."""
        signer = ItsSigner(self._key, salt="csrf", digest_method=hashlib.sha256)
        return signer.get_signature(nonce).decode("ascii")

    def csrf_ok(self, nonce: str | None, value: str | None) -> bool:
        return bool(nonce and value) and hmac.compare_digest(self.csrf(nonce or ""), value or "")

    # -- login -----------------------------------------------------------------------------

    def login_nonce(self, value: str | None) -> str | None:
        """The nonce of a pre-login cookie (made by :meth:`new_login`) still within 1 hour."""
        data = self.unsign("login", value)
        if data is None:
            return None
        nonce, at = data.get("n"), data.get("at")
        if not isinstance(nonce, str) or not isinstance(at, int | float):
            return None
        return nonce if 0 <= self._clock() - at < 3600 else None

    def new_login(self) -> tuple[str, str]:
        """A pre-login nonce and its cookie value."""
        nonce = secrets.token_urlsafe(16)
        return nonce, self.sign("login", {"n": nonce, "at": int(self._clock())})


def staff_token_live(store: Store, token_id: int) -> bool:
    """True while token ``token_id`` is a staff token that has not been revoked.

    Raises HubError when the store cannot be read."""
    with store.reading("hub store: check a dashboard session") as conn:
        row = conn.execute(select(api_token.c.kind).where(
            api_token.c.id == token_id, api_token.c.revoked_at.is_(None))).first()
    return row is not None and row.kind == STAFF


def session_key(settings: Settings) -> bytes:
    """The key that signs sessions: ``HUB_SESSION_SECRET``, else a random key kept in
    ``{var_dir}/ops-session.key``, created (owner-only) on first use, so ``make run`` needs
    no configuration and sessions outlive a restart. Raises OSError when the file cannot be
    read or written."""
    if settings.session_secret is not None:
        configured = settings.session_secret.get_secret_value().strip()
        if configured:
            return configured.encode("utf-8")
    path = settings.var_dir / "ops-session.key"
    for _ in range(50):
        try:
            found = path.read_bytes().strip()
        except FileNotFoundError:
            found = _new_key(path)
        if found:
            return found
        time.sleep(0.01)  # another process created the file and is writing its key
    raise OSError(f"{path} is empty: delete it, or set HUB_SESSION_SECRET")


def _new_key(path: Path) -> bytes:
    """Write a random key to ``path``, readable by its owner only; b"" when another process
    created the file first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return b""
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key
