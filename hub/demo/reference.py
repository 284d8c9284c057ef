"""Create and seed the three reference systems: what ``python -m hub demo init`` does.

Each system (CRM, ERP, LIMS) is a database of its own, named by a SQLAlchemy URL. Creating
is idempotent (the database itself is created first on PostgreSQL and MariaDB when missing);
seeding is idempotent too: a row whose key is already there is left alone, so a second seed
adds nothing and never overwrites what the hub or a user changed since.

:func:`ensure_embedded` is the daemon's zero-config start: systems the user did not configure
get a seeded SQLite file under ``var_dir``, built aside and moved into place only when
complete, so a crash half-way never leaves a half-seeded file behind.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy import Connection, Engine, MetaData, Table, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from connectors.crm import schema as crm
from connectors.erp import schema as erp
from connectors.lims import schema as lims
from hub.demo import seed_rows
from hub.errors import translate_db_error
from hub.settings import Settings
from hub.store.engine import make_engine
from hub.store.types import utcnow

__all__ = [
    "SYSTEMS",
    "SeedSummary",
    "System",
    "create_schemas",
    "ensure_database",
    "ensure_embedded",
    "init",
    "metadata_for",
    "seed",
]

System = Literal["crm", "erp", "lims"]
SYSTEMS: tuple[System, ...] = get_args(System)

_METADATA: Mapping[str, MetaData] = {"crm": crm.metadata, "erp": erp.metadata,
                                     "lims": lims.metadata}
_ROWS: Mapping[str, Callable[[dt.datetime], list[seed_rows.TableRows]]] = {
    "crm": seed_rows.crm_rows, "erp": seed_rows.erp_rows, "lims": seed_rows.lims_rows,
}


@dataclass(frozen=True)
class SeedSummary:
    """How many rows one :func:`seed` call added, per kind (0 everywhere when all was there)."""

    accounts: int = 0
    customers: int = 0
    items: int = 0
    products: int = 0
    analyses: int = 0
    specs: int = 0
    lots: int = 0
    samples: int = 0
    tests: int = 0
    results: int = 0

    @property
    def total(self) -> int:
        return sum(vars(self).values())


_SUMMARY_FIELD = {
    "crm_account": "accounts", "OCRD": "customers", "OITM": "items", "PRODUCT": "products",
    "ANALYSIS": "analyses", "PRODUCT_SPEC": "specs", "LOT": "lots", "SAMPLE": "samples",
    "TEST": "tests", "RESULT": "results",
}


def metadata_for(system: str) -> MetaData:
    """The tables of one reference system. Raises ValueError for an unknown system."""
    try:
        return _METADATA[system]
    except KeyError:
        raise ValueError(f"unknown system {system!r}; expected one of {SYSTEMS}") from None


def ensure_database(url: str, *, connect_timeout: float = 5.0) -> bool:
    """Create the database ``url`` names when the server lacks it; True when it was created.

    PostgreSQL is reached through its ``postgres`` database, MariaDB/MySQL without one;
    MariaDB databases get utf8mb4. SQLite needs nothing (the file appears on first connect),
    nor does any other backend, whose database is assumed to exist.
    Raises DatabaseUnavailable when the server cannot be reached, PermanentError otherwise.
    """
    target = make_url(url)
    backend = target.get_backend_name()
    name = target.database
    if backend not in ("postgresql", "mysql", "mariadb") or not name:
        return False
    engine = make_engine(_server_url(target).render_as_string(hide_password=False),
                         connect_timeout=connect_timeout, pool_size=1)
    if backend == "postgresql":
        exists = text("SELECT 1 FROM pg_database WHERE datname = :name")
        create = "CREATE DATABASE {} ENCODING 'UTF8'"
    else:
        exists = text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name")
        create = "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            if conn.execute(exists, {"name": name}).first() is not None:
                return False
            quoted = conn.dialect.identifier_preparer.quote_identifier(name)
            try:
                conn.exec_driver_sql(create.format(quoted))
            except SQLAlchemyError:
                # Another process may have created it between our look and our create.
                if conn.execute(exists, {"name": name}).first() is None:
                    raise
                return False
            return True
    except SQLAlchemyError as exc:
        raise translate_db_error(exc, f"create database {name}") from exc
    finally:
        engine.dispose()


def create_schemas(url_by_system: Mapping[str, str], *, connect_timeout: float = 5.0) -> None:
    """Create every missing table (and database) of the systems named; existing ones stay.

    Raises ValueError for an unknown system, DatabaseUnavailable when a server cannot be
    reached, PermanentError for any other database failure.
    """
    for system, url in url_by_system.items():
        metadata = metadata_for(system)
        ensure_database(url, connect_timeout=connect_timeout)
        with _engine(url, connect_timeout) as engine:
            try:
                metadata.create_all(engine, checkfirst=True)
            except SQLAlchemyError as exc:
                raise translate_db_error(exc, f"create {system} schema") from exc


def seed(url_by_system: Mapping[str, str], *, now: dt.datetime | None = None,
         connect_timeout: float = 5.0) -> SeedSummary:
    """Add the demo rows missing from the systems named (one transaction per system).

    ``now`` (naive UTC, default the current time) anchors every seeded timestamp. The
    schemas must exist (see :func:`create_schemas`).
    Raises ValueError for an unknown system, DatabaseUnavailable when a server cannot be
    reached, PermanentError for any other database failure.
    """
    moment = now if now is not None else utcnow()
    counts: dict[str, int] = {}
    for system, url in url_by_system.items():
        metadata_for(system)
        with _engine(url, connect_timeout) as engine:
            try:
                with engine.begin() as conn:
                    for table, rows in _ROWS[system](moment):
                        counts[_SUMMARY_FIELD[table.name]] = _insert_missing(conn, table, rows)
            except SQLAlchemyError as exc:
                raise translate_db_error(exc, f"seed {system}") from exc
    return SeedSummary(**counts)


def init(settings: Settings, *, seed: bool) -> None:
    """``hub demo init [--seed]``: create the three systems at their configured URLs, and
    the hub store's database on its server (``run`` migrates it; a SQLite store needs
    nothing), so that the setup commands of a fresh server are this and ``run``.

    Raises as :func:`create_schemas` and :func:`seed` do.
    """
    urls: dict[str, str] = {system: settings.system_url(system) for system in SYSTEMS}
    ensure_database(settings.database, connect_timeout=settings.connect_timeout)
    create_schemas(urls, connect_timeout=settings.connect_timeout)
    if seed:
        _seed(urls, connect_timeout=settings.connect_timeout)


_seed = seed


def ensure_embedded(settings: Settings) -> bool:
    """Create and seed a SQLite file for every system the user left unconfigured and whose
    file does not exist yet; configured systems are never touched. True when any was made.

    Raises as :func:`create_schemas` and :func:`seed` do; OSError when the file cannot be
    moved into place.
    """
    created = False
    for system in SYSTEMS:
        if settings.system_configured(system):
            continue
        path = Path(make_url(settings.system_url(system)).database or "")
        if path.exists():
            continue
        with _one_builder(path):
            if path.exists():  # built by another process while this one waited
                continue
            _build_aside(system, path, settings.connect_timeout)
        created = True
    return created


@contextmanager
def _one_builder(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` while ``path`` is built. Processes started
    at once (the bulk renderer's workers, or the daemon and a command on a fresh machine)
    built the same ``.partial`` file and removed it under each other ("no such table")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _build_aside(system: System, path: Path, connect_timeout: float) -> None:
    partial = path.with_name(path.name + ".partial")
    _remove_sqlite(partial)
    url = f"sqlite:///{partial}"
    create_schemas({system: url}, connect_timeout=connect_timeout)
    _seed({system: url}, connect_timeout=connect_timeout)
    # Every connection is closed by now, so SQLite has folded its WAL back into the file.
    # A journal left beside a deleted file would be replayed into the new one: drop it.
    _remove_sqlite(path, journals_only=True)
    os.replace(partial, path)


def _remove_sqlite(path: Path, *, journals_only: bool = False) -> None:
    leftovers = [Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")]
    for leftover in leftovers if journals_only else [path, *leftovers]:
        leftover.unlink(missing_ok=True)


def _insert_missing(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert the rows whose primary key is not in ``table`` yet; returns how many."""
    if not rows:
        return 0
    key_columns = list(table.primary_key.columns)
    first = key_columns[0]
    wanted = {row[first.name] for row in rows}
    query = select(*key_columns).where(first.in_(wanted))
    existing = {tuple(found) for found in conn.execute(query)}
    missing = [dict(row) for row in rows
               if tuple(row[c.name] for c in key_columns) not in existing]
    if missing:
        conn.execute(table.insert(), missing)
    return len(missing)


def _server_url(target: URL) -> URL:
    """Where to connect to create ``target``'s database."""
    if target.get_backend_name() == "postgresql":
        return target.set(database="postgres")
    if target.get_driver_name() == "pyodbc":
        # With a host but no database, SQLAlchemy's pyodbc connector takes the host for an
        # ODBC DSN name; information_schema exists on every MariaDB/MySQL server.
        return target.set(database="information_schema")
    return target.set(database=None)


@contextmanager
def _engine(url: str, connect_timeout: float) -> Iterator[Engine]:
    engine = make_engine(url, connect_timeout=connect_timeout, pool_size=2)
    try:
        yield engine
    finally:
        engine.dispose()

