"""What a certificate of analysis says, as data: the snapshot stored with every issued PDF.

The LIMS reader (:mod:`connectors.lims.reader`) fills :class:`BatchQuality` from the LIMS;
the hub adds the customer and delivery (:class:`Recipient`) and the issue details
(:class:`Issue`). The renderer only ever sees a :class:`CertificateData`, so a stored snapshot
renders the same PDF again, and the JSON attachment embedded in the PDF is this model's dump.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BatchQuality",
    "CertificateData",
    "Issue",
    "Recipient",
    "ResultLine",
    "Verdict",
]

Verdict = Literal["pass", "fail", "n/a"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ResultLine(_Frozen):
    """One reportable result with the limits it is judged against."""

    analysis: str = Field(..., description="LIMS ANALYSIS name")
    component: str = Field(..., description="RESULT.NAME, the measured component")
    name_en: str = Field(..., description="Reported name (PRODUCT_SPEC or RESULT)")
    name_zh: str | None = None
    method: str | None = Field(None, description="ANALYSIS.X_METHOD, e.g. ASTM D1209")
    units: str | None = None
    result_type: Literal["N", "T"] = "N"
    value: str = Field(..., description="FORMATTED_ENTRY (or ENTRY), as reported")
    numeric: Decimal | None = Field(None, description="The value as a number, when numeric")
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    text_value: str | None = Field(None, description="Expected text, e.g. 'Clear'")
    lims_in_spec: bool | None = Field(None, description="RESULT.IN_SPEC as the LIMS judged it")
    replicate: int = 1
    entered_at: dt.datetime | None = None
    entered_by: str | None = None
    order: int = Field(0, description="Print order (PRODUCT_SPEC.ORDER_NUMBER)")


class BatchQuality(_Frozen):
    """Everything the LIMS says about one batch's release: lot, product, sample, results."""

    batch_number: str = Field(..., description="LOT.LOT_NAME")
    lot_number: int
    product: str
    product_version: int
    grade: str | None = None
    product_name_en: str | None = None
    product_name_zh: str | None = None
    manufacture_date: dt.date | None = None
    expiry_date: dt.date | None = None
    sample_number: int
    sample_text_id: str | None = None
    sampled_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    reviewed_at: dt.datetime | None = Field(None, description="SAMPLE.DATE_REVIEWED")
    reviewer: str | None = Field(None, description="SAMPLE.REVIEWER, who authorised")
    lims_in_spec: bool | None = Field(None, description="SAMPLE.IN_SPEC")
    results: tuple[ResultLine, ...] = ()
    #: The newest CHANGED_ON among the lot, sample, tests and results read: a later change
    #: means the certificate data may have changed.
    changed_on: dt.datetime | None = None


class Recipient(_Frozen):
    """The customer, order and delivery a batch went out on (from the ERP's IBT1/ODLN)."""

    customer_code: str
    customer_name: str | None = None
    order_number: str | None = Field(None, description="CRM order number or ERP DocNum")
    delivery_number: str | None = Field(None, description="ERP delivery DocNum")
    delivery_date: dt.date | None = None
    quantity: Decimal | None = None
    uom: str | None = None


class Issue(_Frozen):
    """Who issued which certificate, when, and where it can be verified."""

    number: str = Field(..., description="Unique certificate number, e.g. COA-B2611-0001-C00042-1")
    version: int = Field(1, ge=1)
    issued_at: dt.datetime
    verify_url: str = Field(..., description="Public verification link, also in the QR code")
    issuer: str = "Quality Assurance"
    supersedes: str | None = Field(None, description="Number of the version this replaces")


class CertificateData(_Frozen):
    """A whole certificate: what the renderer needs, and the JSON embedded in the PDF."""

    schema_version: Literal[1] = 1
    quality: BatchQuality
    recipient: Recipient | None = None
    issue: Issue
