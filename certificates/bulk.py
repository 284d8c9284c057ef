"""``hub certificate render-missing``: issue every missing certificate, on every core.

First the ERP's deliveries the hub has not recorded yet become entitlements (deliveries
posted before the hub ran, or not polled yet), read set-based a page at a time. Then every
(batch, customer) entitled to a certificate that has none is issued, a batch per task, in a
pool of worker processes: rendering is CPU-bound and WeasyPrint renders one page at a time
per process. Each worker opens its own store and LIMS connections; issuing is idempotent, so
two runs at once, or a run beside the daemon, issue each certificate once. Workers are
replaced after about ``HUB_CERTIFICATE_RENDERS_PER_PROCESS`` renders each, as the daemon's
render process is (Pango keeps about 18 KB of every render; see certificates/worker.py): the
work goes to one pool after another, each given that many renders per worker, not to a
pool with ``max_tasks_per_child``, which can hang on this Python (CPython gh-115634). A
worker that dies (killed, out of memory) costs the run a new pool, not its results: what was
issued stays issued, and the batches still to go are given to the new pool.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack

from certificates.entitlements import Entitlements, backfill
from certificates.service import CertificateService, Tally
from certificates.standalone import opened
from certificates.worker import submit
from hub.settings import Settings
from hub.store.engine import READ_ONLY

__all__ = ["default_workers", "learn_deliveries", "missing", "render_missing",
           "tasks_per_worker"]

log = logging.getLogger(__name__)

#: Broken pools (a worker died) a run takes before it gives up on workers that keep dying.
POOLS = 3

#: The service of a worker process, opened by :func:`_start_worker`.
_WORKER: list[CertificateService] = []
_WORKER_RESOURCES = ExitStack()


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def learn_deliveries(service: CertificateService) -> int:
    """Record the ERP deliveries the store does not know yet; returns how many rows were
    new."""
    with service.store.reading("hub store: list recorded deliveries") as hub:
        known = Entitlements.known_deliveries(hub)
    added = 0
    with service.erp_engine().connect() as erp:
        for rows in backfill(erp.execution_options(**{READ_ONLY: True}), known):
            added += service.record_entitlements(rows)
        erp.rollback()
    return added


def missing(service: CertificateService) -> dict[str, list[str]]:
    """batch -> the customers entitled to its certificate that have none yet."""
    with service.store.reading("hub store: list missing certificates") as hub:
        return Entitlements.without_certificate(hub)


def _start_worker() -> None:
    _WORKER.append(_WORKER_RESOURCES.enter_context(opened(Settings())))


def _issue(batch: str, customers: list[str]) -> Tally:
    return _WORKER[0].issue_missing(batch, customers)


def tasks_per_worker(renders: int, work: Mapping[str, Sequence[str]]) -> int | None:
    """How many batches of ``work`` to give a worker process before it is replaced: about
    ``renders`` renders; None (never replaced) for ``renders`` 0."""
    if renders <= 0 or not work:
        return None
    per_batch = sum(len(customers) for customers in work.values()) / len(work)
    return max(1, round(renders / per_batch))


def render_missing(service: CertificateService, work: dict[str, list[str]], *, workers: int,
                   advance: Callable[[int], None], renders_per_process: int = 0) -> Tally:
    """Issue the first certificates ``work`` names (batch -> customers), ``workers``
    processes at a time, each replaced after about ``renders_per_process`` renders (0: in
    this process when ``workers`` is 1, else never replaced); ``advance(n)`` is called as
    each batch's n customers are done."""
    total = Tally()
    if not work:
        return total
    if workers <= 1 and renders_per_process <= 0:
        for batch, customers in work.items():
            total.add(service.issue_missing(batch, customers))
            advance(len(customers))
        return total
    workers = max(1, workers)
    todo = dict(work)
    tasks = tasks_per_worker(renders_per_process, work)
    per_pool = None if tasks is None else tasks * workers
    # Spawned, not forked: the parent holds connection pools and threads a fork would copy.
    context = multiprocessing.get_context("spawn")
    broken = 0
    while todo and broken < POOLS:
        share = dict(itertools.islice(todo.items(), per_pool))
        try:
            with ProcessPoolExecutor(max_workers=min(workers, len(share)), mp_context=context,
                                     initializer=_start_worker) as pool:
                for batch, tally in _completed(pool, share, workers * 4):
                    total.add(tally)
                    advance(len(todo.pop(batch)))
        except BrokenProcessPool as exc:
            broken += 1
            log.warning("a certificate worker process stopped (%s) with %d batch(es) to go; "
                        "%s", exc, len(todo),
                        "starting new workers" if broken < POOLS else "giving up")
    if not todo:
        return total
    left = sum(len(customers) for customers in todo.values())
    total.failed += left
    total.reasons.append(
        f"{left} certificate(s) of {len(todo)} batch(es) not issued: the worker processes "
        f"stopped {POOLS} times; run the command again to issue them")
    return total


def _completed(pool: ProcessPoolExecutor, work: Mapping[str, list[str]], limit: int
               ) -> Iterator[tuple[str, Tally]]:
    """(batch, result) as they finish; at most a few tasks per worker are queued at a time,
    so an interrupted run has not shipped the whole backlog to the pool."""
    pending: dict[Future[Tally], str] = {}
    items = iter(work.items())
    while True:
        while len(pending) < limit:
            item = next(items, None)
            if item is None:
                break
            batch, customers = item
            pending[submit(pool, _issue, batch, customers)] = batch
        if not pending:
            return
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        # What finished is counted before a failure beside it (a broken pool) is raised.
        failed = [f for f in done if f.exception() is not None]
        for future in done - set(failed):
            yield pending.pop(future), future.result()
        for future in failed:
            future.result()
