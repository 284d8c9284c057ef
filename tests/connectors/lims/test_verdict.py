"""The hub's verdicts on results (pure functions, no database)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from certificates.data import BatchQuality, ResultLine
from certificates.verdict import as_number, disagreements, limits_text, overall, verdict

D = Decimal


def line(value: str, *, low: str | None = None, high: str | None = None,
         text: str | None = None, in_spec: bool | None = True, **extra: Any) -> ResultLine:
    numeric = text is None and "result_type" not in extra
    values: dict[str, Any] = {
        "analysis": "DENSITY", "component": "DENSITY", "name_en": "Density at 20 °C",
        "value": value, "numeric": as_number(value) if numeric else None,
        "result_type": "N" if numeric else "T",
        "min_value": None if low is None else D(low),
        "max_value": None if high is None else D(high),
        "text_value": text, "lims_in_spec": in_spec, "units": "g/cm³",
    }
    return ResultLine(**{**values, **extra})


def batch(*lines: ResultLine, in_spec: bool | None = True) -> BatchQuality:
    return BatchQuality(batch_number="B1", lot_number=1, product="P", product_version=1,
                        sample_number=7, sample_text_id="B1-01", lims_in_spec=in_spec,
                        results=lines)


@pytest.mark.parametrize(("value", "expected"), [
    ("0.897", "pass"), ("0.902", "pass"), ("0.9000", "pass"),
    ("0.8969", "fail"), ("0.90201", "fail"), ("-1", "fail"),
])
def test_numbers_are_judged_inclusive_of_both_limits(value: str, expected: str) -> None:
    assert verdict(line(value, low="0.897", high="0.902")) == expected


def test_one_sided_limits() -> None:
    assert verdict(line("0.05", high="0.05")) == "pass"
    assert verdict(line("0.0500001", high="0.05")) == "fail"
    assert verdict(line("99.90", low="99.9")) == "pass"
    assert verdict(line("99.89", low="99.9")) == "fail"


def test_text_is_compared_ignoring_case_and_blanks() -> None:
    assert verdict(line(" clear", text="Clear")) == "pass"
    assert verdict(line("CLEAR", text="Clear")) == "pass"
    assert verdict(line("Hazy", text="Clear")) == "fail"
    assert verdict(line("Clear and bright", text="Clear")) == "fail"


def test_without_limits_there_is_no_verdict() -> None:
    assert verdict(line("4.38")) == "n/a"
    assert verdict(line("n.d.")) == "n/a"


def test_a_value_that_is_not_a_number_cannot_pass_numeric_limits() -> None:
    for junk in ("n.d.", "", "<0.001", "0,5", "NaN", "Infinity", "sNaN"):
        assert verdict(line(junk, high="0.05")) == "fail", junk
    # A text-typed result with numeric limits is judged on its value.
    assert verdict(line("0.01", high="0.05", result_type="T")) == "pass"


def test_as_number() -> None:
    assert as_number(" 0.50 ") == D("0.50")
    assert as_number("1e-3") == D("0.001")
    assert [as_number(v) for v in (None, "", "abc", "NaN", "-Infinity", "1.2.3")] == [None] * 6


def test_overall() -> None:
    good, bad, free = line("0.9", low="0.8"), line("0.7", low="0.8"), line("x")
    assert overall([]) == "n/a"
    assert overall([free]) == "n/a"
    assert overall([good, free]) == "pass"
    assert overall([good, bad, free]) == "fail"


def test_limits_text() -> None:
    assert limits_text(line("1", low="0.897", high="0.902")) == "0.897 to 0.902"
    assert limits_text(line("1", high="0.05")) == "max 0.05"
    assert limits_text(line("1", low="99.9")) == "min 99.9"
    assert limits_text(line("Clear", text="Clear")) == "'Clear'"


def test_agreement_is_no_disagreement() -> None:
    quality = batch(line("0.9", low="0.897", high="0.902"), line("Clear", text="Clear"),
                    line("4.38", in_spec=None))
    assert disagreements(quality) == []


def test_each_kind_of_disagreement_is_explained() -> None:
    out = line("0.075", high="0.05", in_spec=True, component="WATER", name_en="Water",
               units="% (m/m)", analysis="WATER_KF")
    flagged_bad = line("0.9", low="0.897", high="0.902", in_spec=False)
    unflagged = line("Clear", text="Clear", in_spec=None, component="APPEARANCE",
                     name_en="Appearance", analysis="APPEARANCE")
    reasons = disagreements(batch(out, flagged_bad, unflagged, in_spec=True))
    assert len(reasons) == 4
    assert reasons[0] == ("Water (WATER_KF/WATER, replicate 1): '0.075' % (m/m) is outside "
                          "max 0.05, but the LIMS has it in spec")
    assert "'0.9' g/cm³ is within 0.897 to 0.902, but the LIMS has it out of spec" in reasons[1]
    assert "Appearance" in reasons[2] and "gives no in-spec flag" in reasons[2]
    assert reasons[3] == ("sample 7 (B1-01): the results fail overall, but the LIMS has it "
                          "in spec")


def test_the_sample_flag_is_checked_too() -> None:
    good = line("0.9", low="0.897", high="0.902")
    assert disagreements(batch(good, in_spec=False)) == [
        "sample 7 (B1-01): the results pass overall, but the LIMS has it out of spec"]
    assert len(disagreements(batch(good, in_spec=None))) == 1
    assert disagreements(batch(line("4.38"), in_spec=None)) == []


def test_a_sample_without_results_has_nothing_to_certify() -> None:
    assert disagreements(batch()) == [
        "sample 7 (B1-01) has no authorised reportable results to certify"]
