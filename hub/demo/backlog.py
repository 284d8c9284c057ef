"""Many submitted CRM orders at once, for benchmarks and crash tests: a backlog to drain.

Each order has 5 lines of the demo items, goes to one of the demo customers, and is numbered
``SO-B-<n>``; ``modified_at`` grows by a microsecond per order, as a busy CRM would stamp them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, insert

from connectors.crm.schema import crm_order, crm_order_line
from hub.demo.seed_data import CUSTOMERS, ITEMS
from hub.store.types import utcnow

__all__ = ["LINES_PER_ORDER", "load_backlog", "order_rows"]

LINES_PER_ORDER = 5


def order_rows(count: int, start: int, now: dt.datetime
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``count`` submitted orders numbered from ``start``, and their lines, as table rows."""
    orders: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for i in range(start, start + count):
        order_id = str(uuid.uuid4())
        customer = CUSTOMERS[i % len(CUSTOMERS)]
        total = Decimal(0)
        for n in range(1, LINES_PER_ORDER + 1):
            item = ITEMS[(i + n) % len(ITEMS)]
            quantity, price = Decimal(100 * n), Decimal("2.50") + n
            total += quantity * price
            lines.append({"order_id": order_id, "line_no": n, "product_code": item.code,
                          "description": item.name, "quantity": quantity, "unit": "kg",
                          "unit_price": price, "shipped_quantity": Decimal(0)})
        orders.append({
            "order_id": order_id, "order_number": f"SO-B-{i:07d}",
            "account_id": customer.account_id, "status": "submitted", "currency": "EUR",
            "customer_po": f"PO-{i}", "requested_date": (now + dt.timedelta(days=14)).date(),
            "notes": None, "total_amount": total.quantize(Decimal("0.01")), "version": 1,
            "modified_at": now + dt.timedelta(microseconds=i - start), "modified_by": "backlog",
        })
    return orders, lines


def load_backlog(crm: Engine, count: int, *, start: int = 0, chunk: int = 1000) -> None:
    """Insert ``count`` submitted orders into the CRM, ``chunk`` per transaction."""
    now = utcnow()
    for first in range(start, start + count, chunk):
        header, lines = order_rows(min(chunk, start + count - first), first, now)
        with crm.begin() as conn:
            conn.execute(insert(crm_order), header)
            conn.execute(insert(crm_order_line), lines)
