"""Small pieces the CRM reader and writers share: error translation, readable validation
problems, hub-written text, order totals and mapped column checks.

Nothing here knows about the bus or the other systems; it turns what the CRM's rows and the
canonical model say into words a sales person can act on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy import Table

from hub.errors import MappingError, db_errors
from hub.mapping import EntityMapping
from hub.model.records import OrderLine

__all__ = [
    "HUB_USER",
    "MESSAGE_LIMIT",
    "checked_columns",
    "db_errors",
    "describe_problems",
    "hub_text",
    "mapped_column",
    "order_total",
]

#: What the hub writes into ``modified_by``.
HUB_USER = "hub"

#: The length of ``crm_order.integration_message``.
MESSAGE_LIMIT = 1000

_CENT = Decimal("0.01")

#: Canonical field names in the words the CRM's users know them by.
_WORDS: Mapping[str, str] = {
    "order_number": "order number",
    "customer": "customer",
    "customer_po": "customer PO number",
    "requested_date": "requested delivery date",
    "promised_date": "promised delivery date",
    "total_amount": "total amount",
    "line_no": "line number",
    "product_code": "product code",
    "unit_price": "unit price",
    "shipped_quantity": "shipped quantity",
    "number": "customer number",
    "erp_code": "ERP customer code",
}

_FORMATS: Mapping[str, str] = {
    "currency": "a three-letter currency code such as EUR",
    "country": "a two-letter country code such as DE",
}



def hub_text(message: str | None, limit: int = MESSAGE_LIMIT) -> str | None:
    """``message`` cut to ``limit`` characters, visibly: a cut text ends with "…"."""
    if message is None or len(message) <= limit:
        return message
    return message[: limit - 1] + "…"


def order_total(lines: Iterable[OrderLine]) -> Decimal:
    """Sum of quantity times unit price, rounded half-up to cents (DECIMAL(18,2))."""
    total = sum((line.quantity * line.unit_price for line in lines), Decimal(0))
    return total.quantize(_CENT, rounding=ROUND_HALF_UP)


def mapped_column(entity: EntityMapping, field: str, where: str) -> str:
    """The column ``entity`` maps ``field`` to; MappingError when the mapping lacks it."""
    try:
        return entity.fields[field]
    except KeyError:
        raise MappingError(f"{where} maps no column for {field!r}") from None


def checked_columns(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (column: value) after checking that ``table`` has every column named."""
    unknown = sorted(set(values) - set(table.c.keys()))
    if unknown:
        raise MappingError(f"mappings/crm.yaml names columns that {table.name} does not have: "
                           f"{', '.join(unknown)}")
    return dict(values)


def describe_problems(exc: ValidationError, subject: str,
                      lines: Sequence[Mapping[str, Any]] = ()) -> str:
    """Pydantic's complaints about ``subject`` ("order SO-2026-000123") as plain sentences.

    ``lines`` are the canonical line dicts that were validated, so a problem in the second
    line reads "line 2" by its own line number rather than by its position.
    """
    return "; ".join(_sentence(error, subject, lines) for error in exc.errors())


def _sentence(error: ErrorDetails, subject: str, lines: Sequence[Mapping[str, Any]]) -> str:
    loc = error["loc"]
    where = subject
    if len(loc) >= 2 and loc[0] == "lines" and isinstance(loc[1], int):
        index = loc[1]
        number = lines[index].get("line_no") if index < len(lines) else None
        where = f"{subject}, line {number if number is not None else index + 1}"
        loc = loc[2:]
    field = str(loc[-1]) if loc else "value"
    words = _WORDS.get(field, field.replace("_", " "))
    return f"{where}: {words} {_problem(error, field)}"


def _problem(error: ErrorDetails, field: str) -> str:
    kind = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    shown = _shown(value)
    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length") == 1):
        return "is missing"
    if kind == "string_too_short":
        return f"must have at least {ctx.get('min_length')} characters (it is {shown})"
    if kind == "string_too_long":
        return f"is too long: at most {ctx.get('max_length')} characters are allowed"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')} (it is {shown})"
    if kind == "greater_than_equal":
        limit = ctx.get("ge")
        if limit == 0:
            return f"must not be negative (it is {shown})"
        return f"must be at least {limit} (it is {shown})"
    if kind == "string_pattern_mismatch":
        expected = _FORMATS.get(field, "in the expected format")
        return f"must be {expected} (it is {shown})"
    if kind == "literal_error":
        return f"{shown} is not one of {ctx.get('expected')}"
    if kind == "decimal_max_places":
        return f"has more than {ctx.get('decimal_places')} decimal places (it is {shown})"
    if kind in ("decimal_max_digits", "decimal_whole_digits"):
        return f"is too large (it is {shown})"
    if kind.startswith(("date_", "datetime_")):
        return f"is not a valid date (it is {shown})"
    return f"is not valid: {error['msg']} (it is {shown})"


def _shown(value: Any) -> str:
    if isinstance(value, Decimal) and value.is_finite():
        return format(value.normalize(), "f")  # 0.000 reads as 0, never as 0E-3
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:59] + "…"
