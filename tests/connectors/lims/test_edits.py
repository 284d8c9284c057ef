"""The LIMS reader after the lab edits the LIMS: tampered results, re-samples, replicates,
results without limits."""

# The LIMS's columns are upper-case, which ruff takes for constants (a "Yoda condition").
# ruff: noqa: SIM300

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from sqlalchemy import Engine, select, update

from certificates.verdict import disagreements, verdict
from connectors.lims import LimsReader, NotReleased
from connectors.lims.schema import result, sample, test
from tests.connectors.lims.kit import LATER, copy_sample, release_samples, set_result


def test_a_tampered_result_disagrees_with_the_lims(lims: Engine) -> None:
    reader = LimsReader(lims)
    with lims.begin() as conn:
        # Out of limits while IN_SPEC stays T.
        set_result(conn, release_samples(conn, "B2611-0001")[0], "WATER",
                   ENTRY="0.075", FORMATTED_ENTRY="0.075")
        set_result(conn, release_samples(conn, "B2611-0003")[0], "APPEARANCE",
                   ENTRY="Hazy", FORMATTED_ENTRY="Hazy")
        # Within limits while the LIMS says it is out.
        set_result(conn, release_samples(conn, "B2611-0004")[0], "PURITY", IN_SPEC="F")
        # A value that is no number where limits expect one.
        set_result(conn, release_samples(conn, "B2611-0005")[0], "COLOUR",
                   ENTRY="n.d.", FORMATTED_ENTRY="n.d.")
    many = reader.quality_many(["B2611-0001", "B2611-0003", "B2611-0004", "B2611-0005",
                                "B2611-0007"])

    water = next(r for r in many["B2611-0001"].results if r.component == "WATER")
    assert (water.value, water.numeric, water.lims_in_spec) == ("0.075", D("0.075"), True)
    assert verdict(water) == "fail"
    reasons = disagreements(many["B2611-0001"])
    assert reasons == [
        "Water (WATER_KF/WATER, replicate 1): '0.075' % (m/m) is outside max 0.05, but the "
        "LIMS has it in spec",
        "sample 5001 (B2611-0001-01): the results fail overall, but the LIMS has it in spec",
    ]
    assert "'Hazy' is outside 'Clear'" in disagreements(many["B2611-0003"])[0]
    assert "is within min 99.99, but the LIMS has it out of spec" in disagreements(
        many["B2611-0004"])[0]
    colour = next(r for r in many["B2611-0005"].results if r.component == "COLOUR")
    assert (colour.value, colour.numeric) == ("n.d.", None)
    assert "'n.d.' Pt-Co is outside max 10" in disagreements(many["B2611-0005"])[0]
    assert disagreements(many["B2611-0007"]) == []


def test_a_pending_re_sample_supersedes_its_original(lims: Engine) -> None:
    reader = LimsReader(lims)
    with lims.begin() as conn:
        copy_sample(conn, 5001, 5101, TEXT_ID="B2611-0001-02", STATUS="P", RE_SAMPLE="T",
                    ORIGINAL_SAMPLE=5001, DATE_REVIEWED=None, REVIEWER=None, CHANGED_ON=LATER)
    with pytest.raises(NotReleased):
        reader.quality("B2611-0001")
    assert "B2611-0001" not in reader.quality_many(["B2611-0001"])

    with lims.begin() as conn:  # the re-sample is cancelled: the original stands again
        conn.execute(update(sample).where(sample.c.SAMPLE_NUMBER == 5101).values(STATUS="X"))
    quality = reader.quality("B2611-0001")
    assert quality is not None and quality.sample_number == 5001

    with lims.begin() as conn:  # authorised, even with an older review date, it wins
        conn.execute(update(sample).where(sample.c.SAMPLE_NUMBER == 5101).values(
            STATUS="A", REVIEWER="MCHEN", DATE_REVIEWED=dt.datetime(2026, 1, 1)))
    quality = reader.quality("B2611-0001")
    assert quality is not None
    assert (quality.sample_number, quality.reviewer) == (5101, "MCHEN")
    assert quality.changed_on == LATER


