"""The traffic of a fault run: sales people submitting orders in the CRM at a steady rate, and
an ERP clerk confirming some of them and promising a date, both riding out outages.

A CRM transaction whose commit fails (PostgreSQL restarting) may or may not have committed; the
submitter looks before it retries, so every order is attempted exactly once and ``submitted``
lists exactly the orders the CRM holds.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from connectors.crm.schema import crm_order, crm_order_line
from connectors.erp.schema import ordr
from hub.demo.backlog import order_rows
from hub.store.types import utcnow

__all__ = ["Clerk", "Submitter"]

log = logging.getLogger("faults.workload")


@dataclass
class Submitter:
    """Inserts ``total`` submitted orders into the CRM, ``chunk`` per transaction, at ``rate``
    orders per second (falling behind, not failing, while the CRM is down)."""

    crm: Engine
    total: int
    rate: float
    chunk: int = 10
    submitted: list[str] = field(default_factory=list)
    retries: int = 0
    finished_at: float | None = None

    def run(self, stop: threading.Event) -> None:
        began = time.monotonic()
        for first in range(0, self.total, self.chunk):
            if stop.is_set():
                return
            pause = began + first / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            count = min(self.chunk, self.total - first)
            header, lines = order_rows(count, first, utcnow())
            while not self._commit(header, lines):
                self.retries += 1
                if stop.wait(0.5):
                    return
            self.submitted.extend(str(h["order_id"]) for h in header)
        self.finished_at = time.monotonic()

    def _commit(self, header: list[dict[str, object]], lines: list[dict[str, object]]) -> bool:
        try:
            with self.crm.connect() as conn:  # did an earlier, unanswered commit land?
                if conn.execute(select(crm_order.c.order_id).where(
                        crm_order.c.order_id == header[0]["order_id"])).first() is not None:
                    return True
            with self.crm.begin() as conn:
                conn.execute(insert(crm_order), header)
                conn.execute(insert(crm_order_line), lines)
            return True
        except SQLAlchemyError as exc:
            log.info("CRM insert failed (will retry): %s", str(exc).splitlines()[0])
            return False


@dataclass
class Clerk:
    """Every ``interval`` seconds confirms a few ERP orders the hub created and promises a date
    for them: changes that must flow back to the CRM."""

    erp: Engine
    share: float = 0.3
    interval: float = 1.0
    confirmed: set[int] = field(default_factory=set)
    seen_up_to: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(6))

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self._step()
            except SQLAlchemyError as exc:
                log.info("ERP change failed (will retry): %s", str(exc).splitlines()[0])

    def _step(self) -> None:
        with self.erp.connect() as conn:
            fresh = [r.DocEntry for r in conn.execute(
                select(ordr.c.DocEntry).where(ordr.c.DocEntry > self.seen_up_to)
                .order_by(ordr.c.DocEntry).limit(2000))]
        if not fresh:
            return
        chosen = [d for d in fresh if self.rng.random() < self.share]
        promised = (utcnow() + dt.timedelta(days=30)).date()
        if chosen:
            with self.erp.begin() as conn:
                conn.execute(update(ordr).where(ordr.c.DocEntry.in_(chosen)).values(
                    Confirmed="Y", DocDueDate=promised, UpdateDate=utcnow(),
                    UserSign2="faults-clerk"))
            self.confirmed.update(chosen)
        self.seen_up_to = fresh[-1]
