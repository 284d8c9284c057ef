"""A fresh, seeded CRM database per test on SQLite, PostgreSQL and MariaDB (through ODBC)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hub.demo import create_schemas, seed
from hub.store.engine import make_engine
from tests.connectors.crm.kit import DIALECTS, SEEDED_AT
from tests.databases import Databases


@pytest.fixture(params=DIALECTS)
def crm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a CRM database with the reference schema and the demo accounts."""
    databases = Databases(request.param, tmp_path)
    databases.check_server()
    try:
        url = databases.url("crm")
        create_schemas({"crm": url})
        seed({"crm": url}, now=SEEDED_AT)
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        databases.drop_all()
