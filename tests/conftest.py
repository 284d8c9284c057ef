"""Shared fixtures: the real servers of this machine, and throwaway databases on them.

Tests that need a server fail (they do not skip) when it is unreachable: a green run must mean
the real thing was exercised.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store import Store
from tests.databases import Databases


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    databases = Databases("postgresql", tmp_path)
    try:
        yield databases.url("hub", create=True)
    finally:
        databases.drop_all()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store(pg_url)
    store.migrate()
    yield store
    store.dispose()
