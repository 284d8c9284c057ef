"""The HTML step: limits, verdicts, labels and escaping, without laying out a PDF."""

from __future__ import annotations

from decimal import Decimal

import pytest

from certificates.html import (
    format_limits,
    local_verdict,
    overall_verdict,
    render_html,
    result_rows,
)
from certificates.samples import sample_certificate, sample_results
from tests.certificates.kit import HOSTILE_TEXTS, failing_certificate, hostile_certificate


def _line(component: str):  # type: ignore[no-untyped-def]
    return next(line for line in sample_results() if line.component == component)


def test_limits_are_printed_as_on_a_specification() -> None:
    assert format_limits(_line("APPEARANCE")) == "Clear"
    assert format_limits(_line("WATER")) == "\u2264 0.05"
    assert format_limits(_line("PURITY")) == "\u2265 99.90"
    assert format_limits(_line("DENSITY")) == "0.897 \u2013 0.902"
    no_limits = _line("WATER").model_copy(update={"max_value": None})
    assert format_limits(no_limits) == "\u2014"
    exponent = _line("COLOUR").model_copy(update={"max_value": Decimal("1E+1")})
    assert format_limits(exponent) == "\u2264 10"


@pytest.mark.parametrize(
    ("component", "update", "expected"),
    [
        ("WATER", {}, "pass"),
        ("WATER", {"value": "0.05", "numeric": Decimal("0.05")}, "pass"),  # inclusive
        ("WATER", {"value": "0.051", "numeric": Decimal("0.051")}, "fail"),
        ("WATER", {"value": "0.04", "numeric": None}, "pass"),  # judged on the text
        ("WATER", {"value": "n.d.", "numeric": None}, "fail"),
        ("PURITY", {"value": "99.89", "numeric": Decimal("99.89")}, "fail"),
        ("DENSITY", {"value": "0.897", "numeric": Decimal("0.897")}, "pass"),
        ("DENSITY", {"value": "0.9021", "numeric": Decimal("0.9021")}, "fail"),
        ("APPEARANCE", {"value": "  clear "}, "pass"),
        ("APPEARANCE", {"value": "Hazy"}, "fail"),
        ("WATER", {"max_value": None}, "n/a"),
    ],
)
def test_local_verdict_rule(component: str, update: dict[str, object], expected: str) -> None:
    assert local_verdict(_line(component).model_copy(update=update)) == expected


def test_overall_verdict() -> None:
    assert overall_verdict(["pass", "n/a", "pass"]) == "pass"
    assert overall_verdict(["pass", "fail"]) == "fail"
    assert overall_verdict(["n/a"]) == "n/a"
    assert overall_verdict([]) == "n/a"


def test_given_verdicts_replace_the_local_rule() -> None:
    data = failing_certificate()
    judged = [row.verdict for row in result_rows(data)]
    assert judged.count("fail") == 2
    given = {index: "n/a" for index in range(len(data.quality.results))}
    assert {row.verdict for row in result_rows(data, given)} == {"n/a"}


@pytest.mark.parametrize(
    "verdicts",
    [{0: "pass"}, {index: "pass" for index in range(9)}, {index: "ok" for index in range(8)}],
)
def test_verdicts_must_fit_the_results(verdicts: dict[int, str]) -> None:
    with pytest.raises(ValueError, match="verdicts"):
        render_html(sample_certificate(), verdicts=verdicts)


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        render_html(sample_certificate(), "de")


def test_rows_follow_the_print_order() -> None:
    data = sample_certificate()
    reversed_lines = tuple(
        line.model_copy(update={"order": -line.order}) for line in data.quality.results
    )
    rows = result_rows(sample_certificate(results=reversed_lines))
    assert [row.index for row in rows] == list(reversed(range(len(reversed_lines))))


def test_english_and_chinese_labels() -> None:
    data = sample_certificate()
    english = render_html(data, "en")
    assert "Certificate of Analysis" in english and "质量检验报告单" not in english
    assert "Ethyl acetate 99.9%" in english and "乙酸乙酯" not in english
    chinese = render_html(data, "zh")
    assert '<html lang="zh-Hans">' in chinese
    assert "质量检验报告单" in chinese and "Certificate of Analysis" in chinese
    assert "乙酸乙酯" in chinese and "Ethyl acetate 99.9%" in chinese
    assert "批号" in chinese and "Batch No." in chinese


def test_lims_text_is_escaped_never_markup() -> None:
    html = render_html(hostile_certificate(8000), "en")
    template, *markup = HOSTILE_TEXTS
    assert f">{template}</td>" in html  # printed as it is, never evaluated
    for text in markup:
        assert text not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=&#34;file:///etc/passwd&#34;&gt;" in html
    assert "<script" not in html and "<link" not in html and "<div style" not in html
    # The only elements with a URL are the logo, the QR code and the verification link.
    assert html.count(' src="') == 2 and html.count(' href="') == 1
