"""Rows written the way a CRM user (or the CRM's own UI) writes them, for the connector tests."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, select

from connectors.crm.schema import crm_account, crm_order, crm_order_line
from hub.demo.seed_data import CUSTOMERS

DIALECTS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", id="mariadb-odbc", marks=pytest.mark.mariadb),
]

#: When the seeded accounts were (all) last modified.
SEEDED_AT = dt.datetime(2026, 3, 1, 8, 0, 0, 123456)
#: The first seeded customer: C00042, 上海华谊精细化工有限公司, its ERP code is its number.
HUAYI = CUSTOMERS[0]
T0 = dt.datetime(2026, 3, 2, 9, 0, 0, 1)


def line(line_no: int, product: str = "ETAC-99", quantity: str = "10.000",
         price: str = "1.2500", **extra: Any) -> dict[str, Any]:
    return {"line_no": line_no, "product_code": product, "description": f"{product} drum",
            "quantity": Decimal(quantity), "unit": "kg", "unit_price": Decimal(price),
            "shipped_quantity": Decimal("0"), **extra}


def insert_order(conn: Connection, number: str, *, account_id: str = HUAYI.account_id,
                 status: str = "submitted", modified_at: dt.datetime = T0,
                 lines: Sequence[dict[str, Any]] = (), order_id: str | None = None,
                 **columns: Any) -> str:
    """A CRM order as a sales person saves it; returns its order_id."""
    order_id = order_id or str(uuid.uuid4())
    row: dict[str, Any] = {
        "order_id": order_id, "order_number": number, "account_id": account_id,
        "status": status, "currency": "EUR", "customer_po": f"PO-{number}",
        "requested_date": dt.date(2026, 4, 15), "notes": None, "total_amount": Decimal("12.50"),
        "version": 1, "modified_at": modified_at, "modified_by": "mwang",
    }
    row.update(columns)
    conn.execute(crm_order.insert().values(row))
    if lines:
        conn.execute(crm_order_line.insert(), [{"order_id": order_id, **ln} for ln in lines])
    return order_id


def insert_account(conn: Connection, number: str, *, code: str | None = None,
                   modified_at: dt.datetime = T0, **columns: Any) -> str:
    account_id = str(uuid.uuid4())
    row: dict[str, Any] = {
        "account_id": account_id, "account_number": number, "name": f"Customer {number}",
        "country": "DE", "email": None, "erp_customer_code": code,
        "modified_at": modified_at, "modified_by": "mwang"}
    row.update(columns)
    conn.execute(crm_account.insert().values(row))
    return account_id


def order_row(conn: Connection, order_id: str) -> Any:
    return conn.execute(select(crm_order).where(crm_order.c.order_id == order_id)).one()


def line_rows(conn: Connection, order_id: str) -> dict[int, Any]:
    rows = conn.execute(select(crm_order_line).where(crm_order_line.c.order_id == order_id)
                        .order_by(crm_order_line.c.line_no)).all()
    return {r.line_no: r for r in rows}
