"""Shared pieces of the canonical model: systems, money and quantity types, the base record."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Canonical", "Code", "CurrencyCode", "Money", "Price", "Quantity", "System"]

System = Literal["crm", "erp", "lims", "hub"]
"""The systems a message can come from."""

Money = Annotated[Decimal, Field(max_digits=18, decimal_places=2)]
Quantity = Annotated[Decimal, Field(max_digits=18, decimal_places=3)]
Price = Annotated[Decimal, Field(max_digits=18, decimal_places=4)]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
Code = Annotated[str, Field(min_length=1, max_length=50)]


class Canonical(BaseModel):
    """Base of every canonical record: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
