"""Who may have which batch's certificate: the ERP's deliveries, recorded in the hub's store.

A customer is entitled to the certificate of a batch when the ERP delivered that batch to it
(IBT1 rows of a delivery, BaseType 15). The hub records one ``entitlement`` row per delivery
line and batch: from each ``erp.delivery.posted`` message (the ``certificates`` part), and,
for deliveries the hub has not heard of (posted before the hub ran, or not polled yet), by
asking the ERP when someone asks for a batch (:func:`discover`) or in bulk (:func:`backfill`).

Batch numbers and customer codes are compared exactly in Python after every query: MariaDB's
collations ignore case and trailing blanks, and ``b2611-0001`` must not be ``B2611-0001``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from certificates.data import Recipient
from connectors.erp.documents import ErpDeliveries
from connectors.erp.order_reads import BASE_DELIVERY, read_orders
from connectors.erp.orders import ErpOrders
from connectors.erp.poller import order_key
from connectors.erp.schema import ibt1, ocrd, oitm
from hub.errors import MappingError, db_errors
from hub.model.records import Delivery
from hub.store.bulk import insert_ignore
from hub.store.tables import certificate, entitlement
from hub.store.types import utcnow

__all__ = [
    "BATCH_LENGTH",
    "Entitlement",
    "Entitlements",
    "backfill",
    "delivery_rows",
    "discover",
    "plausible_batch",
    "recipient",
]

#: The longest batch number (LOT.LOT_NAME, IBT1.BatchNum).
BATCH_LENGTH = 36
_PAGE = 500


def plausible_batch(batch: str) -> bool:
    """False for what cannot be a batch number: empty, longer than 36 characters, blanks at
    either end, control or unprintable characters, or characters outside the Basic
    Multilingual Plane (which some drivers and 3-byte collations refuse instead of finding
    nothing). Such a batch exists nowhere, so callers answer "not found" without a query."""
    return (
        0 < len(batch) <= BATCH_LENGTH
        and batch == batch.strip()
        and batch.isprintable()
        and all(ord(ch) < 0x10000 for ch in batch)
    )


@dataclass(frozen=True)
class Entitlement:
    """One delivery line's quantity of one batch, delivered to one customer."""

    batch_number: str
    customer: str
    customer_name: str | None
    order_key: str | None
    delivery_doc_entry: int
    delivery_doc_num: int
    delivery_line: int
    delivery_date: dt.date
    product_code: str
    quantity: Decimal
    uom: str | None


