"""The hub under test: its sync parts, each in its own ``python -m hub run --only NAME``
process, so the nemesis can SIGKILL one part or all of them (the whole daemon).

A process that exits when nobody killed it is a finding: it is counted in ``unexpected_exits``
and started again, as a service manager would.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["PARTS", "HubProcesses"]

PARTS = ("relay", "deadletters", "crm-poller", "crm-applier", "erp-poller", "erp-applier")


class HubProcesses:
    """One process per part, on the environment ``env``; logs under ``log_dir``."""

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
