"""Dialect parameters for the reference-system tests; the databases come from tests.databases."""

from __future__ import annotations

import pytest

from tests.databases import Databases, engine_for, server_base_url

__all__ = ["ALL_DIALECTS", "MARIADB", "POSTGRES", "SERVER_DIALECTS", "SQLITE", "Databases",
           "engine_for", "server_base_url"]

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRES = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)
MARIADB = pytest.param("mariadb", id="mariadb-odbc", marks=pytest.mark.mariadb)
ALL_DIALECTS = [SQLITE, POSTGRES, MARIADB]
SERVER_DIALECTS = [POSTGRES, MARIADB]


