"""Fixtures for the reference-system tests: fresh databases on every dialect, dropped after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reference.support import ALL_DIALECTS, SERVER_DIALECTS, Databases


def _databases(kind: str, tmp_path: Path) -> Iterator[Databases]:
    dbs = Databases(kind, tmp_path)
    dbs.check_server()
    try:
        yield dbs
    finally:
        dbs.drop_all()


@pytest.fixture(params=ALL_DIALECTS)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """Fresh databases on SQLite, PostgreSQL and MariaDB (through ODBC) in turn."""
    yield from _databases(request.param, tmp_path)


@pytest.fixture(params=SERVER_DIALECTS)
def server_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """Fresh databases on the two server dialects only (where writers really run in parallel)."""
    yield from _databases(request.param, tmp_path)
