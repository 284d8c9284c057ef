"""The hub's store: one engine, migrations on start, transactions for the rest of the hub."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy import exc as sa_exc

from hub.errors import DatabaseUnavailable, db_errors, driver_error, translate_db_error
from hub.settings import mask_url
from hub.store.engine import READ_ONLY, make_engine

__all__ = ["Store"]

_MIGRATIONS = Path(__file__).with_name("migrations")


class Store:
    """The hub's own database. Thread-safe: every call takes its own pooled connection."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.engine: Engine = make_engine(url, connect_timeout=connect_timeout, pool_size=10)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r})"

    # -- schema ----------------------------------------------------------------------------

    def _alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        return cfg

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; safe from several processes)."""
        cfg = self._alembic_config()
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Two processes starting at once must not both create the tables.
                    conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except sa_exc.SQLAlchemyError as exc:
            raise translate_db_error(exc, "migrating the hub store") from exc

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    # -- use -------------------------------------------------------------------------------

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: committed when the block ends, rolled back (and re-raised) on error.

        Driver errors leave as :class:`~hub.errors.HubError` (retryable for connection loss,
        lock waits and deadlocks).
        """
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa_exc.SQLAlchemyError as exc:
            raise translate_db_error(exc, "hub store") from exc

    @contextmanager
    def reading(self, what: str = "hub store") -> Iterator[Connection]:
        """A read-only transaction: on SQLite it takes no write lock, so a reader never makes
        the daemon's writers wait, nor waits for them. Driver errors leave as
        :class:`~hub.errors.HubError` naming ``what``."""
        with (db_errors(what), self.engine.connect() as conn,
              conn.execution_options(**{READ_ONLY: True}).begin()):
            yield conn

    def ping(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the store answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except sa_exc.SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"hub store unreachable: {driver_error(exc)}") from exc

    def dispose(self) -> None:
        self.engine.dispose()
