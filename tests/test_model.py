"""The canonical model: round trips, versioned decoding, clear errors for bad input."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import InvalidMessage
from hub.model import (
    BatchAllocation,
    Delivery,
    DeliveryLine,
    DeliveryPosted,
    Order,
    OrderChanged,
    OrderLine,
    decode,
    encode,
    partition_of,
    routing_key,
)


def order(**kw: object) -> OrderChanged:
    fields: dict[str, object] = {
        "order_number": "SO-2026-000123", "customer": "C00042", "status": "submitted",
        "currency": "EUR", "notes": "请在周五前交货 🚚",
        "lines": (OrderLine(line_no=1, product_code="ETAC-99", quantity=Decimal("1200.500"),
                            unit="kg", unit_price=Decimal("1.2345")),),
    }
    fields.update(kw)
    return OrderChanged(correlation_key="SO-2026-000123", source="crm", source_version="7",
                        order=Order(**fields))  # type: ignore[arg-type]


def test_round_trip_keeps_decimals_dates_and_cjk_exactly() -> None:
    message = order(requested_date=dt.date(2026, 12, 1))
    body = encode(message)
    assert decode(body) == message
    raw = json.loads(body)
    assert raw["type"] == "order.changed" and raw["schema_version"] == 1
    assert raw["order"]["lines"][0]["quantity"] == "1200.500"
    assert "请在周五前交货" in body.decode()


def test_delivery_with_batches_round_trips() -> None:
    message = DeliveryPosted(
        correlation_key="17", source="erp", source_version="2026-11-23T10:00:00",
        delivery=Delivery(doc_entry=5, doc_num=17, customer="C00042",
                          delivery_date=dt.date(2026, 11, 23),
                          lines=(DeliveryLine(line_num=0, order_doc_entry=3, order_line=0,
                                              product_code="ETAC-99", quantity=Decimal("800"),
                                              batches=(BatchAllocation(batch_number="B2611-0001",
                                                                       quantity=Decimal("800")),)),)),
    )
    assert decode(encode(message)) == message


@pytest.mark.parametrize(("body", "expected"), [
    (b"not json", "canonical model"),
    (b'{"type": "order.changed", "schema_version": 99}', "schema_version"),
    (b'{"type": "unheard.of", "schema_version": 1}', "does not match any of the expected tags"),
    (b"\xff\xfe", "canonical model"),
])
def test_undecodable_bodies_are_permanent_errors_with_a_reason(body: bytes, expected: str) -> None:
    with pytest.raises(InvalidMessage, match=expected):
        decode(body)


def test_invalid_values_name_the_field() -> None:
    body = json.loads(encode(order()))
    body["order"]["lines"][0]["quantity"] = "-5"
    body["order"]["currency"] = "euro"
    with pytest.raises(InvalidMessage) as info:
        decode(json.dumps(body))
    assert "order.lines.0.quantity" in str(info.value) and "order.currency" in str(info.value)


@given(st.text(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_partition_is_stable_and_in_range(key: str, partitions: int) -> None:
    p = partition_of(key, partitions)
    assert 0 <= p < partitions and p == partition_of(key, partitions)


def test_routing_key_names_source_type_and_partition() -> None:
    assert routing_key(order(), 1) == "crm.order.changed.p0"
