"""Render a certificate of analysis as HTML: a base template composed of section partials.

This step knows nothing of PDF: :mod:`certificates.render` lays the HTML out with its own
stylesheet. Autoescaping is on for every template, and the data is only ever passed in as
values, never compiled, so text from the LIMS (``{{ 7*7 }}``, ``<script>``, ``<img src=…>``)
prints literally and cannot add markup, let alone make the renderer fetch something.

Verdicts: pass the hub's verdicts per result (``verdicts``, keyed by the result's index in
``data.quality.results``), or leave them out and a simple local rule judges each line: a
number inclusive of its limits passes, a text equal to the expected text ignoring case and
surrounding blanks passes, a line without limits is "n/a", anything else fails.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from certificates.data import CertificateData, ResultLine, Verdict
from certificates.labels import LABELS, Language, check_language
from certificates.qr import qr_png_data_uri
from certificates.verdict import verdict

__all__ = [
    "DEMO_LETTERHEAD",
    "Letterhead",
    "ResultRow",
    "format_limits",
    "local_verdict",
    "overall_verdict",
    "render_html",
    "result_rows",
]

TEMPLATES = Path(__file__).parent / "templates"
#: URL of the logo, served by the renderer's URL fetcher from ``certificates/assets``.
LOGO_URL = "coa-asset:logo.svg"

_MISSING = "\u2014"  # em dash: a value the certificate has no data for
_EN_DASH = "\u2013"
_VERDICTS: frozenset[str] = frozenset(("pass", "fail", "n/a"))


@dataclass(frozen=True)
class Letterhead:
    """The issuing company as printed in the header (and the PDF's author)."""

    name_en: str
    name_zh: str
    address_en: tuple[str, ...] = ()
    address_zh: tuple[str, ...] = ()
    contact: str | None = None


DEMO_LETTERHEAD = Letterhead(
    name_en="Example Solvents Co., Ltd.",
    name_zh="示例溶剂有限公司",
    address_en=("1 Chemical Industry Road, Jinshan District", "Shanghai 201507, China"),
    address_zh=("中国上海市金山区化工路1号", "邮编 201507"),
    contact="qa@solvents.example.com  ·  +86 21 5555 0100",
)


@dataclass(frozen=True)
class ResultRow:
    """One line of the results table, as printed."""

    index: int
    name: Markup
    method: str
    units: str
    limits: str
    value: str
    verdict: Verdict


def render_html(
    data: CertificateData,
    lang: str = "en",
    *,
    verdicts: Mapping[int, str] | None = None,
    letterhead: Letterhead = DEMO_LETTERHEAD,
) -> str:
    """The certificate as an HTML document (without its stylesheet, which the PDF step adds).

    Raises ValueError for an unknown ``lang`` or ``verdicts`` that do not fit the results.
    """
    language = check_language(lang)
    rows = result_rows(data, verdicts, language)
    quality = data.quality
    context: dict[str, Any] = {
        "lang": language,
        "html_lang": "zh-Hans" if language == "zh" else "en",
        "L": functools.partial(_label, language),
        "text": functools.partial(_label_text, language),
        "en": _english,
        "zh": _chinese,
        "quantity": _quantity,
        "date": _date,
        "datetime": _datetime,
        "missing": _MISSING,
        "quality": quality,
        "recipient": data.recipient,
        "issue": data.issue,
        "letterhead": letterhead,
        "company": letterhead.name_zh if language == "zh" else letterhead.name_en,
        "company_alt": letterhead.name_en if language == "zh" else None,
        "address": letterhead.address_zh if language == "zh" else letterhead.address_en,
        "product_name": _product_name(data, language),
        "product_name_alt": _product_name_alt(data, language),
        "rows": rows,
        "overall": overall_verdict(row.verdict for row in rows),
        "qr_src": qr_png_data_uri(data.issue.verify_url),
        "verify_link": _is_web_link(data.issue.verify_url),
        "verify_text": _link_text(data.issue.verify_url),
        "logo_url": LOGO_URL,
        "pdf_title": _pdf_title(data, language),
    }
    return _environment().get_template("base.html").render(context)


def result_rows(
    data: CertificateData, verdicts: Mapping[int, str] | None = None, lang: str = "en"
) -> list[ResultRow]:
    """The results table in print order, each with its verdict (given or judged locally)."""
    language = check_language(lang)
    results = data.quality.results
    if verdicts is not None:
        if set(verdicts) != set(range(len(results))):
            raise ValueError(
                f"verdicts must have exactly the keys 0..{len(results) - 1}, one per result; "
                f"got {sorted(verdicts)}"
            )
        unknown = {value for value in verdicts.values() if value not in _VERDICTS}
        if unknown:
            raise ValueError(f"unknown verdicts {sorted(unknown)}: use pass, fail or n/a")
    rows: list[ResultRow] = []
    for index, line in sorted(enumerate(results), key=lambda item: item[1].order):
        judged = verdicts[index] if verdicts is not None else local_verdict(line)
        rows.append(
            ResultRow(
                index=index,
                name=_result_name(line, language),
                method=line.method or _MISSING,
                units=line.units or "",
                limits=format_limits(line),
                value=line.value,
                verdict=_as_verdict(judged),
            )
        )
    return rows


#: The rule used when no verdicts are passed in: the hub's own (certificates.verdict).
local_verdict = verdict


def overall_verdict(verdicts: Iterable[str]) -> Verdict:
    """All lines together: "fail" if any fails, else "pass" if any passes, else "n/a"."""
    seen = set(verdicts)
    if "fail" in seen:
        return "fail"
    return "pass" if "pass" in seen else "n/a"


def format_limits(line: ResultLine) -> str:
    """The limits as printed: "Clear", "0.897 \u2013 0.902", "≤ 0.05", "≥ 99.90", or a dash."""
    if line.text_value is not None:
        return line.text_value
    low, high = line.min_value, line.max_value
    if low is not None and high is not None:
        return f"{_decimal(low)} {_EN_DASH} {_decimal(high)}"
    if high is not None:
        return f"\u2264 {_decimal(high)}"
    if low is not None:
        return f"\u2265 {_decimal(low)}"
    return _MISSING


@functools.cache
def _environment() -> jinja2.Environment:
    """The template environment, built once: templates are parsed on first use and cached."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def _label(lang: Language, key: str) -> Markup:
    """A label as markup: English, or Chinese with the English beside it."""
    english, chinese = LABELS[key]
    if lang == "en":
        return escape(english)
    return Markup('<span class="zh">{}</span><span class="en">{}</span>').format(chinese, english)


def _label_text(lang: Language, key: str) -> str:
    """A label as plain text on one line, for the PDF title and similar."""
    english, chinese = LABELS[key]
    return english if lang == "en" else f"{chinese} {english}"


def _english(key: str) -> str:
    return LABELS[key][0]


def _chinese(key: str) -> str:
    return LABELS[key][1]


def _result_name(line: ResultLine, lang: Language) -> Markup:
    if lang == "zh" and line.name_zh:
        return Markup('<span class="zh">{}</span><span class="en">{}</span>').format(
            line.name_zh, line.name_en
        )
    return escape(line.name_en)


def _product_name(data: CertificateData, lang: Language) -> str:
    quality = data.quality
    english = quality.product_name_en or quality.product
    if lang == "zh" and quality.product_name_zh:
        return quality.product_name_zh
    return english


def _product_name_alt(data: CertificateData, lang: Language) -> str | None:
    """The English product name printed under the Chinese one on a Chinese certificate."""
    quality = data.quality
    if lang == "zh" and quality.product_name_zh:
        return quality.product_name_en or quality.product
    return None


def _pdf_title(data: CertificateData, lang: Language) -> str:
    number, batch = data.issue.number, data.quality.batch_number
    english = data.quality.product_name_en or data.quality.product
    title = f"Certificate of Analysis {number}: {english}, batch {batch}"
    if lang == "zh":
        chinese = data.quality.product_name_zh or english
        return f"质量检验报告单 {number}：{chinese}，批号 {batch} / {title}"  # noqa: RUF001
    return title


def _as_verdict(value: str) -> Verdict:
    if value == "pass":
        return "pass"
    if value == "fail":
        return "fail"
    return "n/a"


def _decimal(value: Decimal | None) -> str:
    """A Decimal as written, without an exponent: Decimal("1E+1") prints "10"."""
    return _MISSING if value is None else format(value, "f")


def _quantity(value: Decimal) -> str:
    """A quantity with thousands separators and no trailing zeros: "20,000", "12.5"."""
    text = format(value, ",f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _date(value: dt.date | None) -> str:
    return _MISSING if value is None else value.isoformat()


def _datetime(value: dt.datetime | None) -> str:
    """Minutes, with the UTC offset when the time has one ("2026-11-20 09:30 UTC+08:00")."""
    if value is None:
        return _MISSING
    text = value.strftime("%Y-%m-%d %H:%M")
    offset = value.utcoffset()
    if offset is None:
        return text
    if not offset:
        return f"{text} UTC"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{text} UTC{sign}{hours:02d}:{minutes:02d}"


def _link_text(url: str) -> str:
    """A web link as printed: without its scheme, which only wastes a line on paper."""
    for scheme in ("https://", "http://"):
        if url.lower().startswith(scheme):
            return url[len(scheme) :]
    return url


def _is_web_link(url: str) -> bool:
    """Only http(s) links become clickable; anything else is printed as text."""
    return url.lower().startswith(("https://", "http://"))