class Entitlements:
    """Read and write ``entitlement`` rows in the caller's transaction."""

    @staticmethod
    def record(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert entitlement rows (from :func:`delivery_rows`); returns how many were new."""
        now = utcnow()
        return insert_ignore(conn, entitlement, [{**row, "recorded_at": now} for row in rows])

    @staticmethod
    def of(conn: Connection, batch: str, customer: str | None = None) -> list[Entitlement]:
        """The batch's entitlements (of one customer, if named), oldest delivery first."""
        query = select(entitlement).where(entitlement.c.batch_number == batch)
        if customer is not None:
            query = query.where(entitlement.c.customer == customer)
        query = query.order_by(entitlement.c.delivery_date, entitlement.c.delivery_doc_num,
                               entitlement.c.delivery_line)
        return [_entitlement(row) for row in conn.execute(query)
                if row.batch_number == batch and (customer is None or row.customer == customer)]

    @staticmethod
    def for_batches(conn: Connection, batches: Iterable[str]
                    ) -> dict[str, dict[str, list[Entitlement]]]:
        """Entitlements of many batches: batch -> customer -> rows, oldest delivery first."""
        wanted = list(dict.fromkeys(b for b in batches if plausible_batch(b)))
        out: dict[str, dict[str, list[Entitlement]]] = {}
        for start in range(0, len(wanted), _PAGE):
            chunk = wanted[start:start + _PAGE]
            exact = set(chunk)
            query = (select(entitlement).where(entitlement.c.batch_number.in_(chunk))
                     .order_by(entitlement.c.delivery_date, entitlement.c.delivery_doc_num,
                               entitlement.c.delivery_line))
            for row in conn.execute(query):
                if row.batch_number in exact:
                    (out.setdefault(row.batch_number, {})
                     .setdefault(row.customer, []).append(_entitlement(row)))
        return out

    @staticmethod
    def without_certificate(conn: Connection) -> dict[str, list[str]]:
        """Batches with customers entitled to a certificate that has no version yet:
        batch -> customers."""
        issued = select(certificate.c.id).where(
            certificate.c.batch_number == entitlement.c.batch_number,
            certificate.c.customer == entitlement.c.customer,
        ).exists()
        rows = conn.execute(
            select(entitlement.c.batch_number, entitlement.c.customer).distinct()
            .where(~issued).order_by(entitlement.c.batch_number, entitlement.c.customer))
        out: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            out[row.batch_number].append(row.customer)
        return dict(out)

    @staticmethod
    def known_deliveries(conn: Connection) -> set[int]:
        """DocEntries of the deliveries whose entitlements are recorded."""
        return set(conn.execute(select(entitlement.c.delivery_doc_entry).distinct()).scalars())


def _entitlement(row: Any) -> Entitlement:
    return Entitlement(
        batch_number=row.batch_number, customer=row.customer, customer_name=row.customer_name,
        order_key=row.order_key, delivery_doc_entry=int(row.delivery_doc_entry),
        delivery_doc_num=int(row.delivery_doc_num), delivery_line=int(row.delivery_line),
        delivery_date=row.delivery_date, product_code=row.product_code,
        quantity=Decimal(row.quantity), uom=row.uom,
    )


@functools.cache
def _erp_orders() -> ErpOrders:
    return ErpOrders()


def delivery_rows(erp: Connection, delivery: Delivery, first_order_key: str | None = None
                  ) -> list[dict[str, Any]]:
    """The entitlement rows of an ERP delivery: one per line and batch, with the customer's
    name, the order key of each line's order and each item's unit, read from the ERP.

    ``first_order_key``: the order key of the first line's order when the caller knows it
    (the correlation key of ``delivery.posted``), saving a read.
    """
    keys: dict[int, str] = {}
    if first_order_key is not None:
        keys[delivery.lines[0].order_doc_entry] = first_order_key
    missing = sorted({line.order_doc_entry for line in delivery.lines} - set(keys))
    with db_errors(f"ERP: read delivery {delivery.doc_num}'s customer, orders and items"):
        if missing:
            try:
                orders = read_orders(erp, _erp_orders().mapping, missing)
            except MappingError:
                orders = {}
            keys.update({entry: order_key(order) for entry, order in orders.items()})
        name = erp.execute(select(ocrd.c.CardName).where(
            ocrd.c.CardCode == delivery.customer)).scalar()
        products = sorted({line.product_code for line in delivery.lines})
        uoms = {row.ItemCode: row.InvntryUom for row in erp.execute(
            select(oitm.c.ItemCode, oitm.c.InvntryUom).where(oitm.c.ItemCode.in_(products)))}
    rows: list[dict[str, Any]] = []
    for line in delivery.lines:
        key = keys.get(line.order_doc_entry, f"ERP-DLV-{delivery.doc_num}")
        for batch in line.batches:
            rows.append({
                "batch_number": batch.batch_number, "customer": delivery.customer,
                "customer_name": (name or None) and str(name)[:100],
                "order_key": key[:64], "delivery_doc_entry": delivery.doc_entry,
                "delivery_doc_num": delivery.doc_num, "delivery_line": line.line_num,
                "delivery_date": delivery.delivery_date, "product_code": line.product_code,
                "quantity": batch.quantity, "uom": (uoms.get(line.product_code) or None),
            })
    return rows


def discover(erp: Connection, batch: str) -> list[dict[str, Any]]:
    """Entitlement rows of every ERP delivery of ``batch`` (exactly that batch number)."""
    if not plausible_batch(batch):
        return []
    with db_errors(f"ERP: find the deliveries of batch {batch!r}"):
        entries = sorted({
            int(row.BaseEntry) for row in erp.execute(
                select(ibt1.c.BaseEntry, ibt1.c.BatchNum)
                .where(ibt1.c.BatchNum == batch, ibt1.c.BaseType == BASE_DELIVERY))
            if row.BatchNum == batch
        })
    deliveries = ErpDeliveries()
    rows: list[dict[str, Any]] = []
    for entry in entries:
        try:
            delivery = deliveries.read(erp, entry)
        except MappingError:
            continue  # ships no sales order line: not a delivery to a customer's order
        if delivery is not None:
            rows += delivery_rows(erp, delivery)
    return rows


def backfill(erp: Connection, known: set[int]) -> Iterable[list[dict[str, Any]]]:
    """Entitlement rows of every ERP delivery not in ``known`` (DocEntries), a page of
    deliveries at a time, read set-based through the delivery change stream."""
    deliveries = ErpDeliveries()
    after: tuple[dt.datetime, str] | None = None
    while True:
        page = deliveries.changes(erp, None, after, _PAGE)
        rows: list[dict[str, Any]] = []
        for change in page:
            delivery = change.row
            if delivery.doc_entry not in known:
                rows += delivery_rows(erp, delivery)
        if rows:
            yield rows
        if len(page) < _PAGE:
            return
        after = (page[-1].changed_at, page[-1].key)


def recipient(customer: str, delivered: Sequence[Entitlement]) -> Recipient:
    """The delivery the certificate names: the first one of the batch to the customer
    (a certificate is per batch and customer; later deliveries share it)."""
    first = min(delivered, key=lambda e: (e.delivery_date, e.delivery_doc_num))
    same = [e for e in delivered if e.delivery_doc_entry == first.delivery_doc_entry]
    return Recipient(
        customer_code=customer,
        customer_name=first.customer_name,
        order_number=first.order_key,
        delivery_number=str(first.delivery_doc_num),
        delivery_date=first.delivery_date,
        quantity=sum((e.quantity for e in same), Decimal(0)),
        uom=first.uom,
    )
