"""Who is calling the API (bearer tokens), and how often they may (a rate limit per token).

Both are in-process: a token found valid is remembered for ``ttl`` seconds (so a revoked
token stops working within that time), and each process of a deployment counts requests on
its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from hub.store.db import Store
from hub.tokens import ApiTokens, Principal, hash_token

__all__ = ["Authenticator", "RateLimiter", "bearer_token"]


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for anything else."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


class Authenticator:
    """Checks tokens against the store, remembering valid ones for a while."""

    def __init__(self, store: Store, *, ttl: float = 30.0, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._known: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def principal(self, token: str) -> Principal | None:
        """Who ``token`` belongs to; None when it is unknown or revoked.

        Raises DatabaseUnavailable when the store cannot be asked."""
        key = hash_token(token)
        now = self._clock()
        with self._lock:
            known = self._known.get(key)
            if known is not None and known[0] > now:
                return known[1]
        with self._store.reading("hub store: check an API token") as conn:
            found = ApiTokens.check(conn, token)
        if found is not None:
            with self._lock:
                self._known[key] = (now + self._ttl, found)
                self._known.move_to_end(key)
                while len(self._known) > self._size:
                    self._known.popitem(last=False)
        return found


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests in a burst, refilled evenly over a
    minute. ``per_minute`` 0 lets everything through."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic,
                 size: int = 100_000) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._size = size
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int | None:
        """Take one request from ``key``'s bucket: None when allowed, else the whole seconds
        to wait before the next one is."""
        if self.per_minute <= 0:
            return None
        now = self._clock()
        capacity = float(self.per_minute)
        with self._lock:
            if len(self._buckets) >= self._size and key not in self._buckets:
                self._forget_full(now, capacity)
            tokens, at = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - at) * self._rate)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if allowed:
            return None
        return max(1, math.ceil((1.0 - tokens) / self._rate))

    def _forget_full(self, now: float, capacity: float) -> None:
        """Drop the buckets that have refilled: they are the same as no bucket."""
        full = [k for k, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self._rate >= capacity]
        for key in full:
            del self._buckets[key]
