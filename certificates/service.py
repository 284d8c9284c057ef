"""The certificate service: issue, version, store and find certificates of analysis.

Rules (the product spec):

- A certificate belongs to a batch and a customer the ERP delivered it to
  (:mod:`certificates.entitlements`); its number is ``COA-{batch}-{customer}``, the same for
  every version, and the version is shown beside it (``COA-B2611-0001-C00042 v2``).
- It is issued when the LIMS has authorised the lot (:class:`~connectors.lims.NotReleased`
  otherwise) and the hub's verdicts agree with the LIMS's IN_SPEC flags and the delivered item
  is the lot's product (:func:`blockers`). Otherwise it is not available, with the reason; a
  disagreement is recorded for operations (journal and a dead letter, once per distinct LIMS
  data) and resolved automatically when a certificate is issued later.
- An issued certificate never changes. When the lot's certificate data changes in the LIMS
  (a re-test, a correction: anything in :class:`~certificates.data.BatchQuality` but its
  CHANGED_ON stamp), the next issue makes a new version and marks the previous one
  superseded by it; every version stays retrievable and verifiable.
- Stored with each version: the data snapshot (``CertificateData`` JSON), the primary PDF
  (English) and its SHA-256, the number, version, issue time, a verification token (random,
  unguessable, not the number) and what superseded it. Other languages are rendered from
  the stored snapshot on first request and stored too: the snapshot is immutable, so this
  is the same certificate, and the listed SHA-256 stays the primary PDF's.
- PDFs live in the hub's store (``certificate_file``), so one database backup holds
  certificates, snapshots and entitlements together.

Every method opens its own transactions; reads use read-only ones. Rendering happens outside
any transaction, so a slow render never holds the store's write lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy import exc as sa_exc

from certificates.blocks import BLOCKED_QUEUE, TARGET, blockers, record_block, resolve_blocks
from certificates.data import BatchQuality, CertificateData, Issue
from certificates.entitlements import (
    Entitlement,
    Entitlements,
    discover,
    plausible_batch,
    recipient,
)
from certificates.labels import LANGUAGES, Language
from certificates.records import (
    INFO_COLUMNS,
    Blocked,
    CertificateInfo,
    Ensured,
    NotAvailable,
    Tally,
    certificate_number,
    info_of,
    quality_hash,
)
from certificates.verdict import verdict
from connectors.lims.reader import LimsReader, NotReleased
from hub.errors import (
    DatabaseUnavailable,
    MappingError,
    PermanentError,
    translate_db_error,
)
from hub.journal import Entry, record
from hub.store.bulk import insert_ignore
from hub.store.db import Store
from hub.store.engine import READ_ONLY
from hub.store.tables import certificate, certificate_file
from hub.store.types import utcnow

__all__ = [
    "BLOCKED_QUEUE",
    "PRIMARY_LANGUAGE",
    "Blocked",
    "CertificateInfo",
    "CertificateService",
    "Ensured",
    "NotAvailable",
    "Tally",
    "blockers",
    "certificate_number",
    "quality_hash",
]

log = logging.getLogger(__name__)

#: The language of the stored primary PDF, whose SHA-256 is listed and verified.
PRIMARY_LANGUAGE: Language = "en"


def _verdicts(data: CertificateData) -> dict[int, str]:
    return {index: verdict(line) for index, line in enumerate(data.quality.results)}


def render(data: CertificateData, lang: str) -> bytes:
    """The PDF of ``data`` in ``lang``, with the hub's verdicts (WeasyPrint loads here)."""
    from certificates.render import render_pdf

    return render_pdf(data, lang, verdicts=_verdicts(data))


