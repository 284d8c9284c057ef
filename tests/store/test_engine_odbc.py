"""A MariaDB URL through ODBC reaches the server on the port it names, not 3306.

Found by the fault suite: SQLAlchemy writes ``Server=host,port`` for pyodbc, which MariaDB
Connector/ODBC reads as the host alone, so an ERP configured on another port was silently
reached on the default one (another server).
"""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from hub.store.engine import make_engine
from tests.databases import MARIADB_URL

pytestmark = pytest.mark.mariadb


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # free once closed: nothing listens there


def test_the_named_port_is_the_one_connected_to() -> None:
    url = make_url(MARIADB_URL)
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT @@port")).scalar_one() == (url.port or 3306)
    finally:
        engine.dispose()


def test_a_port_where_nothing_listens_fails_instead_of_reaching_another_server() -> None:
    url = make_url(MARIADB_URL).set(port=_closed_port())
    engine = make_engine(url.render_as_string(hide_password=False), connect_timeout=2)
    try:
        with pytest.raises(DBAPIError), engine.connect() as conn:
            conn.execute(text("SELECT @@port"))
    finally:
        engine.dispose()
