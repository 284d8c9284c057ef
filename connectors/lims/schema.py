"""The reference LIMS's tables (LabWare LIMS), upper-case as the product names them.

A ``LOT`` is a production batch; each of its samples (``SAMPLE``) carries tests (``TEST``),
which carry results (``RESULT``). ``PRODUCT``, ``ANALYSIS`` and ``PRODUCT_SPEC`` are the
master data that say what is measured, how, and within which limits.

Numeric keys (``LOT_NUMBER``, ``SAMPLE_NUMBER``, ...) are plain integers handed out by the
LIMS itself (LabWare keeps its own counters), so writers supply them; the database does not.
No foreign keys are declared, as in the product: the LIMS application keeps the links.
"""

from __future__ import annotations

from sqlalchemy import CHAR, Column, Date, Integer, MetaData, String, Table

from hub.store.types import MYSQL_TABLE_OPTIONS, NAMING_CONVENTION, Limit, UtcDateTime

__all__ = [
    "analysis",
    "lot",
    "metadata",
    "product",
    "product_spec",
    "result",
    "sample",
    "test",
]

metadata = MetaData(naming_convention=NAMING_CONVENTION)



def _key(name: str) -> Column[int]:
    return Column(name, Integer, primary_key=True, autoincrement=False)


lot = Table(
    "LOT", metadata,
    _key("LOT_NUMBER"),
    Column("LOT_NAME", String(36), nullable=False, unique=True),
    Column("PRODUCT", String(40)),
    Column("PRODUCT_VERSION", Integer),
    Column("PRODUCT_GRADE", String(20)),
    Column("STATUS", CHAR(1)),
    Column("X_MANUFACTURE_DATE", Date),
    Column("X_EXPIRY_DATE", Date),
    Column("CHANGED_ON", UtcDateTime, nullable=False, index=True),
    **MYSQL_TABLE_OPTIONS,
)

product = Table(
    "PRODUCT", metadata,
    Column("NAME", String(40), primary_key=True),
    Column("VERSION", Integer, primary_key=True, autoincrement=False),
    Column("DESCRIPTION", String(200)),
    Column("X_DESCRIPTION_ZH", String(200)),
    **MYSQL_TABLE_OPTIONS,
)

analysis = Table(
    "ANALYSIS", metadata,
    Column("NAME", String(40), primary_key=True),
    Column("VERSION", Integer, primary_key=True, autoincrement=False),
    Column("DESCRIPTION", String(200)),
    Column("X_METHOD", String(80)),
    **MYSQL_TABLE_OPTIONS,
)

product_spec = Table(
    "PRODUCT_SPEC", metadata,
    Column("PRODUCT", String(40), primary_key=True),
    Column("VERSION", Integer, primary_key=True, autoincrement=False),
    Column("GRADE", String(20), primary_key=True),
    Column("ANALYSIS", String(40), primary_key=True),
    Column("COMPONENT", String(40), primary_key=True),
    Column("UNITS", String(20)),
    Column("MIN_VALUE", Limit, nullable=True),
    Column("MAX_VALUE", Limit, nullable=True),
    Column("TEXT_VALUE", String(80), nullable=True),
    Column("REPORTED_NAME", String(80)),
    Column("X_REPORTED_NAME_ZH", String(80)),
    Column("ORDER_NUMBER", Integer),
    **MYSQL_TABLE_OPTIONS,
)

sample = Table(
    "SAMPLE", metadata,
    _key("SAMPLE_NUMBER"),
    Column("TEXT_ID", String(40)),
    Column("STATUS", CHAR(1)),
    Column("PRODUCT", String(40)),
    Column("PRODUCT_VERSION", Integer),
    Column("PRODUCT_GRADE", String(20)),
    Column("SAMPLING_POINT", String(20)),
    Column("LOT", Integer, index=True),
    Column("IN_SPEC", CHAR(1)),
    Column("LOGIN_DATE", UtcDateTime),
    Column("SAMPLED_DATE", UtcDateTime),
    Column("DATE_COMPLETED", UtcDateTime),
    Column("DATE_REVIEWED", UtcDateTime),
    Column("REVIEWER", String(40)),
    Column("RE_SAMPLE", CHAR(1)),
    Column("ORIGINAL_SAMPLE", Integer, nullable=True),
    Column("CHANGED_ON", UtcDateTime, nullable=False, index=True),
    **MYSQL_TABLE_OPTIONS,
)

test = Table(
    "TEST", metadata,
    _key("TEST_NUMBER"),
    Column("SAMPLE_NUMBER", Integer, index=True),
    Column("ANALYSIS", String(40)),
    Column("VERSION", Integer),
    Column("REPLICATE_COUNT", Integer),
    Column("STATUS", CHAR(1)),
    Column("IN_SPEC", CHAR(1)),
    Column("DATE_COMPLETED", UtcDateTime),
    Column("CHANGED_ON", UtcDateTime, nullable=False, index=True),
    **MYSQL_TABLE_OPTIONS,
)

result = Table(
    "RESULT", metadata,
    _key("RESULT_NUMBER"),
    Column("SAMPLE_NUMBER", Integer, index=True),
    Column("TEST_NUMBER", Integer, index=True),
    Column("ANALYSIS", String(40)),
    Column("NAME", String(40)),
    Column("REPORTED_NAME", String(80)),
    Column("REPLICATE_COUNT", Integer),
    Column("ENTRY", String(80)),
    Column("FORMATTED_ENTRY", String(80)),
    Column("UNITS", String(20)),
    Column("STATUS", CHAR(1)),
    Column("IN_SPEC", CHAR(1)),
    Column("REPORTABLE", CHAR(1)),
    Column("RESULT_TYPE", CHAR(1)),
    Column("DATE_ENTRY", UtcDateTime),
    Column("ENTERED_BY", String(40)),
    Column("CHANGED_ON", UtcDateTime, nullable=False, index=True),
    **MYSQL_TABLE_OPTIONS,
)
