"""The reference CRM's tables, exactly as ``reference-systems.md`` names them.

Accounts own orders, orders own lines, and shipments (written by the hub from ERP deliveries)
point back at the order they ship. Every writer sets ``modified_at``/``modified_by`` and, on
orders, bumps ``version``; the hub polls ``modified_at`` as its watermark, hence the indexes.
"""

from __future__ import annotations

from sqlalchemy import (
    CHAR,
    Column,
    Date,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
)

from hub.store.types import (
    MYSQL_TABLE_OPTIONS,
    NAMING_CONVENTION,
    Money,
    Price,
    Quantity,
    UtcDateTime,
)

__all__ = [
    "crm_account",
    "crm_order",
    "crm_order_line",
    "crm_shipment",
    "crm_shipment_line",
    "metadata",
]

metadata = MetaData(naming_convention=NAMING_CONVENTION)


crm_account = Table(
    "crm_account", metadata,
    Column("account_id", String(36), primary_key=True),
    Column("account_number", String(15), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("country", CHAR(2)),
    Column("email", String(200)),
    Column("erp_customer_code", String(15), nullable=True),
    Column("modified_at", UtcDateTime, nullable=False, index=True),
    Column("modified_by", String(50), nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

crm_order = Table(
    "crm_order", metadata,
    Column("order_id", String(36), primary_key=True),
    Column("order_number", String(20), nullable=False, unique=True),
    Column("account_id", String(36), ForeignKey(crm_account.c.account_id), nullable=False,
           index=True),
    Column("status", String(20), nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("customer_po", String(50)),
    Column("requested_date", Date),
    Column("promised_date", Date, nullable=True),
    Column("erp_order_number", String(20), nullable=True, index=True),
    Column("total_amount", Money),
    Column("notes", String(1000)),
    Column("integration_status", String(10), nullable=True),
    Column("integration_message", String(1000), nullable=True),
    Column("version", Integer, nullable=False),
    Column("modified_at", UtcDateTime, nullable=False, index=True),
    Column("modified_by", String(50), nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

crm_order_line = Table(
    "crm_order_line", metadata,
    Column("order_id", String(36), ForeignKey(crm_order.c.order_id), primary_key=True),
    Column("line_no", Integer, primary_key=True, autoincrement=False),
    Column("product_code", String(50), nullable=False),
    Column("description", String(200)),
    Column("quantity", Quantity, nullable=False),
    Column("unit", String(10)),
    Column("unit_price", Price, nullable=False),
    Column("shipped_quantity", Quantity, nullable=False, default=0, server_default="0"),
    **MYSQL_TABLE_OPTIONS,
)

crm_shipment = Table(
    "crm_shipment", metadata,
    Column("shipment_id", String(36), primary_key=True),
    Column("order_id", String(36), ForeignKey(crm_order.c.order_id), index=True),
    Column("erp_delivery_number", String(20), nullable=False, unique=True),
    Column("shipped_on", Date, nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

crm_shipment_line = Table(
    "crm_shipment_line", metadata,
    Column("shipment_id", String(36), ForeignKey(crm_shipment.c.shipment_id),
           primary_key=True),
    Column("line_no", Integer, primary_key=True, autoincrement=False),
    Column("product_code", String(50)),
    Column("batch_number", String(36), primary_key=True),
    Column("quantity", Quantity),
    **MYSQL_TABLE_OPTIONS,
)
