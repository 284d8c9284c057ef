"""The hub's engines for MariaDB through ODBC.

A MariaDB URL through ODBC reaches the server on the port it names, not 3306.

Found by the fault suite: SQLAlchemy writes ``Server=host,port`` for pyodbc, which MariaDB
Connector/ODBC reads as the host alone, so an ERP configured on another port was silently
reached on the default one (another server).
"""

from __future__ import annotations

import datetime as dt
import socket
from decimal import Decimal

import pytest
from sqlalchemy import Column, Integer, MetaData, Numeric, Table, event, insert, select, text
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from hub.store.engine import ODBC_ROWS_PER_INSERT, make_engine
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


def test_multirow_inserts_send_few_statements_and_keep_microseconds() -> None:
    """The systems' engines send an INSERT of many rows as multi-row statements; datetimes
    still reach MariaDB as text with their microseconds (pyodbc would zero them)."""
    engine = make_engine(MARIADB_URL, multirow_inserts=True)
    table = Table("t_multirow", MetaData(), Column("id", Integer, primary_key=True),
                  Column("at", DATETIME(fsp=6)))
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: sent.append(statement))
    start = dt.datetime(2026, 11, 24, 8, 0, 0, 1)
    rows = [{"id": i, "at": start + dt.timedelta(microseconds=i)} for i in range(1, 2_501)]
    try:
        table.drop(engine, checkfirst=True)
        table.create(engine)
        sent.clear()
        with engine.begin() as conn:
            conn.execute(insert(table), rows)
        # Not all in one: the driver's cost of binding a statement's parameters grows with
        # their square.
        assert ODBC_ROWS_PER_INSERT == 100
        assert len(sent) == 25
        with engine.connect() as conn:
            back = dict(conn.execute(select(table.c.id, table.c.at)).all())
        assert back == {row["id"]: row["at"] for row in rows}
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_decimals_come_back_exact_and_reading_them_does_not_grow_the_process() -> None:
    """MariaDB Connector/ODBC leaks ~46 bytes for each DECIMAL pyodbc reads as a numeric
    struct: these 1,000 reads of 400 values grew a process by ~18 MB that way (the daemon
    by ~1 MB per 1,000 orders). The hub's engines read them as text instead."""
    engine = make_engine(MARIADB_URL)
    table = Table("t_decimals", MetaData(), Column("id", Integer, primary_key=True),
                  Column("quantity", Numeric(19, 6)), Column("price", Numeric(19, 6)))
    values = [Decimal("0.000000"), Decimal("-12.500000"), Decimal("9999999999999.999999"),
              Decimal("0.000001"), None]
    rows = [{"id": i, "quantity": values[i % len(values)], "price": Decimal(i) / 8}
            for i in range(1, 201)]
    try:
        table.drop(engine, checkfirst=True)
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(insert(table), rows)
        query = select(table.c.id, table.c.quantity, table.c.price).order_by(table.c.id)
        with engine.connect() as conn:
            back = [row._asdict() for row in conn.execute(query)]
            assert back == rows
            assert all(type(row["price"]) is Decimal for row in back)
            for _ in range(100):  # warm-up: the process's own caches and pools settle
                conn.execute(query).all()
            before = _rss_kib()
            for _ in range(1_000):
                conn.execute(query).all()
            grown = _rss_kib() - before
        assert grown < 3_000, f"reading 400,000 decimals grew the process by {grown} KiB"
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()
