"""Shared fixtures: the real servers of this machine, and throwaway databases on them.

Tests that need a server fail (they do not skip) when it is unreachable: a green run must mean
the real thing was exercised.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hub.store import Store

PG_URL = os.environ.get("HUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get(
    "HUB_TEST_MARIADB_URL",
    "mysql+pyodbc://root:@127.0.0.1:3306/test?driver=MariaDB+Unicode&charset=utf8mb4",
)
AMQP_URL = os.environ.get("HUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def throwaway_pg() -> tuple[str, str]:
    """Create an empty PostgreSQL database; returns (url, name)."""
    name = f"hubtest_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False), name


def drop_pg(name: str) -> None:
    admin = create_engine(make_url(PG_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    url, name = throwaway_pg()
    try:
        yield url
    finally:
        drop_pg(name)


@pytest.fixture
def sqlite_store(tmp_path: object) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path}/hub.db")  # type: ignore[str-bytes-safe]
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store(pg_url)
    store.migrate()
    yield store
    store.dispose()
