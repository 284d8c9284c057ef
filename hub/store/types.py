"""Column types that behave the same on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

__all__ = ["UtcDateTime", "utcnow"]

#: A naive UTC timestamp with microseconds everywhere (MariaDB's DATETIME defaults to seconds,
#: which would let two changes in one second hide behind a watermark).
UtcDateTime: TypeEngine[dt.datetime] = DateTime().with_variant(
    mysql.DATETIME(fsp=6), "mysql", "mariadb"
)


def utcnow() -> dt.datetime:
    """The current UTC time as a naive datetime, the form every table stores."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
