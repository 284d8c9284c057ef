"""The three-way merge with field ownership, as a pure function.

For each field the incoming side changed since the last sync (its value differs from the
incoming side's remembered value): if the target did not change it too, the incoming value is
written; if both changed it to different values, it is a conflict and the field's owner wins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hub.model.records import Order

__all__ = ["Conflict", "Decision", "decide", "project"]

LINE_FIELDS = ("line_no", "product_code", "description", "quantity", "unit", "unit_price")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(
            value.normalize())
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def project(order: Order, fields: Iterable[str]) -> dict[str, Any]:
    """The comparable, JSON-able values of ``fields`` of ``order`` (``lines`` as a list)."""
    out: dict[str, Any] = {}
    for name in fields:
        if name == "shipped":
            # Not a field of its own: what the ERP shipped per line, which the CRM shows.
            out["shipped"] = {str(line.line_no): _plain(line.shipped_quantity)
                              for line in order.lines}
        elif name == "lines":
            out["lines"] = [
                {f: _plain(getattr(line, f)) for f in LINE_FIELDS}
                for line in sorted(order.lines, key=lambda ln: ln.line_no or 0)
            ]
        else:
            out[name] = _plain(getattr(order, name))
    return out


@dataclass(frozen=True)
class Conflict:
    field: str
    incoming: Any
    current: Any
    base: Any
    winner: str


@dataclass
class Decision:
    """What to write into the target, and the conflicts met on the way."""

    writes: dict[str, Any] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)


def decide(
    *,
    source: str,
    incoming: Mapping[str, Any],
    incoming_base: Mapping[str, Any],
    current: Mapping[str, Any],
    current_base: Mapping[str, Any],
    owner: Callable[[str], str],
) -> Decision:
    """Fields of ``incoming`` (from ``source``) to write into the other side, whose state is
    ``current``; the bases are each side's values at the last sync."""
    decision = Decision()
    for name, value in incoming.items():
        if name in incoming_base and incoming_base[name] == value:
            continue  # the source did not change it
        now = current.get(name)
        if now == value:
            continue  # already the same on both sides
        target_changed = name in current_base and current_base[name] != now
        if not target_changed:
            decision.writes[name] = value
            continue
        winner = owner(name)
        decision.conflicts.append(Conflict(name, value, now, incoming_base.get(name), winner))
        if winner == source:
            decision.writes[name] = value
    return decision
