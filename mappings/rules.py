"""The mapping rules that need logic: small pure functions, typed in and out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from hub.model.records import OrderStatus

__all__ = ["LineProgress", "erp_order_status"]


@dataclass(frozen=True)
class LineProgress:
    """How far one ERP order line has come: ordered, delivered and invoiced quantities."""

    ordered: Decimal
    delivered: Decimal = Decimal(0)
    invoiced: Decimal = Decimal(0)


def erp_order_status(
    *, cancelled: bool, confirmed: bool, lines: Sequence[LineProgress]
) -> OrderStatus:
    """The CRM status of an ERP order (reference-systems.md, "ERP-derived order status").

    Cancelled wins; then an invoice covering every delivered line with nothing open is
    ``invoiced``; every line delivered is ``shipped``; some delivered ``partially_shipped``;
    a held order (Confirmed = N) ``on_hold``; otherwise ``confirmed``.
    """
    if cancelled:
        return "cancelled"
    delivered_any = any(line.delivered > 0 for line in lines)
    all_delivered = bool(lines) and all(line.delivered >= line.ordered for line in lines)
    if all_delivered and all(line.invoiced >= line.delivered for line in lines):
        return "invoiced"
    if all_delivered:
        return "shipped"
    if delivered_any:
        return "partially_shipped"
    return "confirmed" if confirmed else "on_hold"
