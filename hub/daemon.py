"""``hub run``: start the parts, keep them alive, stop them cleanly.

Each part runs in its own thread under a supervisor: if a part fails (a bug, a database that
stays down) it is logged, marked ``failed`` in its heartbeat and restarted after a back-off, so
one part's trouble never stops the others. SIGTERM or SIGINT sets one stop event; every part
finishes the batch in hand (or leaves it unacknowledged for redelivery) and the process exits 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence

from hub.bus.base import backoff
from hub.components import Components, process_memory, worker_memory
from hub.errors import HubError, PermanentError
from hub.parts import Part, build_parts, part_types
from hub.runtime import Runtime
from hub.settings import Settings
from hub.signals import hold_stop_signals, stopping_on_signals
from hub.store.db import Store
from hub.store.types import utcnow

__all__ = ["Daemon", "run", "settle_heap", "until_ok"]

log = logging.getLogger("hub.daemon")

HEARTBEAT_SECONDS = 5.0

#: Allocations (net, of objects the cycle collector tracks) between youngest-generation
#: collections once the daemon runs; Python's default is 700. See :func:`settle_heap`.
YOUNG_COLLECTION_EVERY = 20_000


def settle_heap() -> None:
    """Take what start-up built out of the cycle collector's sight, and collect less often.

    The cycle collector walked every object the process had built: modules, tables,
    mappings, compiled statements. With the default thresholds a 20,000-order drain ran 41
    full collections of 83 ms each, and 12% of the daemon's CPU went to collecting
    (``docs/benchmarks.md``, twelfth session). Frozen, the start-up heap is never walked
    again; it stays alive anyway. Collecting the young generation every 20,000 allocations
    instead of 700 lets a batch's short-lived rows die before they are promoted, so older
    generations are rarely collected. Almost everything the hub builds is freed by reference
    counting, so the garbage left for the collector stays small (peak RSS within the noise).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, older, oldest)
    log.info("heap settled", extra={"frozen_objects": gc.get_freeze_count(),
                                    "gc_thresholds": list(gc.get_threshold())})


def until_ok(stop: threading.Event, what: str, action: Callable[[], None]) -> None:
    """Run ``action`` until it succeeds or ``stop`` is set, backing off while what it needs
    is down; a :class:`PermanentError` ends the process with its reason."""
    attempt = 0
    while not stop.is_set():
        try:
            action()
            return
        except PermanentError as exc:
            raise SystemExit(f"cannot {what}: {exc}") from exc
        except HubError as exc:
            attempt += 1
            log.warning("cannot %s yet (%s); retrying", what, exc)
            stop.wait(backoff(attempt))


#: glibc's ``mallopt`` option for the number of malloc arenas.
M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Have glibc's malloc keep ``arenas`` arenas, not up to eight per core.

    Each new thread that allocates gets an arena of its own until there are eight per core,
    and memory freed in one arena is not reused by the others: with a dozen busy threads
    the daemon's resident memory grew by about 10 MiB for no speed (``docs/benchmarks.md``).
    ``MALLOC_ARENA_MAX`` in the environment, if set, is left to decide.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas)