def test_the_newest_authorised_release_sample_counts(lims: Engine) -> None:
    reader = LimsReader(lims)
    with lims.begin() as conn:
        copy_sample(conn, 5002, 5102, TEXT_ID="B2611-0002-02", DATE_REVIEWED=LATER,
                    CHANGED_ON=LATER)
        set_result(conn, 5102, "WATER", ENTRY="0.040", FORMATTED_ENTRY="0.040")
        # Reviewed in the same instant, but logged later: the higher number wins.
        copy_sample(conn, 5002, 5103, TEXT_ID="B2611-0002-03", DATE_REVIEWED=LATER,
                    CHANGED_ON=LATER)
        set_result(conn, 5103, "WATER", ENTRY="0.041", FORMATTED_ENTRY="0.041")
        # A newer sample that is not authorised does not count.
        copy_sample(conn, 5002, 5104, TEXT_ID="B2611-0002-04", STATUS="C",
                    DATE_REVIEWED=LATER + dt.timedelta(days=1), CHANGED_ON=LATER)
    quality = reader.quality("B2611-0002")
    assert quality is not None and quality.sample_number == 5103
    water = [r for r in quality.results if r.component == "WATER"]
    assert [(r.value, r.replicate) for r in water] == [("0.041", 2)]

    with lims.begin() as conn:  # 5103 rejected: back to 5102
        conn.execute(update(sample).where(sample.c.SAMPLE_NUMBER == 5103).values(STATUS="R"))
    quality = reader.quality("B2611-0002")
    assert quality is not None and quality.sample_number == 5102


def test_only_authorised_tests_and_results_count(lims: Engine) -> None:
    reader = LimsReader(lims)
    with lims.begin() as conn:
        number = release_samples(conn, "B2611-0002")[0]
        # The water retest's result is rejected: the first replicate is what remains.
        set_result(conn, number, "WATER", STATUS="R")
        # The density test goes back to complete (being corrected): its result drops out.
        conn.execute(update(test).where(test.c.SAMPLE_NUMBER == number,
                                        test.c.ANALYSIS == "DENSITY").values(STATUS="C"))
    quality = reader.quality("B2611-0002")
    assert quality is not None
    components = [r.component for r in quality.results]
    assert "DENSITY" not in components and len(components) == 7
    water = next(r for r in quality.results if r.component == "WATER")
    assert (water.value, water.replicate, water.lims_in_spec) == ("0.061", 1, False)
    assert verdict(water) == "fail" and disagreements(quality) == [
        "sample 5002 (B2611-0002-01): the results fail overall, but the LIMS has it in spec"]


def test_a_result_without_limits_is_reported_last(lims: Engine) -> None:
    reader = LimsReader(lims)
    with lims.begin() as conn:
        purity = conn.execute(select(test.c.TEST_NUMBER).where(
            test.c.SAMPLE_NUMBER == 5001, test.c.ANALYSIS == "PURITY_GC")).scalar_one()
        conn.execute(result.insert().values(
            RESULT_NUMBER=900001, SAMPLE_NUMBER=5001, TEST_NUMBER=purity,
            ANALYSIS="PURITY_GC", NAME="METHANOL", REPORTED_NAME="Methanol",
            REPLICATE_COUNT=1, ENTRY="0.0042", FORMATTED_ENTRY="0.004", UNITS="% (m/m)",
            STATUS="A", IN_SPEC=None, REPORTABLE="T", RESULT_TYPE="N", DATE_ENTRY=LATER,
            ENTERED_BY="JLI", CHANGED_ON=LATER))
    quality = reader.quality("B2611-0001")
    assert quality is not None
    last = quality.results[-1]
    assert (last.component, last.name_en, last.name_zh, last.units, last.method) == (
        "METHANOL", "Methanol", None, "% (m/m)", "GB/T 9722-2006")
    assert (last.value, last.numeric) == ("0.004", D("0.004"))  # the formatted entry is reported
    assert (last.min_value, last.max_value, last.text_value) == (None, None, None)
    assert last.order == 81 and [r.order for r in quality.results] == sorted(
        r.order for r in quality.results)
    assert verdict(last) == "n/a" and disagreements(quality) == []
    assert quality.changed_on == LATER
