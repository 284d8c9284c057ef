"""The hub under test: its sync parts, each in its own ``python -m hub run --only NAME``
process, so the nemesis can SIGKILL one part or all of them (the whole daemon); or, with
``--apart``, one daemon running them all, which forks the ERP applier into a process of its
own (``HUB_APART``), as a user who wants the second core runs it.

A process that exits when nobody killed it is a finding: it is counted in ``unexpected_exits``
and started again, as a service manager would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from hub.parts import part_types
from tests.helpers import alive, proc_stat

__all__ = ["PARTS", "ApartDaemon", "HubProcesses"]

PARTS = ("relay", "deadletters", "crm-poller", "crm-applier", "erp-poller", "erp-applier")


class HubProcesses:
    """One process per part, on the environment ``env``; logs under ``log_dir``."""

    #: What :meth:`kill` can kill alone.
    parts = PARTS

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.unexpected_exits: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def start(self, part: str) -> None:
        with open(self.log_dir / f"hub-{part}.log", "ab") as log:
            self.procs[part] = subprocess.Popen(
                [sys.executable, "-m", "hub", "run", "--only", part], env=self.env,
                cwd=self.log_dir, stdout=log, stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        with self._lock:
            for part in PARTS:
                self.start(part)

    def kill(self, parts: tuple[str, ...] = PARTS) -> None:
        """SIGKILL the named parts' processes (all of them: the whole daemon) and start them
        again."""
        with self._lock:
            for part in parts:
                proc = self.procs[part]
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
            for part in parts:
                self.start(part)

    def check(self) -> None:
        """Restart any part that exited without being killed, and count it."""
        with self._lock:
            for part, proc in list(self.procs.items()):
                code = proc.poll()
                if code is not None:
                    self.unexpected_exits.append((part, code))
                    self.start(part)

    def stop(self, timeout: float = 30) -> dict[str, int | None]:
        """SIGTERM every part and wait; returns each part's exit code (None: had to kill)."""
        with self._lock:
            codes: dict[str, int | None] = {}
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for part, proc in self.procs.items():
                try:
                    codes[part] = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    codes[part] = None
                    proc.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(10)
            return codes


class ApartDaemon:
    """One ``python -m hub run`` with the sync parts, forking ``apart`` into processes of its
    own: killing "all" SIGKILLs the daemon (its children die with it), killing one of
    ``apart`` SIGKILLs that child, which the daemon starts again. Same interface as
    :class:`HubProcesses`."""

    def __init__(self, env: dict[str, str], log_dir: Path,
                 apart: tuple[str, ...] = ("erp-applier",)) -> None:
        self.env = {**env, "HUB_APART": ",".join(apart)}
        self.log_dir = log_dir
        self.parts = apart
        self.proc: subprocess.Popen[bytes] | None = None
        self.unexpected_exits: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._log = log_dir / "hub-daemon.log"

    def _start(self) -> None:
        without = [arg for kind in part_types() if kind.name not in PARTS
                   for arg in ("--without", kind.name)]
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "hub", "run", *without],
                                         env=self.env, cwd=self.log_dir, stdout=log,
                                         stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        with self._lock:
            self._start()

    def _children(self) -> list[int]:
        assert self.proc is not None
        return [pid for pid in (int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit())
                if (stat := proc_stat(pid)) is not None and stat[0] != "Z"
                and stat[1] == str(self.proc.pid)]

    def kill(self, parts: tuple[str, ...] = PARTS) -> None:
        with self._lock:
            assert self.proc is not None
            if set(parts) <= set(self.parts):  # one process of its own
                deadline = time.monotonic() + 60  # it may be between two lives
                while not (children := self._children()) and time.monotonic() < deadline:
                    time.sleep(0.2)
                for pid in children:
                    os.kill(pid, signal.SIGKILL)
                return
            orphans = self._children()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
            deadline = time.monotonic() + 10  # PR_SET_PDEATHSIG: gone at once
            while any(alive(pid) for pid in orphans) and time.monotonic() < deadline:
                time.sleep(0.1)
            self._start()

    def check(self) -> None:
        """Restart the daemon if it exited unasked, and count it (a child that exits unasked
        is counted by :meth:`stop`, from the daemon's log)."""
        with self._lock:
            assert self.proc is not None
            code = self.proc.poll()
            if code is not None:
                self.unexpected_exits.append(("daemon", code))
                self._start()

    def stop(self, timeout: float = 30) -> dict[str, int | None]:
        with self._lock:
            assert self.proc is not None
            code: int | None
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                code = None
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)
            self.unexpected_exits += self._child_exits()
            return {"daemon": code}

    def _child_exits(self) -> list[tuple[str, int]]:
        """Children that exited other than by the nemesis's SIGKILL, from the daemon's log."""
        found = []
        for line in self._log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line).get("event", "")
                if event.startswith("part ") and " exited with " in event:
                    code = int(event.split(" exited with ", 1)[1].split(";", 1)[0])
                    if code != -signal.SIGKILL:
                        found.append((event.split()[1], code))
        return found
