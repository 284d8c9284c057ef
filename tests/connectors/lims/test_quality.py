"""The LIMS reader on the seeded demo lots: what goes on each batch's certificate."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select

from certificates.verdict import disagreements, overall, verdict
from connectors.lims import LimsReader, NotReleased
from connectors.lims.schema import lot
from hub.demo.seed_data import ANALYSES, COMPONENT_NAMES, SPECS
from hub.demo.seed_rows import result_value
from tests.connectors.lims.kit import NOT_RELEASED, RELEASED, SEEDED_AT, counting_selects

D = Decimal
METHODS = {a.name: a.method for a in ANALYSES}


def test_b2611_0001_has_every_spec_parameter_in_order(lims_ro: Engine) -> None:
    quality = LimsReader(lims_ro).quality("B2611-0001")
    assert quality is not None
    made = SEEDED_AT - dt.timedelta(days=40)
    reviewed = dt.datetime(2026, 1, 21, 13, 30, 0, 123456)  # login 14:30 + 23 hours
    assert (quality.batch_number, quality.lot_number, quality.product,
            quality.product_version, quality.grade) == (
        "B2611-0001", 1001, "ETAC-99", 1, "STANDARD")
    assert (quality.product_name_en, quality.product_name_zh) == (
        "Ethyl acetate 99.9%", "乙酸乙酯")
    assert quality.manufacture_date == made.date()
    assert quality.expiry_date == made.date() + dt.timedelta(days=730)
    assert (quality.sample_number, quality.sample_text_id) == (5001, "B2611-0001-01")
    assert quality.reviewer == "HZHOU"
    assert quality.reviewed_at == reviewed  # microseconds survive every driver
    assert quality.lims_in_spec is True
    assert quality.changed_on == reviewed

    specs = SPECS[("ETAC-99", "STANDARD")]
    got = [(r.analysis, r.component, r.order) for r in quality.results]
    assert got == [(s.analysis, s.component, 10 * (n + 1)) for n, s in enumerate(specs)]
    for line, spec in zip(quality.results, specs, strict=True):
        assert line.name_en == COMPONENT_NAMES[spec.component][0]
        assert line.name_zh == COMPONENT_NAMES[spec.component][1]
        assert line.method == METHODS[spec.analysis]
        assert line.units == spec.units
        assert (line.min_value, line.max_value, line.text_value) == (
            spec.min_value, spec.max_value, spec.text_value)
        assert line.value == result_value(spec, -1)
        assert line.lims_in_spec is True and line.replicate == 1
        assert line.entered_by in {"LWANG", "MCHEN", "JLI"} and line.entered_at is not None
    # The same, spelled out for a few lines, so the seed helpers cannot hide a mistake.
    by_component = {r.component: r for r in quality.results}
    purity, water, density = by_component["PURITY"], by_component["WATER"], by_component["DENSITY"]
    assert (purity.value, purity.numeric, purity.min_value, purity.max_value) == (
        "99.93", D("99.93"), D("99.90"), None)
    assert str(purity.min_value) == "99.9"  # DECIMAL(18,6)'s trailing zeros are dropped
    assert (water.method, water.units, water.max_value) == ("ASTM E203", "% (m/m)", D("0.05"))
    assert (density.min_value, density.max_value, density.units) == (
        D("0.897"), D("0.902"), "g/cm³")
    appearance = by_component["APPEARANCE"]
    assert (appearance.result_type, appearance.value, appearance.numeric,
            appearance.text_value) == ("T", "Clear", None, "Clear")
    # The working value RT_MAIN (REPORTABLE = F) is not on the certificate.
    assert "RT_MAIN" not in by_component


def test_b2611_0002_water_shows_only_the_retest(lims_ro: Engine) -> None:
    quality = LimsReader(lims_ro).quality("B2611-0002")
    assert quality is not None
    water = [r for r in quality.results if r.component == "WATER"]
    assert [(r.value, r.numeric, r.replicate, r.lims_in_spec) for r in water] == [
        ("0.032", D("0.032"), 2, True)]
    assert len(quality.results) == len(SPECS[("ETAC-99", "STANDARD")])
    assert verdict(water[0]) == "pass"


def test_b2611_0006_uses_the_authorised_re_sample(lims_ro: Engine) -> None:
    quality = LimsReader(lims_ro).quality("B2611-0006")
    assert quality is not None
    assert (quality.sample_number, quality.sample_text_id) == (5007, "B2611-0006-02")
    assert quality.lims_in_spec is True
    water = next(r for r in quality.results if r.component == "WATER")
    assert water.value != "0.041" and water.lims_in_spec is True
    assert overall(quality.results) == "pass"
    # The re-sample's review (the original was reviewed on 9 February, 13:30).
    assert quality.reviewed_at == dt.datetime(2026, 2, 10, 15, 0, 0, 123456)
    assert quality.changed_on == quality.reviewed_at


@pytest.mark.parametrize("batch", NOT_RELEASED)
def test_in_progress_and_awaiting_review_lots_are_not_released(
        lims_ro: Engine, batch: str) -> None:
    reader = LimsReader(lims_ro)
    with pytest.raises(NotReleased) as raised:
        reader.quality(batch)
    assert raised.value.batch_number == batch and raised.value.code == "not_released"
    assert batch in str(raised.value)
    assert batch not in reader.quality_many([batch, "B2611-0001"])


@pytest.mark.parametrize("batch", [
    "B2611-9999", "", "' OR 1=1 --", "B2611-0001' OR '1'='1", "'; DROP TABLE \"LOT\"; --",
    "B2611-0001\x00", "%", "B2611-%", "_2611-0001", "b2611-0001", "B2611-0001 ",
    " B2611-0001", "B2611-0001\n", "B" * 37, "x" * 10_000, "B2611-\ud800",
])
def test_unknown_or_hostile_batch_numbers_find_nothing(lims_ro: Engine, batch: str) -> None:
    reader = LimsReader(lims_ro)
    assert reader.quality(batch) is None
    assert reader.quality_many([batch]) == {}
    with lims_ro.connect() as conn:
        assert conn.execute(select(func.count()).select_from(lot)).scalar_one() == 12


def test_quality_many_equals_quality_per_lot(lims_ro: Engine) -> None:
    reader = LimsReader(lims_ro)
    asked = [*reversed(RELEASED), *NOT_RELEASED, "B2611-9999", "' OR 1=1 --", "B2611-0003"]
    many = reader.quality_many(asked)
    assert sorted(many) == RELEASED
    for batch in RELEASED:
        assert many[batch] == reader.quality(batch)
        assert many[batch].model_dump_json() == reader.quality(batch).model_dump_json()  # type: ignore[union-attr]


def test_verdicts_agree_with_the_lims_for_every_released_lot(lims_ro: Engine) -> None:
    many = LimsReader(lims_ro).quality_many(RELEASED)
    assert len(many) == len(RELEASED)
    for batch, quality in many.items():
        assert disagreements(quality) == [], batch
        assert overall(quality.results) == "pass", batch
        assert all(r.numeric is not None for r in quality.results if r.result_type == "N")


def test_quality_costs_the_same_few_queries_however_many_results(lims_ro: Engine) -> None:
    reader = LimsReader(lims_ro)
    reader.quality("B2611-0001")  # the first connection may ask the server about itself
    counts = {}
    for batch in ("B2611-0010", "B2611-0001", "B2611-0002"):
        with counting_selects(lims_ro) as statements:
            quality = reader.quality(batch)
        assert quality is not None
        counts[len(quality.results)] = len(statements)
    assert set(counts) == {5, 8}
    assert set(counts.values()) == {3}
    with counting_selects(lims_ro) as statements:
        assert len(reader.quality_many([*RELEASED, *NOT_RELEASED])) == 10
    assert len(statements) == 3
    with counting_selects(lims_ro) as statements:
        assert reader.quality("B2611-9999") is None
    assert len(statements) == 1
