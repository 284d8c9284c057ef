"""A certificate service of its own, for a command or a worker process (``hub certificate
...``, the bulk renderer), with engines it opens and closes itself."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from certificates.service import CertificateService
from hub.errors import DatabaseUnavailable
from hub.settings import Settings
from hub.store.db import Store
from hub.store.engine import make_engine

__all__ = ["opened"]


@contextmanager
def opened(settings: Settings) -> Iterator[CertificateService]:
    """A certificate service of its own (store and system engines) for a command or a worker
    process, closed afterwards. Unconfigured systems get their embedded defaults, as
    ``hub run`` gives them; the store is migrated."""
    from hub.demo.reference import ensure_embedded

    if not all(settings.system_configured(s) for s in ("crm", "erp", "lims")):
        ensure_embedded(settings)
    store = Store(settings.database, connect_timeout=settings.connect_timeout)
    engines: dict[str, Engine] = {}
    lock = threading.Lock()

    def system(name: Literal["erp", "lims"]) -> Engine:
        with lock:
            if name not in engines:
                url = settings.system_url(name)
                parsed = make_url(url)
                if (parsed.get_backend_name() == "sqlite" and settings.system_configured(name)
                        and parsed.database not in (None, "", ":memory:")
                        and not Path(parsed.database or "").exists()):
                    raise DatabaseUnavailable(
                        f"{name} database file {parsed.database} does not exist")
                engines[name] = make_engine(url, connect_timeout=settings.connect_timeout)
            return engines[name]

    try:
        store.migrate()
        yield CertificateService(store, lims=lambda: system("lims"), erp=lambda: system("erp"),
                                 public_base=settings.public_base)
    finally:
        for engine in engines.values():
            engine.dispose()
        store.dispose()
