"""Engines for every database the hub talks to, tuned per dialect.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with ``BEGIN
IMMEDIATE`` so that two writers queue up instead of failing with "database is locked" when a
reader tries to become a writer; a connection marked :data:`READ_ONLY` begins a plain read
transaction instead, so a poller reading a system never holds that system's write lock.
Network databases get connect timeouts and pre-ping, so a restarted server costs one retry
instead of a dead connection pool.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["READ_ONLY", "make_engine"]

#: Execution option for a connection that only reads (SQLite then takes no write lock).
READ_ONLY = "hub_read_only"


def make_engine(url: str, *, connect_timeout: float = 5.0, pool_size: int = 5,
                multirow_inserts: bool = False) -> Engine:
    """Create an engine for ``url``; the SQLite file's folder is created when missing.

    ``multirow_inserts``: an INSERT of many rows is sent as multi-row ``INSERT ... VALUES``
    statements (SQLAlchemy's "insertmanyvalues", up to 1,000 rows each) instead of one
    statement per row. Through ODBC that makes the ERP's order lines 2-3 times cheaper to
    write (``bench/``). The result's ``rowcount`` then no longer counts rows a database
    skipped (``INSERT IGNORE``, ``ON CONFLICT DO NOTHING``), so the hub store, which counts
    them, keeps it off; the systems' engines turn it on. SQLite is left as it is.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        engine = create_engine(parsed, **kwargs)
        _sqlite_tuning(engine)
        return engine
    kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
                  pool_timeout=connect_timeout * 2)
    driver = parsed.get_driver_name()
    if backend == "postgresql" and driver.startswith("psycopg"):
        kwargs["connect_args"] = {"connect_timeout": max(1, int(connect_timeout))}
    elif driver == "pyodbc":
        kwargs["connect_args"] = {"timeout": max(1, int(connect_timeout))}
        if backend in ("mysql", "mariadb"):
            parsed = _odbc_port(parsed)
    elif backend in ("mysql", "mariadb"):
        kwargs["connect_args"] = {"connect_timeout": max(1, int(connect_timeout))}
    engine = create_engine(parsed, **kwargs)
    if multirow_inserts:
        engine.dialect.use_insertmanyvalues_wo_returning = True
    if backend in ("mysql", "mariadb") and driver == "pyodbc":
        _datetimes_as_text(engine)
        _decimals_as_text(engine)
    return engine


def _odbc_port(url: URL) -> URL:
    """Pass a MariaDB/MySQL port to the ODBC driver as ``Port=``.

    SQLAlchemy's pyodbc connector writes host and port as ``Server=host,port`` (SQL Server's
    form); MariaDB Connector/ODBC ignores the ``,port`` part and connects to 3306, i.e. to
    another server, silently. ``Port`` in the query is handed to the driver as is."""
    if url.port is None or any(key.lower() == "port" for key in url.query):
        return url
    return url.update_query_dict({"Port": str(url.port)})


def _datetimes_as_text(engine: Engine) -> None:
    """Send datetimes to MariaDB's ODBC driver as text, so microseconds survive.

    MariaDB Connector/ODBC reports a timestamp precision of 16 (SQLGetTypeInfo), so pyodbc
    zeroes the fraction of every datetime it binds: two changes within one second would look
    alike to a watermark. MariaDB parses the ISO text exactly.
    """

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _rewrite(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                 executemany: bool) -> tuple[str, Any]:
        # A multi-row INSERT (insertmanyvalues) arrives flagged executemany with one flat
        # row of parameters for all its rows; a true executemany with a row per execution.
        if executemany and parameters and isinstance(parameters[0], list | tuple):
            return statement, [_as_text(p) for p in parameters]
        return statement, _as_text(parameters)


def _decimals_as_text(engine: Engine) -> None:
    """Read MariaDB's DECIMAL columns through ODBC as their text, made a ``Decimal`` here.

    pyodbc reads a DECIMAL into an ODBC numeric struct, and MariaDB Connector/ODBC (3.1.15,
    Debian 12's) leaks about 46 bytes of the driver's memory for every such value it hands
    over. Orders have many (quantities, prices, totals): the daemon grew by about 1 MB per
    1,000 orders synced and passed 200 MB after 40,000. Given an output converter, pyodbc asks
    for the value's bytes instead, which leaks nothing, and the text MariaDB sends is the
    exact decimal (``tests/store/test_engine_odbc.py`` measures both).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        import pyodbc  # only an ODBC engine gets here

        for sql_type in (pyodbc.SQL_DECIMAL, pyodbc.SQL_NUMERIC):
            dbapi_conn.add_output_converter(sql_type, _decimal)


def _decimal(raw: bytes | None) -> Decimal | None:
    return None if raw is None else Decimal(raw.decode("ascii"))


def _as_text(parameters: Any) -> Any:
    if not isinstance(parameters, list | tuple):
        return parameters
    return type(parameters)(
        v.isoformat(sep=" ", timespec="microseconds") if isinstance(v, dt.datetime) else v
        for v in parameters
    )


def _sqlite_tuning(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin (see begin below).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Readers (pollers) take no lock: in WAL mode they neither wait for nor block writers.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
