"""Sample certificates built from the demo company's specs, for warm-up, examples and tests.

Every value is fixed (dates included), so a sample renders the same page on every run.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from certificates.data import BatchQuality, CertificateData, Issue, Recipient, ResultLine
from hub.demo.seed_data import ANALYSES, COMPONENT_NAMES, CUSTOMERS, ITEMS, SPECS

__all__ = ["sample_certificate", "sample_results"]

_UTC = dt.UTC
_METHODS = {analysis.name: analysis.method for analysis in ANALYSES}


def sample_results(product: str = "ETAC-99", grade: str = "STANDARD") -> tuple[ResultLine, ...]:
    """One authorised, in-spec result per limit of ``product``/``grade``, at its typical value."""
    lines = []
    entered = dt.datetime(2026, 10, 15, 9, 40, tzinfo=_UTC)
    for position, spec in enumerate(SPECS[(product, grade)], start=1):
        name_en, name_zh = COMPONENT_NAMES[spec.component]
        if spec.text_value is not None:
            value, numeric, result_type = spec.text_value, None, "T"
        else:
            typical = spec.typical if spec.typical is not None else Decimal(0)
            value, numeric, result_type = format(typical, "f"), typical, "N"
        lines.append(
            ResultLine(
                analysis=spec.analysis,
                component=spec.component,
                name_en=name_en,
                name_zh=name_zh,
                method=_METHODS.get(spec.analysis),
                units=spec.units,
                result_type=result_type,
                value=value,
                numeric=numeric,
                min_value=spec.min_value,
                max_value=spec.max_value,
                text_value=spec.text_value,
                lims_in_spec=True,
                entered_at=entered + dt.timedelta(minutes=7 * position),
                entered_by="LWANG",
                order=position * 10,
            )
        )
    return tuple(lines)


def sample_certificate(
    product: str = "ETAC-99",
    grade: str = "STANDARD",
    batch: str = "B2611-0001",
    customer: str = "C00042",
    *,
    results: tuple[ResultLine, ...] | None = None,
    version: int = 1,
) -> CertificateData:
    """A released batch of ``product`` delivered to ``customer``, with its certificate issue."""
    item = next(item for item in ITEMS if item.code == product)
    buyer = next(known for known in CUSTOMERS if known.number == customer)
    quality = BatchQuality(
        batch_number=batch,
        lot_number=1001,
        product=product,
        product_version=1,
        grade=grade,
        product_name_en=item.name,
        product_name_zh=item.name_zh,
        manufacture_date=dt.date(2026, 10, 14),
        expiry_date=dt.date(2028, 10, 13),
        sample_number=50017,
        sample_text_id=f"{batch}-R1",
        sampled_at=dt.datetime(2026, 10, 14, 16, 5, tzinfo=_UTC),
        completed_at=dt.datetime(2026, 10, 15, 11, 20, tzinfo=_UTC),
        reviewed_at=dt.datetime(2026, 10, 15, 14, 32, tzinfo=_UTC),
        reviewer="Li Wang (QC Supervisor)",
        lims_in_spec=True,
        results=sample_results(product, grade) if results is None else results,
        changed_on=dt.datetime(2026, 10, 15, 14, 32, tzinfo=_UTC),
    )
    number = f"COA-{batch}-{customer}-{version}"
    return CertificateData(
        quality=quality,
        recipient=Recipient(
            customer_code=buyer.number,
            customer_name=buyer.name,
            order_number="SO-2026-00417",
            delivery_number="1047",
            delivery_date=dt.date(2026, 10, 20),
            quantity=Decimal("16000.000"),
            uom=item.uom,
        ),
        issue=Issue(
            number=number,
            version=version,
            issued_at=dt.datetime(2026, 10, 20, 8, 15, tzinfo=_UTC),
            verify_url=f"https://coa.solvents.example.com/verify/{number.lower()}",
            supersedes=f"COA-{batch}-{customer}-{version - 1}" if version > 1 else None,
        ),
    )
