"""The three-way merge decision, field by field."""

from __future__ import annotations

from decimal import Decimal

from hub.model import Order, OrderLine
from hub.sync.merge import decide, project


def owner(name: str) -> str:
    return {"notes": "crm", "promised_date": "erp", "lines": "crm"}[name]


def test_a_field_changed_on_one_side_is_copied() -> None:
    d = decide(source="crm", incoming={"notes": "rush"}, incoming_base={"notes": None},
               current={"notes": None}, current_base={"notes": None}, owner=owner)
    assert d.writes == {"notes": "rush"} and d.conflicts == []


def test_unchanged_and_already_equal_fields_write_nothing() -> None:
    d = decide(source="crm", incoming={"notes": "a", "lines": [1]},
               incoming_base={"notes": "a", "lines": [0]}, current={"notes": "x", "lines": [1]},
               current_base={"notes": "x", "lines": [0]}, owner=owner)
    assert d.writes == {} and d.conflicts == []


def test_both_changed_the_owner_wins_and_the_conflict_is_kept() -> None:
    crm_wins = decide(source="crm", incoming={"notes": "crm text"}, incoming_base={"notes": "old"},
                      current={"notes": "erp text"}, current_base={"notes": "old"}, owner=owner)
    assert crm_wins.writes == {"notes": "crm text"}
    assert [(c.field, c.incoming, c.current, c.base, c.winner) for c in crm_wins.conflicts] == [
        ("notes", "crm text", "erp text", "old", "crm")]
    erp_keeps = decide(source="crm", incoming={"promised_date": "2026-12-01"},
                       incoming_base={"promised_date": None},
                       current={"promised_date": "2026-12-09"},
                       current_base={"promised_date": None}, owner=owner)
    assert erp_keeps.writes == {} and erp_keeps.conflicts[0].winner == "erp"


def test_first_sync_without_a_base_copies_what_differs() -> None:
    d = decide(source="erp", incoming={"promised_date": "2026-12-01", "notes": None},
               incoming_base={}, current={"promised_date": None, "notes": None}, current_base={},
               owner=owner)
    assert d.writes == {"promised_date": "2026-12-01"} and d.conflicts == []


def test_projection_normalises_decimals_dates_and_sorts_lines() -> None:
    a = Order(customer="C1", status="submitted", currency="EUR", lines=(
        OrderLine(line_no=2, product_code="B", quantity=Decimal("1.500"), unit_price=Decimal("2")),
        OrderLine(line_no=1, product_code="A", quantity=Decimal("10"), unit_price=Decimal("0.5")),
    ))
    b = Order(customer="C1", status="confirmed", currency="EUR", lines=(
        OrderLine(line_no=1, product_code="A", quantity=Decimal("10.000"),
                  unit_price=Decimal("0.5000")),
        OrderLine(line_no=2, product_code="B", quantity=Decimal("1.5"),
                  unit_price=Decimal("2.0000")),
    ))
    assert project(a, ["lines", "notes"]) == project(b, ["lines", "notes"])
    assert project(a, ["lines"])["lines"][0]["quantity"] == "10"
    assert project(a, ["status"]) != project(b, ["status"])