class CertificateService:
    """Issues and finds certificates. Thread-safe; holds no state but its engines."""

    def __init__(self, store: Store, *, lims: Callable[[], Engine], erp: Callable[[], Engine],
                 public_base: str,
                 renderer: Callable[[CertificateData, str], bytes] = render) -> None:
        """``renderer`` makes the PDF (:func:`render` in this process by default; the daemon
        passes a :class:`~certificates.worker.RenderProcess`)."""
        self.store = store
        self._render = renderer
        self._lims = lims
        self._erp = erp
        self.public_base = public_base.rstrip("/")

    # -- reading the store -----------------------------------------------------------------

    def find(self, batch: str, customer: str, version: int | None = None
             ) -> CertificateInfo | None:
        """The stored certificate of ``batch`` for ``customer``: version ``version``, or the
        latest; None when there is none."""
        if not plausible_batch(batch):
            return None
        query = select(*INFO_COLUMNS).where(certificate.c.batch_number == batch,
                                        certificate.c.customer == customer)
        if version is not None:
            query = query.where(certificate.c.version == version)
        query = query.order_by(certificate.c.version.desc()).limit(1)
        with self.store.reading("hub store: find a certificate") as conn:
            row = conn.execute(query).first()
        if row is None or row.batch_number != batch or row.customer != customer:
            return None
        return info_of(row)

    def versions(self, batch: str, customer: str | None = None) -> list[CertificateInfo]:
        """Every stored version of the batch's certificates (of one customer if named),
        by customer then version."""
        if not plausible_batch(batch):
            return []
        query = select(*INFO_COLUMNS).where(certificate.c.batch_number == batch)
        if customer is not None:
            query = query.where(certificate.c.customer == customer)
        query = query.order_by(certificate.c.customer, certificate.c.version)
        with self.store.reading("hub store: list certificates") as conn:
            rows = conn.execute(query).all()
        return [info_of(row) for row in rows if row.batch_number == batch
                and (customer is None or row.customer == customer)]

    def by_verify_token(self, token: str) -> CertificateInfo | None:
        """The certificate a verification link names; None for an unknown token."""
        with self.store.reading("hub store: verify a certificate") as conn:
            row = conn.execute(select(*INFO_COLUMNS).where(
                certificate.c.verify_token == token)).first()
        return None if row is None or row.verify_token != token else info_of(row)

    def successor(self, info: CertificateInfo) -> CertificateInfo | None:
        """The version that superseded ``info``; None when it is current."""
        if info.superseded_by is None:
            return None
        return self.find(info.batch_number, info.customer, info.superseded_by)

    def snapshot(self, info: CertificateInfo) -> CertificateData:
        """The data the certificate was issued with."""
        with self.store.reading("hub store: read a certificate's data") as conn:
            text = conn.execute(select(certificate.c.data).where(
                certificate.c.id == info.id)).scalar_one()
        return CertificateData.model_validate_json(text)

    def pdf(self, info: CertificateInfo, lang: str = PRIMARY_LANGUAGE) -> bytes:
        """The certificate's PDF in ``lang``: the stored file, or, for a language not
        rendered yet, a render of the stored snapshot, stored for the next time.

        Raises ValueError for a language the renderer does not have.
        """
        if lang not in LANGUAGES:
            raise ValueError(f"no certificates in language {lang!r}; "
                             f"languages: {', '.join(LANGUAGES)}")
        with self.store.reading("hub store: read a certificate PDF") as conn:
            stored = conn.execute(select(certificate_file.c.pdf).where(
                certificate_file.c.certificate_id == info.id,
                certificate_file.c.lang == lang)).scalar()
        if stored is not None:
            return bytes(stored)
        if lang == PRIMARY_LANGUAGE:
            raise PermanentError(f"certificate {info.label} has lost its primary PDF")
        started = time.monotonic()
        pdf = self._render(self.snapshot(info), lang)
        render_ms = (time.monotonic() - started) * 1000
        with self.store.begin() as conn:
            insert_ignore(conn, certificate_file, [{
                "certificate_id": info.id, "lang": lang, "pdf": pdf,
                "sha256": hashlib.sha256(pdf).hexdigest(), "size": len(pdf),
                "rendered_at": utcnow(), "render_ms": render_ms}])
            stored = conn.execute(select(certificate_file.c.pdf).where(
                certificate_file.c.certificate_id == info.id,
                certificate_file.c.lang == lang)).scalar()
        return bytes(stored) if stored is not None else pdf

    # -- entitlements ----------------------------------------------------------------------

    def customers(self, batch: str, *, ask_erp: bool = True) -> list[str]:
        """The customers the batch was delivered to: as recorded, else (``ask_erp``) as the
        ERP says, recording what it says."""
        if not plausible_batch(batch):
            return []
        with self.store.reading("hub store: read entitlements") as conn:
            found = sorted({e.customer for e in Entitlements.of(conn, batch)})
        if found or not ask_erp:
            return found
        self.learn(batch)
        with self.store.reading("hub store: read entitlements") as conn:
            return sorted({e.customer for e in Entitlements.of(conn, batch)})

    def entitled(self, batch: str, customer: str, *, ask_erp: bool = True) -> bool:
        """Whether the ERP delivered ``batch`` to ``customer`` (see :meth:`customers`)."""
        if not plausible_batch(batch):
            return False
        with self.store.reading("hub store: read entitlements") as conn:
            if Entitlements.of(conn, batch, customer):
                return True
        if not ask_erp:
            return False
        self.learn(batch)
        with self.store.reading("hub store: read entitlements") as conn:
            return bool(Entitlements.of(conn, batch, customer))

    def learn(self, batch: str) -> int:
        """Record the ERP's deliveries of ``batch``; returns how many rows were new."""
        with self._erp().connect() as erp:
            rows = discover(erp.execution_options(**{READ_ONLY: True}), batch)
            erp.rollback()
        if not rows:
            return 0
        with self.store.begin() as conn:
            return Entitlements.record(conn, rows)

    def record_entitlements(self, rows: Sequence[Mapping[str, Any]]) -> int:
        with self.store.begin() as conn:
            return Entitlements.record(conn, rows)

    # -- issuing ---------------------------------------------------------------------------

    def reader(self) -> LimsReader:
        return LimsReader(self._lims())

    def erp_engine(self) -> Engine:
        return self._erp()

    def ensure(self, batch: str, customer: str, *, refresh: bool = False) -> Ensured:
        """The current certificate of ``batch`` for ``customer``, issued first if there is
        none; with ``refresh``, the LIMS is read even when there is one, and a new version
        issued if the certificate data changed.

        Raises LookupError when the batch was not delivered to the customer, NotAvailable
        (or Blocked) when there is no certificate and none can be issued, RetryableError
        when a database is unreachable.
        """
        latest = self.find(batch, customer)
        if latest is not None and not refresh:
            return Ensured(latest)
        if not self.entitled(batch, customer, ask_erp=latest is None):
            raise LookupError(f"batch {batch} was not delivered to customer {customer}")
        with self.store.reading("hub store: read entitlements") as conn:
            delivered = Entitlements.of(conn, batch, customer)
        try:
            quality = self.reader().quality(batch)
        except NotReleased as exc:
            if latest is not None:
                return Ensured(latest, held=exc.reason)
            raise NotAvailable(batch, f"the lot is not authorised: {exc.reason}") from exc
        except MappingError as exc:
            record_block(self.store, batch, f"lims:{exc}", [customer], [str(exc)])
            if latest is not None:
                return Ensured(latest, held=str(exc))
            raise Blocked(batch, str(exc)) from exc
        if quality is None:
            if latest is not None:
                return Ensured(latest, held="the LIMS has no such lot any more")
            raise NotAvailable(batch, "the LIMS has no lot of that batch number")
        try:
            issued = self.issue(quality, customer, delivered, latest)
        except Blocked as exc:
            if latest is not None:
                return Ensured(latest, held=exc.reason)
            raise
        return Ensured(issued, issued=latest is None or issued.id != latest.id)

    def issue(self, quality: BatchQuality, customer: str, delivered: Sequence[Entitlement],
              latest: CertificateInfo | None) -> CertificateInfo:
        """Issue the certificate of ``quality`` for ``customer``, unless ``latest`` (the
        current version) already says the same; returns the current version after.

        Raises Blocked (after recording why) when the data cannot be certified,
        CertificateRenderError when rendering fails, RetryableError when the store is
        unreachable or another process issued the same version at the same moment.
        """
        batch = quality.batch_number
        digest = quality_hash(quality)
        if latest is not None and latest.quality_hash == digest:
            return latest
        if not delivered:
            raise LookupError(f"batch {batch} was not delivered to customer {customer}")
        reasons = blockers(quality, delivered)
        if reasons:
            record_block(self.store, batch, digest, [customer], reasons)
            raise Blocked(batch, "; ".join(reasons))
        version = 1 if latest is None else latest.version + 1
        number = certificate_number(batch, customer)
        token = secrets.token_urlsafe(24)
        now = utcnow()
        data = CertificateData(
            quality=quality,
            recipient=recipient(customer, delivered),
            issue=Issue(
                number=number, version=version, issued_at=now.replace(tzinfo=dt.UTC),
                verify_url=f"{self.public_base}/verify/{token}",
                supersedes=None if latest is None else latest.label,
            ),
        )
        started = time.monotonic()
        pdf = self._render(data, PRIMARY_LANGUAGE)
        render_ms = (time.monotonic() - started) * 1000
        sha = hashlib.sha256(pdf).hexdigest()
        try:
            with self.store.engine.begin() as conn:
                (new_id,) = conn.execute(insert(certificate).values(
                    number=number, batch_number=batch, customer=customer, version=version,
                    issued_at=now, sha256=sha, verify_token=token, quality_hash=digest,
                    lims_changed_on=_naive(quality.changed_on),
                    data=data.model_dump_json(),
                )).inserted_primary_key or (None,)
                conn.execute(insert(certificate_file).values(
                    certificate_id=new_id, lang=PRIMARY_LANGUAGE, pdf=pdf, sha256=sha,
                    size=len(pdf), rendered_at=now, render_ms=render_ms))
                if latest is not None:
                    conn.execute(update(certificate).where(
                        certificate.c.id == latest.id, certificate.c.superseded_by.is_(None),
                    ).values(superseded_by=version, superseded_at=now))
                record(conn, [Entry(
                    event="certificate", type="certificate.issued", correlation_key=batch,
                    source="hub", target=TARGET, outcome="issued",
                    detail={"number": number, "version": version, "customer": customer,
                            "sha256": sha,
                            "supersedes": None if latest is None else latest.version},
                )])
                resolve_blocks(conn, batch, f"{number} v{version}")
        except sa_exc.IntegrityError as exc:
            winner = self.find(batch, customer)
            if winner is not None and winner.quality_hash == digest:
                return winner  # another process issued the same certificate meanwhile
            raise DatabaseUnavailable(
                f"certificate {number} v{version} was issued elsewhere at the same time; "
                "retrying") from exc
        except sa_exc.SQLAlchemyError as exc:
            raise translate_db_error(exc, f"hub store: store certificate {number}") from exc
        log.info("issued certificate %s v%d", number, version,
                 extra={"batch": batch, "customer": customer, "sha256": sha})
        found = self.find(batch, customer, version)
        if found is None:  # pragma: no cover - just committed
            raise DatabaseUnavailable(f"certificate {number} v{version} vanished")
        return found

    def refresh(self, batches: Iterable[str]) -> Tally:
        """Bring the certificates of these batches up to date with the LIMS, for every
        customer entitled to them: a first version for lots just authorised, a new version
        where the certificate data changed. What cannot be certified is recorded."""
        tally = Tally()
        with self.store.reading("hub store: read entitlements") as conn:
            entitled = Entitlements.for_batches(conn, batches)
        if not entitled:
            return tally
        qualities = self._qualities(list(entitled), tally)
        for batch, by_customer in entitled.items():
            quality = qualities.get(batch)
            if quality is None:
                tally.waiting += len(by_customer)
                continue
            for customer, delivered in by_customer.items():
                tally.add(self._issue_counted(quality, customer, delivered))
        return tally

    def issue_missing(self, batch: str, customers: Sequence[str]) -> Tally:
        """Issue the first version of ``batch``'s certificate for each of ``customers`` that
        has none (the bulk command's unit of work)."""
        tally = Tally()
        try:
            quality = self.reader().quality(batch)
        except NotReleased:
            tally.waiting += len(customers)
            return tally
        except MappingError as exc:
            record_block(self.store, batch, f"lims:{exc}", customers, [str(exc)])
            tally.blocked += len(customers)
            tally.reasons.append(f"{batch}: {exc}")
            return tally
        if quality is None:
            tally.waiting += len(customers)
            return tally
        with self.store.reading("hub store: read entitlements") as conn:
            entitled = Entitlements.for_batches(conn, [batch]).get(batch, {})
        for customer in customers:
            if customer in entitled:
                tally.add(self._issue_counted(quality, customer, entitled[customer]))
        return tally

    def _issue_counted(self, quality: BatchQuality, customer: str,
                       delivered: Sequence[Entitlement]) -> Tally:
        tally = Tally()
        batch = quality.batch_number
        try:
            latest = self.find(batch, customer)
            issued = self.issue(quality, customer, delivered, latest)
        except Blocked as exc:
            tally.blocked += 1
            tally.reasons.append(f"{batch} for {customer}: {exc.reason}")
            return tally
        except PermanentError as exc:
            log.error("certificate of %s for %s failed: %s", batch, customer, exc)
            record_block(self.store, batch, f"error:{exc}", [customer], [str(exc)],
                               code=exc.code)
            tally.failed += 1
            tally.reasons.append(f"{batch} for {customer}: {exc}")
            return tally
        if latest is not None and issued.id == latest.id:
            tally.current += 1
        else:
            tally.issued += 1
        return tally

    def _qualities(self, batches: Sequence[str], tally: Tally) -> dict[str, BatchQuality]:
        """The releases of ``batches`` (set-based); when one lot's rows do not make a
        certificate, lot by lot, so that one bad lot does not hold back the others."""
        reader = self.reader()
        try:
            return reader.quality_many(batches)
        except MappingError:
            pass
        found: dict[str, BatchQuality] = {}
        for batch in batches:
            try:
                quality = reader.quality(batch)
            except NotReleased:
                continue
            except MappingError as exc:
                record_block(self.store, batch, f"lims:{exc}", [], [str(exc)])
                tally.reasons.append(f"{batch}: {exc}")
                continue
            if quality is not None:
                found[batch] = quality
        return found

def _naive(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)
