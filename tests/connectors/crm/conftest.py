"""A fresh, seeded CRM database per test on SQLite, PostgreSQL and MariaDB (through ODBC)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.connectors.crm.kit import DIALECTS, SEEDED_AT
from tests.databases import seeded_system


@pytest.fixture(params=DIALECTS)
def crm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a CRM database with the reference schema and the demo accounts."""
    with seeded_system(request.param, tmp_path, "crm", now=SEEDED_AT) as engine:
        yield engine
