"""Throwaway databases for the reference-system tests, on SQLite, PostgreSQL and MariaDB/ODBC.

The fixtures live in ``conftest.py``; this module holds what tests import.

Server URLs come from ``HUB_TEST_PG_URL`` / ``HUB_TEST_MARIADB_URL``; each test gets fresh
databases named ``hubtest_ref_<random>_<label>`` (created by the code under test, dropped
here). A server that cannot be reached fails the test: nothing is skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from hub.store.engine import make_engine

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_DEFAULT = (
    "mysql+pyodbc://root:@127.0.0.1:3306/test?driver=MariaDB+Unicode&charset=utf8mb4"
)

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRES = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)
MARIADB = pytest.param("mariadb", id="mariadb-odbc", marks=pytest.mark.mariadb)
ALL_DIALECTS = [SQLITE, POSTGRES, MARIADB]
SERVER_DIALECTS = [POSTGRES, MARIADB]


def server_base_url(kind: str) -> str:
    if kind == "postgresql":
        return os.environ.get("HUB_TEST_PG_URL", PG_DEFAULT)
    return os.environ.get("HUB_TEST_MARIADB_URL", MARIADB_DEFAULT)


@contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


class Databases:
    """Hands out URLs of fresh databases of one kind and drops them afterwards."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self._tmp = tmp_path
        self._tag = uuid.uuid4().hex[:10]
        self._names: list[str] = []

    def url(self, label: str) -> str:
        """A URL for a database that does not exist yet."""
        if self.kind == "sqlite":
            return f"sqlite:///{self._tmp / f'{label}.db'}"
        name = f"hubtest_ref_{self._tag}_{label}"
        self._names.append(name)
        base = make_url(server_base_url(self.kind))
        return base.set(database=name).render_as_string(hide_password=False)

    def systems(self) -> dict[str, str]:
        return {system: self.url(system) for system in ("crm", "erp", "lims")}

    def _admin_url(self) -> str:
        base = make_url(server_base_url(self.kind))
        admin = "postgres" if self.kind == "postgresql" else "information_schema"
        return base.set(database=admin).render_as_string(hide_password=False)

    def check_server(self) -> None:
        if self.kind == "sqlite":
            return
        with engine_for(self._admin_url()) as engine, engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1

    def drop_all(self) -> None:
        if self.kind == "sqlite" or not self._names:
            return
        with engine_for(self._admin_url()) as engine, engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for name in self._names:
                quoted = conn.dialect.identifier_preparer.quote_identifier(name)
                force = " WITH (FORCE)" if self.kind == "postgresql" else ""
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}{force}")


