"""Parts in processes of their own (``HUB_APART``), forked by the daemon at start.

One Python process runs Python code on one core at a time, and a drain keeps the daemon's
one process busy while the machine's second core idles. With ``HUB_APART=erp-applier`` the
ERP applier runs in a second process: on two cores the 20,000-order drain went from 409-478
to 623-737 orders/s (``docs/benchmarks.md``, fourteenth session).

The daemon imports everything every part needs and freezes its heap (:func:`hub.daemon.settle_heap`)
before it forks, so the children share those pages with it until one writes to them: the
drain's two processes together took 188-192 MiB of memory (PSS; 253-256 MiB of RSS summed,
which counts the shared pages in each), where two processes that each imported everything
for themselves had taken 227 MiB (PSS, thirteenth session).

The daemon and its children are one daemon to whoever runs it:

- a child dies with the daemon (``PR_SET_PDEATHSIG`` on Linux, and a check of its parent
  every half second anywhere): SIGKILL the daemon and none of its parts goes on alone;
- SIGTERM or SIGINT stops the daemon, which stops its children and waits for them (each
  has ``HUB_SHUTDOWN_GRACE`` for its parts) before it exits with 0. A child still running
  when that grace is up is killed, so the whole daemon stops within the grace, as one
  process does. A signal that comes while the daemon is still migrating its store, before
  the fork, ends it with 0 as well;
- a child that exits on its own (a crash, an out-of-memory kill) is started again after a
  back-off, as ``python -m hub run --only NAME`` (a process that runs threads cannot safely
  fork), watched the same way.

Each child runs its parts under its own supervisor and records their heartbeats in the
store, so ``status`` and the dashboard show them as if they ran in the daemon.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import make_url

from hub.bus.base import backoff
from hub.parts import Part
from hub.runtime import SYSTEMS, Runtime
from hub.settings import Settings

__all__ = ["Children", "follow_parent", "fork", "preload"]

log = logging.getLogger("hub.apart")

#: Linux ``prctl`` option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1
#: Seconds between a child's checks that its daemon is still there.
ORPHAN_CHECK_SECONDS = 0.5


def preload(settings: Settings) -> None:
    """Import what the parts will need, so forked children share it with the daemon: every
    part's module, the HTTP service, and the database drivers of the configured URLs."""
    from hub.bus import rabbitmq  # noqa: F401 - imported for its side effect
    from hub.http import app  # noqa: F401
    from hub.parts import part_types

    part_types()
    for url in (settings.database, *(settings.system_url(name) for name in SYSTEMS)):
        with contextlib.suppress(Exception):  # a bad URL is reported when it is used
            make_url(url).get_dialect().import_dbapi()


def follow_parent(parent: int, stop: threading.Event) -> None:
    """In a child: die as soon as the daemon ``parent`` is gone (it was killed: its parts
    must not go on without it), checking every half second until ``stop`` is set."""
    def watch() -> None:
        while not stop.wait(ORPHAN_CHECK_SECONDS):
            if os.getppid() != parent:
                log.error("the daemon (pid %d) is gone; stopping with it", parent)
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that forked it exits."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Child:
    name: str
    pid: int
    process: subprocess.Popen[bytes] | None = None  # None: forked at start
    failures: int = 0
    started: float = field(default_factory=time.monotonic)

    def exited(self) -> int | None:
        """Its exit code once it has ended (reaped), else None."""
        if self.process is not None:
            return self.process.poll()
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return -1
        return os.waitstatus_to_exitcode(status) if pid else None


class Children(Part):
    """The daemon's part that keeps its children running and stops them with it."""

    name = "apart"
    #: A child that does not stop within the grace is killed then; this is for that.
    stop_margin = 2.0

    def __init__(self, runtime: Runtime, children: dict[str, int]) -> None:
        super().__init__(runtime)
        self._children = {name: _Child(name, pid) for name, pid in children.items()}
        self._restart_at: dict[str, float] = {}
        self._stopping = threading.Lock()
        self._deadline: float | None = None  # monotonic; set by the first stop_all()

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(0.5):
            for child in list(self._children.values()):
                self._check(child)
        self.stop_all()

    def _check(self, child: _Child) -> None:
        if child.name in self._restart_at:
            if time.monotonic() >= self._restart_at[child.name]:
                self._spawn(child)
            return
        code = child.exited()
        if code is None:
            return
        failures = 1 if time.monotonic() - child.started > 60 else child.failures + 1
        child.failures = failures
        delay = backoff(failures, base=1.0, cap=60.0)
        log.error("part %s (pid %d) exited with %s; starting it again in %.0f s",
                  child.name, child.pid, code, delay)
        self._restart_at[child.name] = time.monotonic() + delay

    def _spawn(self, child: _Child) -> None:
        del self._restart_at[child.name]
        process = subprocess.Popen([sys.executable, "-m", "hub", "run", "--only", child.name,
                                    "--parent", str(os.getpid())])
        child.pid, child.process, child.started = process.pid, process, time.monotonic()
        log.info("part %s started again (pid %d)", child.name, child.pid)

    def stop_all(self) -> None:
        """SIGTERM the children still running and wait for them until the shutdown grace is
        up, then SIGKILL and reap what is left.

        The grace counts from the first call. The part's thread calls this when the daemon
        stops, and the daemon's main thread calls it again on its way out (in case the part
        never ran): the second call waits for the first and finds nothing left to stop, where
        it used to give a child still stopping a whole grace of its own."""
        with self._stopping:
            if self._deadline is None:
                self._deadline = time.monotonic() + self.runtime.settings.shutdown_grace
            running = [c for c in self._children.values() if c.exited() is None]
            for child in running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
            while running and time.monotonic() < self._deadline:
                time.sleep(0.1)
                running = [c for c in running if c.exited() is None]
            for child in running:
                log.warning("part %s (pid %d) did not stop in time; killing it", child.name,
                            child.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
                _wait_quietly(child)

    def detail(self) -> dict[str, Any]:
        return {"processes": {c.name: c.pid for c in self._children.values()}}


def _wait_quietly(child: _Child) -> None:
    with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
        if child.process is not None:
            child.process.wait(5)
        else:
            os.waitpid(child.pid, 0)


def fork(names: Sequence[str], run_child: Callable[[str, int], int]) -> dict[str, int]:
    """Fork one child per name; each calls ``run_child(name, daemon_pid)`` and exits with
    what it returns. Returns {name: pid} in the daemon. Call it before any thread starts."""
    daemon, children = os.getpid(), {}
    for name in names:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the daemon's stack
            code = 1
            try:
                _die_with_parent()
                if os.getppid() == daemon:
                    code = run_child(name, daemon)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("part %s failed in its own process", name)
            finally:
                logging.shutdown()
                os._exit(code)
        children[name] = pid
        log.info("part %s runs in a process of its own", name, extra={"pid": pid})
    return children
