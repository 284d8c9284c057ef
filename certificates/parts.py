"""The certificate service's two daemon parts, so that a customer's first download is a
stored file and a re-test in the LIMS reaches the customer as a new version.

- ``certificates`` (:class:`CertificateApplier`) consumes ``erp.delivery.posted``: it records
  who got which batch (entitlements) and issues the certificate of each delivered batch whose
  lot is authorised, right away. A lot that is not authorised yet waits for the watcher.
- ``certificate-watcher`` (:class:`CertificateWatcher`) reads the LIMS's changed lots by a
  watermark in the hub's store (``lims.certificates``) and brings their certificates up to
  date: a first version for entitled lots that were just authorised, a new version where
  the certificate data changed after issue (only a real change of content makes one).

What cannot be certified (the hub's verdict disagrees with the LIMS) is recorded by the
service as a dead letter in ``certificates:blocked`` and in the journal; neither part stops.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

from certificates.entitlements import delivery_rows
from certificates.service import CertificateService, NotAvailable, render
from certificates.worker import RenderProcess
from connectors.lims.reader import LotChange
from hub.bus.base import backoff
from hub.errors import HubError, PermanentError
from hub.model.messages import DeliveryPosted, Message
from hub.parts import Part
from hub.runtime import Runtime, SystemName
from hub.store.engine import READ_ONLY
from hub.store.types import utcnow
from hub.sync.parts import Applier
from hub.watermark import Change, Watermark

__all__ = ["CertificateApplier", "CertificateWatcher", "service_for"]

log = logging.getLogger(__name__)

#: The first poll of the LIMS reads from here (LIMS stamps are naive UTC).
_EPOCH = dt.datetime(1970, 1, 1)
_TICK = dt.timedelta(microseconds=1)


def service_for(runtime: Runtime) -> CertificateService:
    """The certificate service on the runtime's store and systems. It renders in the
    runtime's one worker process (:mod:`certificates.worker`), shared by the parts and the
    HTTP service, unless ``HUB_CERTIFICATE_RENDERS_PER_PROCESS`` is 0."""
    renders = runtime.settings.certificate_renders_per_process
    return CertificateService(
        runtime.store, lims=lambda: runtime.system("lims"), erp=lambda: runtime.system("erp"),
        public_base=runtime.settings.public_base,
        renderer=runtime.shared("certificate-renderer", lambda: RenderProcess(renders))
        if renders else render,
    )


class CertificateApplier(Applier):
    """Records entitlements from ERP deliveries and issues their certificates ahead of
    demand."""

    name = "certificates"
    consumes: ClassVar[tuple[str, ...]] = ("erp.delivery.posted",)
    needs: ClassVar[tuple[SystemName, ...]] = ("erp", "lims")

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.service = service_for(runtime)
        self.issued = 0

    def apply(self, message: Message, *, final: bool) -> None:
        """Entitlements first (idempotent), then certificates; the message is marked done
        last, so an unreachable LIMS or ERP retries the whole of it. A lot that is not
        authorised, or whose data cannot be certified, does not fail the message."""
        if isinstance(message, DeliveryPosted):
            delivery = message.delivery
            with self.runtime.system("erp").connect() as erp:
                rows = delivery_rows(erp.execution_options(**{READ_ONLY: True}), delivery,
                                     message.correlation_key)
                erp.rollback()
            self.service.record_entitlements(rows)
            for batch in sorted({row["batch_number"] for row in rows}):
                self._issue(batch, delivery.customer)
        with self.runtime.store.begin() as hub:
            self.done(hub, message)

    def _issue(self, batch: str, customer: str) -> None:
        try:
            outcome = self.service.ensure(batch, customer)
        except NotAvailable as exc:
            log.info("certificate of %s for %s not issued yet: %s", batch, customer,
                     exc.reason)
            return
        except LookupError:  # pragma: no cover - recorded just before
            return
        except PermanentError as exc:
            # Rendering failed: recorded; the message itself was applied.
            log.error("certificate of %s for %s failed: %s", batch, customer, exc)
            return
        if outcome.issued:
            self.issued += 1

    def detail(self) -> dict[str, Any]:
        return {**super().detail(), "issued": self.issued}


class CertificateWatcher(Part):
    """Polls the LIMS's changed lots and issues first and new certificate versions."""

    name = "certificate-watcher"
    page = 200

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.service = service_for(runtime)
        self.watermark = Watermark("lims.certificates")
        self.watermark.tune(overlap=runtime.settings.watermark_overlap,
                            sweep=runtime.settings.watermark_sweep)
        self.tally: dict[str, int] = {"issued": 0, "blocked": 0}

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                taken = self.poll()
                self.last_poll_at = utcnow()
                failures = 0
            except HubError as exc:
                failures += 1
                log.warning("%s poll failed: %s", self.name, exc)
                stop.wait(backoff(failures, cap=30.0))
                continue
            if taken < self.page:
                stop.wait(self.runtime.settings.poll_interval)

    def poll(self) -> int:
        """Take one page of changed lots and bring their certificates up to date; returns
        how many lots were read. The watermark moves only after the certificates are
        stored, so a crash re-reads the page (issuing is idempotent by content)."""
        reader = self.service.reader()

        def fetch(lower: dt.datetime | None, after: tuple[dt.datetime, str] | None,
                  limit: int) -> Sequence[Change[LotChange]]:
            if after is None:
                lots = reader.changed_since((lower or _EPOCH) - _TICK, limit)
            else:
                lots = reader.changed_since(after[0], limit, after_lot=int(after[1]))
            return [Change(key=f"{lot.lot_number:012d}",
                           version=lot.changed_on.isoformat(timespec="microseconds"),
                           changed_at=lot.changed_on, row=lot) for lot in lots]

        store = self.runtime.store
        with store.reading("hub store: read the LIMS watermark") as conn:
            changes: list[Change[LotChange]] = self.watermark.poll(conn, fetch, limit=self.page)
        if not changes:
            return 0
        tally = self.service.refresh([change.row.batch_number for change in changes])
        self.tally["issued"] += tally.issued
        self.tally["blocked"] += tally.blocked
        with store.begin() as hub:
            self.watermark.commit(hub, changes)
        return len(changes)

    def detail(self) -> dict[str, Any]:
        return dict(self.tally)
