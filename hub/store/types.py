"""Column types that behave the same on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime, LargeBinary, Numeric, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

__all__ = [
    "MYSQL_TABLE_OPTIONS", "NAMING_CONVENTION", "Blob", "Limit", "LongText", "Money", "Price",
    "Quantity", "UtcDateTime", "utcnow",
]

#: A naive UTC timestamp with microseconds everywhere (MariaDB's DATETIME defaults to seconds,
#: which would let two changes in one second hide behind a watermark).
UtcDateTime: TypeEngine[dt.datetime] = DateTime().with_variant(
    mysql.DATETIME(fsp=6), "mysql", "mariadb"
)


def utcnow() -> dt.datetime:
    """The current UTC time as a naive datetime, the form every table stores."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


#: Constraint and index names that are the same on every dialect (Alembic relies on them).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Table options for MariaDB: Chinese text needs 4-byte UTF-8 whatever the server's default.
MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci",
}

Money = Numeric(18, 2)
"""DECIMAL(18,2): amounts."""
Quantity = Numeric(18, 3)
"""DECIMAL(18,3): quantities."""
Price = Numeric(18, 4)
"""DECIMAL(18,4): unit prices."""
Limit = Numeric(18, 6)
"""DECIMAL(18,6): specification limits."""

#: Binary content of any size (BLOB on MariaDB stops at 64 KiB; a certificate PDF does not).
Blob: TypeEngine[bytes] = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
#: Text of any size (TEXT on MariaDB stops at 64 KiB).
LongText: TypeEngine[str] = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
