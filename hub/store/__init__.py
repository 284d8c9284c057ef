"""The hub's own store: tables, migrations and the small repositories on top of them."""

from hub.store.db import Store
from hub.store.types import UtcDateTime, utcnow

__all__ = ["Store", "UtcDateTime", "utcnow"]
