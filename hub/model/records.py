"""Canonical records: what the CRM, the ERP and the LIMS mean, in one vocabulary.

Connectors translate their own rows into these and back (through ``mappings/``); nothing on the
bus is system-specific. Identifiers of each system are carried side by side (``crm_id``,
``erp_code`` ...) so the hub's cross-reference can bind them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from pydantic import Field

from hub.model.base import Canonical, Code, CurrencyCode, Money, Price, Quantity

__all__ = [
    "BatchAllocation",
    "CertificateRef",
    "Delivery",
    "DeliveryLine",
    "Invoice",
    "InvoiceLine",
    "Lot",
    "Order",
    "OrderLine",
    "OrderStatus",
    "Party",
]

OrderStatus = Literal[
    "draft", "submitted", "confirmed", "on_hold", "partially_shipped", "shipped", "invoiced",
    "cancelled",
]



class Party(Canonical):
    """A customer, known to the CRM as an account and to the ERP as a business partner."""

    number: str = Field(
        ..., min_length=1, max_length=15, description="Customer number, e.g. C00042"
    )
    name: str = Field(..., min_length=1, max_length=200)
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    email: str | None = Field(None, max_length=200)
    crm_id: str | None = Field(None, max_length=36, description="CRM account_id")
    erp_code: str | None = Field(None, max_length=15, description="ERP CardCode")


class OrderLine(Canonical):
    """One line of a sales order; ``line_no`` is the CRM's numbering, ``erp_line`` the ERP's."""

    line_no: int | None = Field(None, ge=1, description="CRM line_no (1, 2, ...)")
    erp_line: int | None = Field(None, ge=0, description="ERP RDR1.LineNum (0, 1, ...)")
    product_code: Code = Field(..., description="ERP item code")
    description: str | None = Field(None, max_length=200)
    quantity: Quantity = Field(..., gt=0)
    unit: str | None = Field(None, max_length=10)
    unit_price: Price = Field(..., ge=0)
    shipped_quantity: Quantity = Field(default=Decimal("0"), ge=0)
    open_quantity: Quantity | None = Field(None, ge=0, description="ERP: not yet delivered")


class Order(Canonical):
    """A sales order as both sides see it; fields a side does not own may be ``None``."""

    order_number: str | None = Field(None, max_length=20, description="CRM order_number")
    crm_id: str | None = Field(None, max_length=36, description="CRM order_id")
    erp_doc_entry: int | None = Field(None, description="ERP ORDR.DocEntry")
    erp_doc_num: int | None = Field(None, description="ERP ORDR.DocNum, the number people see")
    customer: str = Field(
        ..., min_length=1, max_length=15, description="Customer number / CardCode"
    )
    customer_crm_id: str | None = Field(None, max_length=36)
    status: OrderStatus
    currency: CurrencyCode
    customer_po: str | None = Field(None, max_length=50)
    requested_date: dt.date | None = None
    promised_date: dt.date | None = None
    order_date: dt.date | None = None
    notes: str | None = Field(None, max_length=1000)
    total_amount: Money | None = None
    confirmed: bool | None = Field(None, description="ERP Confirmed: False means on hold")
    cancelled: bool = False
    lines: tuple[OrderLine, ...] = Field(default=())


class BatchAllocation(Canonical):
    """Part of a delivery line drawn from one batch (ERP IBT1; LIMS LOT_NAME)."""

    batch_number: str = Field(..., min_length=1, max_length=36)
    quantity: Quantity = Field(..., gt=0)


class DeliveryLine(Canonical):
    line_num: int = Field(..., ge=0, description="ERP DLN1.LineNum")
    order_doc_entry: int = Field(..., description="ERP ORDR.DocEntry the line ships")
    order_line: int = Field(..., ge=0, description="ERP RDR1.LineNum the line ships")
    product_code: Code
    quantity: Quantity = Field(..., gt=0)
    batches: tuple[BatchAllocation, ...] = ()


class Delivery(Canonical):
    """An ERP delivery (ODLN): what left the warehouse, for whom, from which batches."""

    doc_entry: int
    doc_num: int
    customer: str = Field(..., min_length=1, max_length=15)
    delivery_date: dt.date
    lines: tuple[DeliveryLine, ...] = Field(..., min_length=1)


class InvoiceLine(Canonical):
    line_num: int = Field(..., ge=0)
    delivery_doc_entry: int | None = None
    delivery_line: int | None = None
    product_code: Code
    quantity: Quantity


class Invoice(Canonical):
    doc_entry: int
    doc_num: int
    customer: str = Field(..., min_length=1, max_length=15)
    invoice_date: dt.date
    total: Money | None = None
    lines: tuple[InvoiceLine, ...] = ()


class Lot(Canonical):
    """A production batch as the LIMS knows it (LOT)."""

    lot_name: str = Field(..., min_length=1, max_length=36, description="Batch number")
    lot_number: int | None = None
    product: str | None = Field(None, max_length=40)
    product_version: int | None = None
    grade: str | None = Field(None, max_length=20)
    status: str | None = Field(None, max_length=1)
    manufacture_date: dt.date | None = None
    expiry_date: dt.date | None = None
    released: bool = Field(False, description="Has an authorised release sample")


class CertificateRef(Canonical):
    """An issued certificate of analysis, as announced on the bus."""

    number: str = Field(..., min_length=1, max_length=40)
    batch_number: str = Field(..., min_length=1, max_length=36)
    version: int = Field(..., ge=1)
    issued_at: dt.datetime
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    superseded_by: str | None = None