class Daemon:
    """The parts of one process and the threads that run them."""

    def __init__(self, runtime: Runtime, parts: Sequence[Part]) -> None:
        self.runtime = runtime
        self.parts = list(parts)
        self.stop = threading.Event()
        self.states: dict[str, str] = {p.name: "starting" for p in self.parts}
        self.started_at = utcnow()
        self._threads: list[threading.Thread] = []

    def prepare(self) -> None:
        """Migrate the store and declare every subscription, waiting for servers to come up."""
        every_part = build_parts(self.runtime)
        until_ok(self.stop, "migrate the hub store", self.runtime.store.migrate)
        for part in every_part:
            for sub in part.subscriptions():
                declare = functools.partial(self.runtime.bus.declare, sub)
                until_ok(self.stop, f"declare {sub.queue}", declare)

    def start(self) -> None:
        for part in self.parts:
            thread = threading.Thread(target=self._supervise, args=(part,), name=part.name,
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)
        log.info("hub running", extra={"parts": [p.name for p in self.parts],
                                       "settings": self.runtime.settings.describe()})

    def _supervise(self, part: Part) -> None:
        failures = 0
        while not self.stop.is_set():
            self.states[part.name] = "running"
            began = time.monotonic()
            try:
                part.run(self.stop)
            except BaseException as exc:
                if self.stop.is_set():
                    break
                failures = 1 if time.monotonic() - began > 60 else failures + 1
                self.states[part.name] = "failed"
                log.error("part %s failed; restarting", part.name, exc_info=exc)
                self.stop.wait(backoff(failures, base=1.0, cap=60.0))
                continue
            if not self.stop.is_set():  # a part that returns early is restarted too
                self.stop.wait(1.0)
        self.states[part.name] = "stopped"

    def _heartbeat(self) -> None:
        while True:
            self._beat_all()
            if self.stop.wait(HEARTBEAT_SECONDS):
                return

    def _beat_all(self) -> None:
        try:
            # The process's, and its workers', with each of its parts.
            memory = {**process_memory(), **worker_memory()}
            with self.runtime.store.begin() as conn:
                for part in self.parts:
                    Components.beat(conn, part.name, self.states[part.name],
                                    started_at=self.started_at, last_poll_at=part.last_poll_at,
                                    detail={**part.detail(), **memory})
        except HubError as exc:
            log.warning("cannot record heartbeats: %s", exc)

    def wait(self) -> None:
        """Block until the stop event is set, then :meth:`shutdown`."""
        while not self.stop.wait(0.5):
            pass
        self.shutdown()

    def shutdown(self) -> None:
        """Stop every part, giving them ``shutdown_grace`` seconds to finish (and a part
        with a :attr:`~hub.parts.Part.stop_margin` that much more)."""
        self.stop.set()
        log.info("stopping")
        deadline = time.monotonic() + self.runtime.settings.shutdown_grace
        margins = {p.name: p.stop_margin for p in self.parts}
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline + margins.get(thread.name, 0.0)
                                    - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            log.warning("parts still busy at shutdown (their messages will be redelivered)",
                        extra={"parts": stuck})
        self._beat_all()
        log.info("stopped")


def run(settings: Settings, only: Sequence[str] = (), without: Sequence[str] = (),
        parent: int | None = None) -> int:
    """Run the daemon in this process until SIGTERM or SIGINT, with the parts named in
    ``only`` (all when empty) but those in ``without``; the parts in ``HUB_APART`` run in
    processes of their own, forked here (:mod:`hub.apart`). With ``parent``, this process
    is one of those parts, and dies with that daemon. Returns the exit code."""
    limit_malloc_arenas()
    if not all(settings.system_configured(s) for s in ("crm", "erp", "lims")):
        from hub.demo.reference import ensure_embedded

        if ensure_embedded(settings):
            log.info("created and seeded the embedded reference systems",
                     extra={"var_dir": str(settings.var_dir.resolve())})
    known = [kind.name for kind in part_types()]
    for what, names in (("part(s)", [*only, *without]), ("part(s) in HUB_APART", settings.apart)):
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise SystemExit(f"unknown {what}: {', '.join(unknown)}; known: {', '.join(known)}")
    if not [name for name in known if (not only or name in only) and name not in without]:
        raise SystemExit("no part left to run")
    apart = [] if only else [name for name in settings.apart if name not in without]
    children: dict[str, int] = {}
    if apart:
        from hub import apart as processes

        # Migrated here, not by each process at once (SQLite has no lock to take for it).
        # A stop signal before the fork ends the daemon cleanly; one from the moment the
        # signal thread is gone stays pending, in the daemon and in its children, until
        # each one's parts can stop (_serve): no thread may run while the daemon forks.
        early = threading.Event()
        with stopping_on_signals(early):
            store = Store(settings.database, connect_timeout=settings.connect_timeout)
            try:
                until_ok(early, "migrate the hub store", store.migrate)
            finally:
                store.dispose()
            if not early.is_set():
                processes.preload(settings)
                settle_heap()
            hold_stop_signals()
        if early.is_set():
            log.info("stopped before the parts started")
            return 0
        children = processes.fork(
            apart, lambda name, daemon: run(settings, only=(name,), parent=daemon))
    return _serve(settings, only, [*without, *apart], children, parent)


def _serve(settings: Settings, only: Sequence[str], without: Sequence[str],
           children: dict[str, int], parent: int | None) -> int:
    runtime = Runtime.open(settings)
    parts = [p for p in build_parts(runtime)
             if (not only or p.name in only) and p.name not in without]
    keeper = None
    if children:
        from hub.apart import Children

        keeper = Children(runtime, children)
        parts.append(keeper)
    daemon = Daemon(runtime, parts)
    if parent is not None:
        from hub.apart import follow_parent

        follow_parent(parent, daemon.stop)
    try:
        with stopping_on_signals(daemon.stop):
            daemon.prepare()
            if not daemon.stop.is_set():
                settle_heap()
                daemon.start()
                daemon.wait()
    finally:
        if keeper is not None:  # stopped before its part ran, or a failure: stop them here
            keeper.stop_all()
        runtime.close()
    return 0
