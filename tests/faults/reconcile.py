"""An independent reconciliation of a fault run: it reads the CRM, the ERP and the hub's dead
letters directly (none of the hub's sync code) and says what was lost, doubled or wrong.

- every CRM-submitted order is in the ERP exactly once (``U_CRM_ID``), and every ERP order
  the hub made belongs to a CRM order;
- every mapped field agrees: number, customer, currency, PO, requested date, total, notes,
  each line (item, description, quantity, unit, price), and back in the CRM the ERP's number,
  its status (confirmed / on hold) and its promised date;
- no document doubled: DocNums unique, one ERP line per CRM line;
- every order the hub could not sync is in dead letters with a reason, and its CRM row says
  ``integration_status = error`` with a message.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from connectors.crm.schema import crm_account, crm_order, crm_order_line
from connectors.erp.schema import ordr, rdr1
from hub.store.tables import dead_letter

__all__ = ["Reconciliation", "progress", "reconcile"]


@dataclass
class Reconciliation:
    attempted: int = 0
    in_crm: int = 0
    confirmed: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    phantoms: list[str] = field(default_factory=list)
    failed_with_reason: list[str] = field(default_factory=list)
    failed_without_reason: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    #: The order numbers behind :attr:`mismatches`, for a post-mortem trace.
    wrong_orders: list[str] = field(default_factory=list)
    doubled_doc_nums: int = 0
    doubled_lines: int = 0
    dead_letters: int = 0
    dead_letters_without_reason: int = 0
    erp_changes_back: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.phantoms or self.mismatches
                    or self.failed_without_reason or self.doubled_doc_nums
                    or self.doubled_lines or self.dead_letters_without_reason
                    or self.in_crm != self.attempted)

    def problems(self, limit: int = 5) -> list[str]:
        out: list[str] = []
        if self.in_crm != self.attempted:
            out.append(f"{self.in_crm} orders in the CRM, {self.attempted} attempted")
        for label, items in (("lost", self.lost), ("phantom ERP orders", self.phantoms),
                             ("failed without a reason", self.failed_without_reason),
                             ("field mismatches", self.mismatches)):
            if items:
                out.append(f"{len(items)} {label}: {list(items)[:limit]}")
        if self.duplicated:
            out.append(f"{len(self.duplicated)} duplicated: {list(self.duplicated.items())[:5]}")
        if self.doubled_doc_nums:
            out.append(f"{self.doubled_doc_nums} DocNums used twice")
        if self.doubled_lines:
            out.append(f"{self.doubled_lines} ERP orders whose lines are doubled or missing")
        if self.dead_letters_without_reason:
            out.append(f"{self.dead_letters_without_reason} dead letters without a reason")
        return out


def progress(crm: Engine) -> int:
    """CRM orders that carry their ERP number: the sync's round trip is done for them."""
    with crm.connect() as conn:
        return len(conn.execute(select(crm_order.c.order_id).where(
            crm_order.c.erp_order_number.is_not(None))).all())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return a is not None and b is not None and Decimal(a) == Decimal(b)
    return (a or None) == (b or None)  # '' and NULL both mean "none"


def reconcile(crm: Engine, erp: Engine, hub: Engine, submitted: Iterable[str]) -> Reconciliation:
    """Compare the CRM and the ERP row by row; ``submitted`` are the CRM order ids attempted."""
    attempted = set(submitted)
    result = Reconciliation(attempted=len(attempted))
    with crm.connect() as conn:
        accounts = {r.account_id: r.erp_customer_code for r in conn.execute(
            select(crm_account.c.account_id, crm_account.c.erp_customer_code))}
        orders = {r.order_id: r for r in conn.execute(select(crm_order))}
        crm_lines: dict[str, list[Any]] = defaultdict(list)
        for line in conn.execute(select(crm_order_line)):
            crm_lines[line.order_id].append(line)
    with erp.connect() as conn:
        headers = conn.execute(select(ordr)).all()
        erp_lines: dict[int, list[Any]] = defaultdict(list)
        for line in conn.execute(select(rdr1)):
            erp_lines[line.DocEntry].append(line)
    with hub.connect() as conn:
        letters = conn.execute(select(dead_letter.c.correlation_key, dead_letter.c.reason,
                                      dead_letter.c.status)).all()
    result.in_crm = len(attempted & set(orders))
    result.dead_letters = len(letters)
    result.dead_letters_without_reason = sum(1 for d in letters if not (d.reason or "").strip())
    lettered = {d.correlation_key for d in letters if (d.reason or "").strip()}

    by_crm_id: dict[str, list[Any]] = defaultdict(list)
    for h in headers:
        by_crm_id[h.U_CRM_ID].append(h)
    result.doubled_doc_nums = sum(n - 1 for n in Counter(h.DocNum for h in headers).values()
                                  if n > 1)
    result.phantoms = sorted(str(k) for k in by_crm_id if k not in orders)
    for order_id in sorted(attempted):
        order = orders.get(order_id)
        found = by_crm_id.get(order_id, [])
        if len(found) > 1:
            result.duplicated[order_id] = len(found)
            continue
        if not found:
            if order is not None and order.integration_status == "error":
                (result.failed_with_reason if order.integration_message
                 and order.order_number in lettered else result.failed_without_reason
                 ).append(order.order_number)
            else:
                result.lost.append(order.order_number if order is not None else order_id)
            continue
        if order is None:
            continue
        header = found[0]
        wrong = _compare(order, header, accounts, crm_lines[order_id], erp_lines[header.DocEntry])
        if wrong == ["lines"]:
            result.doubled_lines += 1
        if wrong:
            result.mismatches.append(f"{order.order_number}: {', '.join(wrong)}")
            result.wrong_orders.append(order.order_number)
        if order.erp_order_number == str(header.DocNum):
            result.confirmed += 1
        if header.Confirmed == "Y" and order.status == "confirmed":
            result.erp_changes_back += 1
    return result


def _compare(order: Any, header: Any, accounts: dict[str, str | None], crm_lines: list[Any],
             erp_lines: list[Any]) -> list[str]:
    """The names of the fields that disagree between a CRM order and its ERP order."""
    expected_status = ("cancelled" if header.CANCELED == "Y"
                       else "confirmed" if header.Confirmed == "Y" else "on_hold")
    pairs = {
        "erp number": (order.erp_order_number, str(header.DocNum)),
        "order number": (order.order_number, header.NumAtCard),
        "customer": (accounts.get(order.account_id), header.CardCode),
        "currency": (order.currency, header.DocCur),
        "customer_po": (order.customer_po, header.U_CustPO),
        "requested_date": (order.requested_date, header.U_ReqDate),
        "total": (order.total_amount, header.DocTotal),
        "notes": (order.notes, header.Comments),
        "status": (order.status, expected_status),
        "promised_date": (order.promised_date, header.DocDueDate),
    }
    wrong = [f"{name} (CRM {a!r}, ERP {b!r})" for name, (a, b) in pairs.items()
             if not _same(a, b)]
    by_line = {line.U_CRM_LINE: line for line in erp_lines}
    if len(by_line) != len(erp_lines) or len(erp_lines) != len(crm_lines):
        return [*wrong, "lines"]
    for line in crm_lines:
        other = by_line.get(line.line_no)
        if other is None or not all(_same(a, b) for a, b in (
                (line.product_code, other.ItemCode), (line.description, other.Dscription),
                (line.quantity, other.Quantity), (line.unit, other.unitMsr),
                (line.unit_price, other.Price))):
            wrong.append(f"line {line.line_no}")
    return wrong
