"""What the certificate service hands out: stored certificate versions, the outcome of an
issue or a bulk run, and why a certificate is not available."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from certificates.data import BatchQuality
from hub.errors import PermanentError
from hub.store.tables import certificate

__all__ = [
    "INFO_COLUMNS",
    "Blocked",
    "CertificateInfo",
    "Ensured",
    "NotAvailable",
    "Tally",
    "certificate_number",
    "info_of",
    "quality_hash",
]


class NotAvailable(PermanentError):
    """The caller may have the batch's certificate, but it cannot be issued (yet): the lot
    is not authorised, the LIMS has no such lot, or the data cannot be certified."""

    code = "certificate_not_available"

    def __init__(self, batch: str, reason: str) -> None:
        super().__init__(f"certificate of batch {batch} not available: {reason}")
        self.batch = batch
        self.reason = reason


class Blocked(NotAvailable):
    """The LIMS data cannot be certified as it is (see :func:`blockers`)."""

    code = "certificate_blocked"


@dataclass(frozen=True)
class CertificateInfo:
    """One stored certificate version, without its PDF."""

    id: int
    number: str
    batch_number: str
    customer: str
    version: int
    issued_at: dt.datetime
    sha256: str
    verify_token: str
    quality_hash: str
    superseded_by: int | None
    superseded_at: dt.datetime | None

    @property
    def label(self) -> str:
        """The number with its version, as people quote it: ``COA-B2611-0001-C00042 v2``."""
        return f"{self.number} v{self.version}"


@dataclass(frozen=True)
class Ensured:
    """What :meth:`CertificateService.ensure` found or did."""

    certificate: CertificateInfo
    issued: bool = False
    #: Why newer LIMS data could not be certified (the certificate returned is older).
    held: str | None = None


@dataclass
class Tally:
    """Counts of a bulk run, and the reasons of what could not be issued."""

    issued: int = 0
    current: int = 0
    waiting: int = 0
    blocked: int = 0
    failed: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.issued += other.issued
        self.current += other.current
        self.waiting += other.waiting
        self.blocked += other.blocked
        self.failed += other.failed
        self.reasons += other.reasons


def certificate_number(batch: str, customer: str) -> str:
    """The certificate number of a batch for a customer, the same for every version."""
    return f"COA-{batch}-{customer}"


def quality_hash(quality: BatchQuality) -> str:
    """A digest of what the certificate says about the batch: everything but the CHANGED_ON
    stamp, so touching a row without changing it issues no new version."""
    payload = quality.model_dump_json(exclude={"changed_on"})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


#: The columns :func:`info_of` reads.
INFO_COLUMNS = (
    certificate.c.id, certificate.c.number, certificate.c.batch_number, certificate.c.customer,
    certificate.c.version, certificate.c.issued_at, certificate.c.sha256,
    certificate.c.verify_token, certificate.c.quality_hash, certificate.c.superseded_by,
    certificate.c.superseded_at,
)


def info_of(row: Any) -> CertificateInfo:
    """A ``certificate`` row of :data:`INFO_COLUMNS` as a :class:`CertificateInfo`."""
    return CertificateInfo(
        id=int(row.id), number=row.number, batch_number=row.batch_number,
        customer=row.customer, version=int(row.version), issued_at=row.issued_at,
        sha256=row.sha256, verify_token=row.verify_token, quality_hash=row.quality_hash,
        superseded_by=row.superseded_by, superseded_at=row.superseded_at,
    )
