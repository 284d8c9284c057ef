"""The fixed wording of a certificate, in English and Chinese.

Every label is a pair (English, Chinese). An English certificate prints the English text; a
Chinese certificate prints the Chinese text with the English beside it, so a reader of either
language can follow it. Chinese text uses full-width punctuation, hence the noqa marks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

__all__ = ["LABELS", "LANGUAGES", "Language", "check_language"]

Language = Literal["en", "zh"]
LANGUAGES: tuple[Language, ...] = get_args(Language)

LABELS: Mapping[str, tuple[str, str]] = {
    "title": ("Certificate of Analysis", "质量检验报告单"),
    "certificate_number": ("Certificate No.", "证书编号"),
    "version": ("Version", "版本"),
    "issued_at": ("Issue date", "签发日期"),
    "supersedes": ("Supersedes", "替代"),
    "product_section": ("Product and batch", "产品与批次"),
    "product": ("Product", "产品名称"),
    "product_code": ("Product code", "产品代码"),
    "grade": ("Grade", "等级"),
    "batch": ("Batch No.", "批号"),
    "manufacture_date": ("Manufacture date", "生产日期"),
    "expiry_date": ("Expiry date", "有效期至"),
    "sample": ("Sample", "样品编号"),
    "sampled_at": ("Sampled", "取样时间"),
    "customer_section": ("Customer and delivery", "客户与交付"),
    "customer": ("Customer", "客户名称"),
    "customer_code": ("Customer code", "客户代码"),
    "order_number": ("Order No.", "订单号"),
    "delivery_number": ("Delivery No.", "交货单号"),
    "delivery_date": ("Delivery date", "交货日期"),
    "quantity": ("Quantity", "数量"),
    "no_recipient": ("Not issued for a particular delivery.", "本证书不针对特定交货。"),
    "results_section": ("Test results", "检验结果"),
    "parameter": ("Parameter", "检验项目"),
    "method": ("Method", "检验方法"),
    "units": ("Unit", "单位"),
    "limits": ("Specification", "标准要求"),
    "result": ("Result", "检测值"),
    "verdict": ("Verdict", "判定"),
    "verdict_pass": ("Pass", "合格"),
    "verdict_fail": ("Fail", "不合格"),
    "verdict_na": ("n/a", "不判定"),
    "no_results": ("No reportable results.", "无可报告的检验结果。"),
    "conformity_section": ("Conclusion", "检验结论"),
    "conformity_pass": (
        "The batch conforms to the specification.",
        "本批产品经检验，符合标准要求。",  # noqa: RUF001
    ),
    "conformity_fail": (
        "The batch does not conform to the specification.",
        "本批产品经检验，不符合标准要求。",  # noqa: RUF001
    ),
    "conformity_na": (
        "No result has specification limits: conformity is not assessed.",
        "检验项目均无标准限值，不作符合性判定。",  # noqa: RUF001
    ),
    "authorisation_section": ("Authorisation", "审核与签发"),
    "reviewer": ("Reviewed and authorised by", "审核人"),
    "reviewed_at": ("Review date", "审核时间"),
    "issuer": ("Issued by", "签发部门"),
    "verify": ("Verify this certificate", "验证本证书"),
    "electronic": (
        "Issued electronically; valid without signature.",
        "本证书以电子方式签发，无需签字即有效。",  # noqa: RUF001
    ),
}


def check_language(lang: str) -> Language:
    """``lang`` as a :data:`Language`; raises ValueError for any other value."""
    for known in LANGUAGES:
        if lang == known:
            return known
    raise ValueError(f"unsupported certificate language {lang!r}: use one of {LANGUAGES}")
