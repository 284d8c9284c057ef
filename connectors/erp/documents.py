"""ERP deliveries (ODLN/DLN1 with batches from IBT1) and invoices (OINV/INV1), read-only.

The hub never writes these: the warehouse posts deliveries and accounting posts invoices.
It reads them to tell the CRM what shipped, from which batches, and what was invoiced.
Only delivery lines that ship a sales order line (BaseType 17) are the hub's business; a
delivery without any is not in the change stream.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, exists, select

from connectors.erp.common import (
    as_changes,
    changed_rows,
    chunked,
    db_errors,
    doc_key,
    key_entry,
    validated,
)
from connectors.erp.order_reads import BASE_DELIVERY, BASE_ORDER
from connectors.erp.schema import dln1, ibt1, inv1, odln, oinv
from hub.errors import MappingError
from hub.model.records import Delivery, Invoice
from hub.watermark import Change

__all__ = ["ErpDeliveries", "ErpInvoices"]

Window = tuple[dt.datetime, str] | None


class ErpDeliveries:
    """Reads deliveries with their batches and lists the ones that changed."""

    def read(self, conn: Connection, doc_entry: int) -> Delivery | None:
        """Delivery ``doc_entry`` with its order lines and batches; None when absent.

        Raises MappingError when it ships no sales order line or a row does not fit the
        canonical model; DatabaseUnavailable / PermanentError for database failures.
        """
        with db_errors(f"ERP: read delivery {doc_entry}"):
            return _read_deliveries(conn, [doc_entry]).get(doc_entry)

    def changes(
        self, conn: Connection, lower: dt.datetime | None, after: Window, limit: int
    ) -> list[Change[Delivery]]:
        """Deliveries by their UpdateDate (the :data:`hub.watermark.Fetch` contract)."""
        ships_an_order = exists().where(
            dln1.c.DocEntry == odln.c.DocEntry, dln1.c.BaseType == BASE_ORDER)
        with db_errors("ERP: list changed deliveries"):
            changed = changed_rows(
                conn, odln, odln.c.DocEntry, lower, _parsed(after), limit, ships_an_order)
            rows = _read_deliveries(conn, [entry for entry, _ in changed])
        return as_changes(changed, rows, doc_key)


class ErpInvoices:
    """Reads invoices and lists the ones that changed."""

    def read(self, conn: Connection, doc_entry: int) -> Invoice | None:
        """Invoice ``doc_entry`` with its lines; None when absent. Raises as
        :meth:`ErpDeliveries.read` does."""
        with db_errors(f"ERP: read invoice {doc_entry}"):
            return _read_invoices(conn, [doc_entry]).get(doc_entry)

    def changes(
        self, conn: Connection, lower: dt.datetime | None, after: Window, limit: int
    ) -> list[Change[Invoice]]:
        """Invoices by their UpdateDate (the :data:`hub.watermark.Fetch` contract)."""
        with db_errors("ERP: list changed invoices"):
            changed = changed_rows(conn, oinv, oinv.c.DocEntry, lower, _parsed(after), limit)
            rows = _read_invoices(conn, [entry for entry, _ in changed])
        return as_changes(changed, rows, doc_key)


def _read_deliveries(conn: Connection, entries: Sequence[int]) -> dict[int, Delivery]:
    out: dict[int, Delivery] = {}
    for chunk in chunked(entries):
        heads = conn.execute(select(odln).where(odln.c.DocEntry.in_(chunk))).all()
        if not heads:
            continue
        lines: dict[int, list[Any]] = defaultdict(list)
        for line in conn.execute(
            select(dln1).where(dln1.c.DocEntry.in_(chunk), dln1.c.BaseType == BASE_ORDER)
            .order_by(dln1.c.DocEntry, dln1.c.LineNum)
        ):
            lines[line.DocEntry].append(line)
        batches: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
        for batch in conn.execute(
            select(ibt1).where(ibt1.c.BaseType == BASE_DELIVERY, ibt1.c.BaseEntry.in_(chunk))
            .order_by(ibt1.c.BaseEntry, ibt1.c.BaseLinNum, ibt1.c.BatchNum)
        ):
            batches[(batch.BaseEntry, batch.BaseLinNum)].append(
                {"batch_number": batch.BatchNum, "quantity": batch.Quantity})
        for head in heads:
            if not lines[head.DocEntry]:
                raise MappingError(
                    f"ERP delivery {head.DocNum} ships no sales order line; the hub only "
                    "follows deliveries of sales orders")
            values = {
                "doc_entry": head.DocEntry, "doc_num": head.DocNum,
                "customer": head.CardCode, "delivery_date": head.DocDate,
                "lines": [
                    {"line_num": line.LineNum, "order_doc_entry": line.BaseEntry,
                     "order_line": line.BaseLine, "product_code": line.ItemCode,
                     "quantity": line.Quantity,
                     "batches": batches[(head.DocEntry, line.LineNum)]}
                    for line in lines[head.DocEntry]
                ],
            }
            out[head.DocEntry] = validated(Delivery, values, f"ERP delivery {head.DocNum}")
    return out


def _read_invoices(conn: Connection, entries: Sequence[int]) -> dict[int, Invoice]:
    out: dict[int, Invoice] = {}
    for chunk in chunked(entries):
        heads = conn.execute(select(oinv).where(oinv.c.DocEntry.in_(chunk))).all()
        if not heads:
            continue
        lines: dict[int, list[Any]] = defaultdict(list)
        for line in conn.execute(
            select(inv1).where(inv1.c.DocEntry.in_(chunk))
            .order_by(inv1.c.DocEntry, inv1.c.LineNum)
        ):
            lines[line.DocEntry].append(line)
        for head in heads:
            values = {
                "doc_entry": head.DocEntry, "doc_num": head.DocNum,
                "customer": head.CardCode, "invoice_date": head.DocDate,
                "total": head.DocTotal,
                "lines": [_invoice_line(line) for line in lines[head.DocEntry]],
            }
            out[head.DocEntry] = validated(Invoice, values, f"ERP invoice {head.DocNum}")
    return out


def _invoice_line(line: Any) -> dict[str, Any]:
    of_delivery = line.BaseType == BASE_DELIVERY
    return {
        "line_num": line.LineNum, "product_code": line.ItemCode, "quantity": line.Quantity,
        "delivery_doc_entry": line.BaseEntry if of_delivery else None,
        "delivery_line": line.BaseLine if of_delivery else None,
    }


def _parsed(after: Window) -> tuple[dt.datetime, int] | None:
    return None if after is None else (after[0], key_entry(after[1]))
