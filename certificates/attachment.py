"""The certificate data embedded in every certificate PDF, and reading it back.

Each PDF carries ``certificate.json``, the :class:`~certificates.data.CertificateData` it was
rendered from (``model_dump_json()``), as a PDF/A-3 associated file: a customer's system reads
the numbers from it instead of parsing the page. Reading needs pypdf only, not WeasyPrint.
"""

from __future__ import annotations

import io
import json
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PdfReadError

__all__ = ["ATTACHMENT_NAME", "AttachmentMissing", "attachment_bytes", "attachment_json"]

ATTACHMENT_NAME = "certificate.json"


class AttachmentMissing(ValueError):
    """The PDF is unreadable or carries no ``certificate.json``."""


def attachment_bytes(pdf: bytes, name: str = ATTACHMENT_NAME) -> bytes:
    """The embedded file ``name`` of ``pdf``; raises AttachmentMissing when there is none."""
    try:
        attachments = PdfReader(io.BytesIO(pdf)).attachments
        contents = attachments.get(name)
    except (PdfReadError, ValueError, KeyError) as exc:
        raise AttachmentMissing(f"cannot read the attachments of this PDF: {exc}") from exc
    if not contents:
        raise AttachmentMissing(f"the PDF has no attachment {name!r}")
    if len(contents) > 1:
        raise AttachmentMissing(f"the PDF has {len(contents)} attachments named {name!r}")
    return contents[0]


def attachment_json(pdf: bytes) -> dict[str, Any]:
    """The certificate data embedded in ``pdf``, as parsed JSON (a dict).

    Validate it with ``CertificateData.model_validate(...)`` to get the model back. Raises
    AttachmentMissing when the PDF carries no such attachment or it is not a JSON object.
    """
    raw = attachment_bytes(pdf)
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise AttachmentMissing(f"{ATTACHMENT_NAME} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise AttachmentMissing(f"{ATTACHMENT_NAME} is not a JSON object")
    return value
