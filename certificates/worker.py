"""Certificates rendered in a worker process that is replaced every so many renders.

Pango (1.50.12, Debian 12's) keeps about 18 KB of every certificate WeasyPrint lays out
(``pango_attr_break`` -> ``pango_attr_iterator_next`` allocates arrays it never frees;
heaptrack on 50 and on 200 renders), so a daemon rendering in its own process grew with
every certificate it issued, for as long as it ran. The daemon therefore renders in one
spawned worker process, which exits after ``HUB_CERTIFICATE_RENDERS_PER_PROCESS`` renders
and is started again on the next one; what Pango kept goes with it. WeasyPrint and its
fonts (50-80 MiB) then live in that process, not in the daemon's.

The worker starts at the first render and stops after ``idle`` seconds without one, so a
daemon that issues certificates now and then does not hold a second interpreter between
times. Renders run one at a time, as they did in the daemon (WeasyPrint renders one page at
a time anyway). A worker that dies (killed, out of memory) is replaced and the render tried
once more; if that fails too the caller gets a :class:`RetryableError`, so the certificate
is retried later, not lost. A worker whose daemon was killed outright exits within a second.

The hub counts the renders itself and gives the next one to a new pool, rather than setting
``max_tasks_per_child``: a pool with that setting can fail to replace a worker that leaves
while work is queued, and that work then waits for ever (CPython gh-115634, present from
3.11, the 3.11.7 here included, until its fix in 2026). The pool retired finishes what it
was given, then its worker exits; the two workers may overlap for that render.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from certificates.data import CertificateData
from certificates.service import render
from hub.errors import RetryableError

__all__ = ["RenderProcess", "submit"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def submit(pool: ProcessPoolExecutor, fn: Callable[..., T], *args: Any) -> Future[T]:
    """``pool.submit(fn, *args)``, with a pool that breaks under it reported as broken.

    When a worker dies, ``submit`` may start its replacement before the pool has noticed the
    death: the new process is handed the pool's call queue, which the pool is closing, and
    ``submit`` raises ``OSError("handle is closed")`` instead of ``BrokenProcessPool``
    (CPython 3.11; seen once in CI, ``render-missing`` with a worker killed). Either way the
    pool is done for; callers replace it."""
    try:
        return pool.submit(fn, *args)
    except OSError as exc:
        raise BrokenProcessPool(f"the worker pool broke as it was given a task: {exc}") from exc


def _follow(parent: int) -> None:
    """In the worker: exit when the daemon is gone. A daemon killed outright (SIGKILL, the
    OOM killer) leaves its worker waiting on a queue it holds both ends of, for ever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class RenderProcess:
    """``render(data, lang)`` in a worker process replaced after ``renders`` renders and
    stopped after ``idle`` seconds without one."""

    def __init__(self, renders: int, idle: float = 60.0) -> None:
        if renders < 1:
            raise ValueError("a worker must render at least once")
        self.renders = renders
        self.idle = idle
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._given = 0  # tasks given to the current pool
        self._closed = False
        self._last = 0.0
        self._timer: threading.Timer | None = None

    def __call__(self, data: CertificateData, lang: str) -> bytes:
        return self.run(render, data, lang)  # WeasyPrint loads in the worker, not here

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the worker (a module-level function: it travels by name)."""
        for attempt in (1, 2):
            # Given to the pool under the lock: another caller retiring the pool between
            # choosing it and giving it the work made submit() refuse ("cannot schedule new
            # futures after shutdown"), seen once in CI with four callers at once.
            try:
                with self._lock:
                    pool = self._current()
                    future = submit(pool, fn, *args)
                return future.result()
            except BrokenProcessPool as exc:
                self._discard(pool)
                log.warning("the certificate renderer process stopped (%s); %s", exc,
                            "starting another" if attempt == 1 else "giving up for now")
        raise RetryableError("the certificate renderer process stopped twice in a row")

    def _current(self) -> ProcessPoolExecutor:
        """The pool to give the next task to (called with the lock held)."""
        if self._closed:
            raise RetryableError("the certificate renderer is shut down")
        if self._pool is not None and self._given >= self.renders:
            self._pool.shutdown(wait=False)  # its worker exits after what it was given
            self._pool = None
        if self._pool is None:
            # Spawned, not forked: the daemon holds connections and threads a fork would
            # copy.
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_follow, initargs=(os.getpid(),))
            self._given = 0
        self._given += 1
        self._last = time.monotonic()
        if self._timer is None:
            self._arm(self.idle)
        return self._pool

    def _arm(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._stop_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _stop_if_idle(self) -> None:
        """Stop the worker when nothing was given to it for ``idle`` seconds (work already
        given to it is finished first)."""
        with self._lock:
            self._timer = None
            if self._pool is None:
                return
            left = self._last + self.idle - time.monotonic()
            if left > 0:
                self._arm(left)
                return
            pool, self._pool = self._pool, None
        pool.shutdown(wait=False)

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker (after the render it is doing, if any)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
