"""The mapping files load and validate; the status rule follows the reference table."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from hub.errors import MappingError
from hub.mapping import EntityMapping, load_mapping, ownership
from mappings.rules import LineProgress as L
from mappings.rules import erp_order_status


@pytest.mark.parametrize(("cancelled", "confirmed", "lines", "expected"), [
    (True, True, [L(D(5), D(5), D(5))], "cancelled"),
    (False, True, [L(D(5), D(5), D(5)), L(D(2), D(2), D(2))], "invoiced"),
    (False, True, [L(D(5), D(5), D(5)), L(D(2), D(2), D(0))], "shipped"),
    (False, True, [L(D(5), D(5)), L(D(2))], "partially_shipped"),
    (False, False, [L(D(5), D(1))], "partially_shipped"),
    (False, False, [L(D(5))], "on_hold"),
    (False, True, [L(D(5))], "confirmed"),
    (False, True, [], "confirmed"),
])
def test_erp_order_status(cancelled: bool, confirmed: bool, lines: list[L], expected: str) -> None:
    assert erp_order_status(cancelled=cancelled, confirmed=confirmed, lines=lines) == expected


def test_shipped_files_load_and_name_the_contract_columns() -> None:
    erp = load_mapping("erp").entity("order")
    assert erp.fields["customer_po"] == "U_CustPO" and erp.fields["crm_id"] == "U_CRM_ID"
    assert load_mapping("crm").entity("order_line").fields["unit_price"] == "unit_price"
    assert ownership().owner("lines", delivered=False) == "crm"
    assert ownership().owner("lines", delivered=True) == "erp"
    assert ownership().owner("promised_date", delivered=False) == "erp"


def test_value_tables_translate_both_ways_and_reject_unknown_values() -> None:
    erp = load_mapping("erp").entity("order")
    assert erp.to_canonical({"Confirmed": "N", "CANCELED": "Y"})["confirmed"] is False
    assert erp.to_columns({"confirmed": True, "currency": "EUR"}, creating=False) == {
        "Confirmed": "Y"}, "currency is create-only"
    assert erp.to_columns({"currency": "EUR"}, creating=True) == {"DocCur": "EUR"}
    with pytest.raises(MappingError, match=r"Confirmed='\?'"):
        erp.to_canonical({"Confirmed": "?"})


def test_a_typo_in_a_mapping_is_an_error_not_a_dropped_field() -> None:
    with pytest.raises(ValueError):
        EntityMapping.model_validate({"fields": {"a": "b"}, "creat_only": ["a"]})
    with pytest.raises(MappingError, match="no owner"):
        ownership().owner("colour", delivered=False)
