"""A fresh, seeded ERP database per test on SQLite, PostgreSQL and MariaDB (through ODBC)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hub.demo import create_schemas, seed
from hub.store.engine import make_engine
from tests.connectors.erp.kit import DIALECTS, SEEDED_AT
from tests.databases import Databases


@pytest.fixture(params=DIALECTS)
def erp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an ERP database with the reference schema, the demo customers and items."""
    databases = Databases(request.param, tmp_path)
    databases.check_server()
    try:
        url = databases.url("erp")
        create_schemas({"erp": url})
        seed({"erp": url}, now=SEEDED_AT)
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        databases.drop_all()
