"""Engines for every database the hub talks to, tuned per dialect.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with ``BEGIN
IMMEDIATE`` so that two writers queue up instead of failing with "database is locked" when a
reader tries to become a writer; a connection marked :data:`READ_ONLY` begins a plain read
transaction instead, so a poller reading a system never holds that system's write lock.
Network databases get connect timeouts, and a connection that sat in the pool for a while is
checked before it is lent, so a restarted server costs one retry instead of a dead connection
pool.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["ODBC_ROWS_PER_INSERT", "PING_AFTER_IDLE_SECONDS", "READ_ONLY", "make_engine"]

#: Execution option for a connection that only reads (SQLite then takes no write lock).
READ_ONLY = "hub_read_only"

#: A pooled connection that has been back in the pool longer than this is checked with a
#: round trip before it is handed out again (see :func:`_ping_when_idle`).
PING_AFTER_IDLE_SECONDS = 1.0

#: Where a pooled connection's record keeps when it came back to the pool.
_RETURNED = "hub_returned_at"

#: Rows per multi-row INSERT sent to MariaDB through ODBC. Its driver grows its array of
#: bound parameters one at a time (``SQLBindParameter`` reallocates and copies it), so a
#: statement's binding costs grow with the square of its parameters: creating 100 orders
#: (their 500 lines, 5,500 parameters, in one statement) took 19.3 ms of CPU, and 14.1 ms
#: in statements of 100 rows (``bench/erp_writes.py``).
ODBC_ROWS_PER_INSERT = 100


def make_engine(url: str, *, connect_timeout: float = 5.0, pool_size: int = 5,
                multirow_inserts: bool = False) -> Engine:
    """Create an engine for ``url``; the SQLite file's folder is created when missing.

    ``multirow_inserts``: an INSERT of many rows is sent as multi-row ``INSERT ... VALUES``
    statements (SQLAlchemy's "insertmanyvalues", up to 1,000 rows each, or
    :data:`ODBC_ROWS_PER_INSERT` to MariaDB through ODBC) instead of one statement per row.
    Through ODBC that makes the ERP's order lines 2-3 times cheaper to write
    (``bench/erp_writes.py``). The result's ``rowcount`` then no longer counts rows a
    database skipped (``INSERT IGNORE``, ``ON CONFLICT DO NOTHING``), so the hub store,
    which counts them, keeps it off; the systems' engines turn it on. SQLite is left as it is.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
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
            kwargs["insertmanyvalues_page_size"] = ODBC_ROWS_PER_INSERT
    elif backend in ("mysql", "mariadb"):
        kwargs["connect_args"] = {"connect_timeout": max(1, int(connect_timeout))}
    engine = create_engine(parsed, **kwargs)
    _ping_when_idle(engine)
    if multirow_inserts:
        engine.dialect.use_insertmanyvalues_wo_returning = True
    if backend in ("mysql", "mariadb") and driver == "pyodbc":
        _datetimes_as_text(engine)
        _decimals_as_text(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection with a round trip before lending it, when it has been back
    in the pool for more than :data:`PING_AFTER_IDLE_SECONDS`.

    SQLAlchemy's ``pool_pre_ping`` checks every time: a transaction cost four round trips
    instead of three, 50-100 us more CPU and about 100 us more wall time, and a busy daemon
    lends connections hundreds of times a second. A connection back for less than a
    second is used as it is; if the server went away in that second, its first statement
    fails as a disconnect, SQLAlchemy discards every pooled connection, and the caller
    retries, as it would after a failure in the middle of a transaction. A failed check
    also discards them all (like pre-ping), and the pool connects afresh.
    """

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _lent(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        returned = record.info.pop(_RETURNED, None)
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return  # new, or back only a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            if _gone(engine, exc, dbapi_conn):
                raise InvalidatePoolError(f"pooled connection is gone: {exc}") from exc
            raise

    if engine.dialect.driver == "pyodbc":
        @event.listens_for(engine, "handle_error")
        def _disconnect(context: ExceptionContext) -> None:
            if _odbc_connection_lost(context.original_exception):
                context.is_disconnect = True


def _gone(engine: Engine, exc: Any, dbapi_conn: Any) -> bool:
    """Whether ``exc`` says the connection is lost (not that the statement failed)."""
    return bool(engine.dialect.is_disconnect(exc, dbapi_conn, None)
                or _odbc_connection_lost(exc))


def _odbc_connection_lost(exc: BaseException) -> bool:
    """An ODBC error of SQLSTATE class 08, "connection exception": MariaDB's "server has
    gone away" and "lost connection during query" arrive as 08S01. SQLAlchemy's pyodbc
    dialect for MySQL/MariaDB does not count them as disconnects, so a restarted ERP left
    its dead connections in the pool, each failing once before it was dropped."""
    args: tuple[Any, ...] = exc.args
    return type(exc).__module__ == "pyodbc" and bool(args) and str(args[0]).startswith("08")


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
