"""Mapping files: which column of a system is which canonical field, value tables, owners.

A mapping file under ``mappings/`` is data a user edits when their schema differs from the
reference systems'. It is validated when loaded, so a typo is an error at start, not a
silently dropped field:

    fields:                       # canonical field: column (plain copies, both directions)
      customer_po: U_CustPO
    create_only: [currency]       # written when the record is created, never updated
    values:                       # value tables, canonical value: system value
      confirmed: {true: "Y", false: "N"}
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, cached_property
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.errors import MappingError

__all__ = ["EntityMapping", "OrderOwnership", "SystemMapping", "load_mapping", "ownership"]


class EntityMapping(BaseModel):
    """How one kind of record (order header, order line, party ...) maps to canonical fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: dict[str, str] = Field(default_factory=dict, description="canonical field: column")
    create_only: tuple[str, ...] = ()
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="canonical field: {canonical value: system value}"
    )

    @cached_property
    def _reading(self) -> tuple[tuple[str, str, dict[str, Any] | None], ...]:
        """Each field with its column and, for a value table, the canonical value of each
        system value: built once, not for every row read (orders are read by the thousand).
        A cached property, kept in the instance's own dict: a pydantic private attribute is
        looked up in Python code, slower than building the tables again."""
        return tuple(
            (name, column, None if (table := self.values.get(name)) is None
             else {v: _parse(k) for k, v in table.items()})
            for name, column in self.fields.items())

    def to_canonical(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Canonical fields from a row keyed by column name (value tables applied)."""
        out: dict[str, Any] = {}
        for name, column, reverse in self._reading:
            value = row.get(column)
            if reverse is not None and value is not None:
                key = str(value).strip()
                if key not in reverse:
                    raise MappingError(f"{column}={value!r} has no canonical value for {name}")
                value = reverse[key]
            out[name] = value
        return out

    def to_columns(self, fields: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        """Columns to write for the canonical ``fields`` given (unknown names are ignored)."""
        out: dict[str, Any] = {}
        for name, value in fields.items():
            column = self.fields.get(name)
            if column is None or (name in self.create_only and not creating):
                continue
            table = self.values.get(name)
            if table is not None and value is not None:
                key = _key(value)
                if key not in table:
                    raise MappingError(f"{name}={value!r} has no value in column {column}")
                value = table[key]
            out[column] = value
        return out


class SystemMapping(BaseModel):
    """A system's mapping file: one entity mapping per record kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: Literal["crm", "erp", "lims"]
    entities: dict[str, EntityMapping]

    def entity(self, name: str) -> EntityMapping:
        try:
            return self.entities[name]
        except KeyError:
            raise MappingError(f"mappings/{self.system}.yaml has no entity {name!r}") from None


class OrderOwnership(BaseModel):
    """Who wins a conflict on each order field (``mappings/ownership.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: dict[str, Literal["crm", "erp"]]
    lines_before_first_delivery: Literal["crm", "erp"] = "crm"
    lines_after_first_delivery: Literal["crm", "erp"] = "erp"
    cancellation: Literal["both"] = "both"

    def owner(self, field: str, *, delivered: bool) -> Literal["crm", "erp"]:
        if field == "lines":
            return self.lines_after_first_delivery if delivered else (
                self.lines_before_first_delivery)
        try:
            return self.fields[field]
        except KeyError:
            raise MappingError(f"mappings/ownership.yaml names no owner for {field!r}") from None


def _key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(text: str) -> Any:
    return {"true": True, "false": False}.get(text, text)


def _read(name: str) -> Any:
    try:
        text = resources.files("mappings").joinpath(name).read_text(encoding="utf-8")
        return yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"cannot read mappings/{name}: {exc}") from exc


def _validated(model: type[BaseModel], name: str) -> Any:
    try:
        return model.model_validate(_read(name))
    except ValidationError as exc:
        raise MappingError(f"mappings/{name} is not valid: {exc}") from exc


@cache
def load_mapping(system: Literal["crm", "erp", "lims"]) -> SystemMapping:
    """The validated mapping of ``system`` (read once per process)."""
    mapping: SystemMapping = _validated(SystemMapping, f"{system}.yaml")
    return mapping


@cache
def ownership() -> OrderOwnership:
    """The validated field owners for orders."""
    owners: OrderOwnership = _validated(OrderOwnership, "ownership.yaml")
    return owners
