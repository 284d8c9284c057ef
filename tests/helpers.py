"""Small helpers the test packages share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "",
             every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, parent pid, ...);
    None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Whether process ``pid`` is running: a zombie has exited, only its parent has not
    reaped it yet."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def hub_env(**overrides: str) -> dict[str, str]:
    """The environment for a hub subprocess: this one's, minus any HUB_* the caller has set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(overrides)
    env.setdefault("HUB_LOG_FORMAT", "json")
    return env


@contextmanager
def daemon(cwd: Path, env: Mapping[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m hub run ARGS`` and make sure it is gone afterwards."""
    log = open(cwd / "daemon.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "run", *args], cwd=cwd, env=dict(env), stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        log.close()
