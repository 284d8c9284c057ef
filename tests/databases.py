"""Throwaway databases on this machine's servers, for every test package.

Server URLs come from ``HUB_TEST_PG_URL`` / ``HUB_TEST_MARIADB_URL`` / ``HUB_TEST_AMQP_URL``;
each test gets fresh databases named ``hubtest_<random>_<label>`` (created on demand, dropped
afterwards). A server that cannot be reached fails the test: nothing is skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from hub.store.engine import make_engine

PG_URL = os.environ.get("HUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get(
    "HUB_TEST_MARIADB_URL",
    "mysql+pyodbc://root:@127.0.0.1:3306/test?driver=MariaDB+Unicode&charset=utf8mb4",
)
AMQP_URL = os.environ.get("HUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def server_base_url(kind: str) -> str:
    return PG_URL if kind == "postgresql" else MARIADB_URL


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

    def url(self, label: str, *, create: bool = False) -> str:
        """A URL for a database that does not exist yet (or, with ``create``, an empty one)."""
        if self.kind == "sqlite":
            return f"sqlite:///{self._tmp / f'{label}.db'}"
        name = f"hubtest_{self._tag}_{label}"
        self._names.append(name)
        base = make_url(server_base_url(self.kind))
        url = base.set(database=name).render_as_string(hide_password=False)
        if create:
            from hub.demo.reference import ensure_database

            ensure_database(url)
        return url

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


@contextmanager
def seeded_system(kind: str, tmp_path: Path, system: str, *, now: Any) -> Iterator[Engine]:
    """An engine on a fresh database of ``kind`` holding ``system``'s reference schema and
    seed data (stamped ``now``); the database is dropped afterwards."""
    from hub.demo import create_schemas, seed

    databases = Databases(kind, tmp_path)
    databases.check_server()
    try:
        url = databases.url(system)
        create_schemas({system: url})
        seed({system: url}, now=now)
        with engine_for(url) as engine:
            yield engine
    finally:
        databases.drop_all()
