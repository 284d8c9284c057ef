"""Migrations create exactly the tables the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub.store import Store
from hub.store.tables import metadata


@pytest.mark.parametrize("which", ["sqlite_store", "pg_store"])
def test_migrated_schema_matches_the_declared_tables(
    which: str, request: pytest.FixtureRequest
) -> None:
    store: Store = request.getfixturevalue(which)
    assert store.current_revision() == store.head_revision()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"a table changed without a migration: {diff}"
    store.migrate()  # a second run is a no-op
    assert store.current_revision() == store.head_revision()
