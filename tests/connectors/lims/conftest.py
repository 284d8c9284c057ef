"""Seeded LIMS databases on SQLite, PostgreSQL and MariaDB (through ODBC).

``lims_ro`` is shared by a module's tests that only read (seeding a server database takes a
while); ``lims`` is a fresh database for a test that edits the LIMS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.connectors.lims.kit import DIALECTS, SEEDED_AT
from tests.databases import seeded_system


@pytest.fixture(scope="module", params=DIALECTS)
def lims_ro(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A seeded LIMS shared by a module's tests: do not write to it."""
    with seeded_system(request.param, tmp_path_factory.mktemp("lims"), "lims",
                       now=SEEDED_AT) as engine:
        yield engine


@pytest.fixture(params=DIALECTS)
def lims(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A freshly seeded LIMS for one test, which may edit it."""
    with seeded_system(request.param, tmp_path, "lims", now=SEEDED_AT) as engine:
        yield engine
