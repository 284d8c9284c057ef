"""A fresh, seeded ERP database per test on SQLite, PostgreSQL and MariaDB (through ODBC)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.connectors.erp.kit import DIALECTS, SEEDED_AT
from tests.databases import seeded_system


@pytest.fixture(params=DIALECTS)
def erp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an ERP database with the reference schema, the demo customers and items."""
    with seeded_system(request.param, tmp_path, "erp", now=SEEDED_AT) as engine:
        yield engine
