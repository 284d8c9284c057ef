"""What every part of the daemon shares: settings, the store, the bus, the systems' engines."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from hub.bus import Bus, open_bus
from hub.errors import DatabaseUnavailable, driver_error
from hub.settings import Settings
from hub.store.db import Store
from hub.store.engine import make_engine

__all__ = ["SYSTEMS", "Runtime", "SystemName"]

SystemName = Literal["crm", "erp", "lims"]
SYSTEMS: tuple[SystemName, ...] = ("crm", "erp", "lims")
T = TypeVar("T")


@dataclass
class Runtime:
    """Built once at start and handed to every part; nothing here is a module-level global."""

    settings: Settings
    store: Store
    bus: Bus
    #: Set by whoever commits to the outbox, so the relay publishes at once instead of polling.
    outbox_wakeup: threading.Event = field(default_factory=threading.Event)
    _engines: dict[str, Engine] = field(default_factory=dict)
    _shared: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        store = Store(settings.database, connect_timeout=settings.connect_timeout)
        return cls(settings=settings, store=store, bus=open_bus(settings, store))

    def system(self, name: SystemName) -> Engine:
        """The engine of one of the three systems, created on first use.

        Raises :class:`DatabaseUnavailable` for a configured SQLite file that does not exist.
        """
        url = self.settings.system_url(name)
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and self.settings.system_configured(name):
            # Connecting would create an empty file: a configured system is never created.
            path = Path(parsed.database or "")
            if parsed.database not in (None, "", ":memory:") and not path.exists():
                raise DatabaseUnavailable(f"{name} database file {path} does not exist")
        with self._lock:
            if name not in self._engines:
                self._engines[name] = make_engine(
                    url, connect_timeout=self.settings.connect_timeout, multirow_inserts=True
                )
            return self._engines[name]

    def shared(self, key: str, make: Callable[[], T]) -> T:
        """One ``make()`` per runtime for ``key``, for the parts that share it (such as the
        certificate renderer's worker process); closed with the runtime if it has
        ``close()``."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = make()
            made: T = self._shared[key]
            return made

    def ping_system(self, name: SystemName) -> None:
        try:
            with self.system(name).connect() as conn:
                conn.execute(text("SELECT 1"))
        except sa_exc.SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"{name} unreachable: {driver_error(exc)}") from exc

    def close(self) -> None:
        for thing in self._shared.values():
            if callable(close := getattr(thing, "close", None)):
                close()
        self.bus.close()
        for engine in self._engines.values():
            engine.dispose()
        self.store.dispose()
