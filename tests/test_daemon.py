"""``python -m hub run`` as a user starts it: zero configuration, configured systems, parts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import daemon, free_port, hub_env, wait_for


def test_zero_config_creates_seeds_serves_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    with daemon(tmp_path, hub_env(HUB_HTTP_PORT=str(port))) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, "healthz")
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {k: "ok" for k in ("store", "bus", "crm", "erp", "lims")}
        for name in ("hub", "crm", "erp", "lims"):
            assert (tmp_path / "var" / f"{name}.db").is_file()
        wait_for(lambda: 'hub_component_up{component="http"' in httpx.get(f"{base}/metrics").text,
                 30, "the parts' heartbeats in the metrics")
        status = subprocess.run([sys.executable, "-m", "hub", "status"], cwd=tmp_path,
                                env=hub_env(), capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        for part in ("relay", "deadletters", "housekeeping", "http"):
            assert part in status.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert '"stopped"' in log
    assert '"heap settled"' in log  # see the next test


def test_a_settled_heap_is_frozen_and_collected_in_larger_steps() -> None:
    """What the daemon does once started: the collector stops walking the start-up heap
    (12% of the daemon's CPU in a drain went to walking it) and collects young objects in
    steps of 20,000."""
    probe = (
        "import gc, json, hub.daemon\n"
        "before = (gc.get_freeze_count(), gc.get_threshold())\n"
        "hub.daemon.settle_heap()\n"
        "print(json.dumps([before, [gc.get_freeze_count(), gc.get_threshold()]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    (frozen_before, thresholds_before), (frozen, thresholds) = json.loads(done.stdout)
    assert frozen_before == 0 and thresholds_before[0] == 700
    assert frozen > 50_000  # the imported modules, SQLAlchemy's and pydantic's structures
    assert thresholds == [20_000, thresholds_before[1], thresholds_before[2]]


_ARENAS_PROBE = """
import ctypes, os, sys, tempfile, threading
import hub.daemon
if sys.argv[1] == "limited":
    hub.daemon.limit_malloc_arenas()
# Every thread allocates while all the others are alive: a thread that has exited leaves its
# arena free for the next one, and how threads overlap would otherwise be up to the scheduler.
together = threading.Barrier(6)
def work():
    keep = [bytearray(4096) for _ in range(2000)]
    together.wait()
    del keep
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
path = tempfile.mktemp()
f = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, f)
libc.fclose(f)
print(open(path).read().count("<heap nr="))
os.unlink(path)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_daemon_keeps_two_malloc_arenas_however_many_threads_allocate() -> None:
    """Each thread that allocates would get a malloc arena of its own (up to eight per core),
    whose freed memory the others do not reuse: about 10 MiB more resident in a drain."""
    def arenas(mode: str) -> int:
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
        done = subprocess.run([sys.executable, "-c", _ARENAS_PROBE, mode], env=env,
                              capture_output=True, text=True, timeout=60, check=True)
        return int(done.stdout)

    assert arenas("default") > 2  # the probe does make threads take arenas of their own
    assert arenas("limited") <= 2


def test_configured_systems_are_never_created(tmp_path: Path) -> None:
    port = free_port()
    missing = tmp_path / "elsewhere" / "crm.db"
    env = hub_env(HUB_HTTP_PORT=str(port), HUB_CRM_URL=f"sqlite:///{missing}")
    with daemon(tmp_path, env) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, "healthz")
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503
        assert "does not exist" in ready.json()["checks"]["crm"]
        assert ready.json()["checks"]["erp"] == "ok"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    assert not missing.exists() and not missing.parent.exists()
    assert not (tmp_path / "var" / "crm.db").exists()


def test_only_runs_the_named_part_and_rejects_unknown_ones(tmp_path: Path) -> None:
    env = hub_env(HUB_HTTP_PORT=str(free_port()))
    with daemon(tmp_path, env, "--only", "relay") as proc:
        def relay_reported() -> bool:
            out = subprocess.run([sys.executable, "-m", "hub", "status", "--json"],
                                 cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=60).stdout
            return '"relay"' in out
        wait_for(relay_reported, 60, "the relay's heartbeat")
        out = subprocess.run([sys.executable, "-m", "hub", "status"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60).stdout
        assert "http " not in out and "deadletters" not in out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    bad = subprocess.run([sys.executable, "-m", "hub", "run", "--only", "nonsense"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown part(s): nonsense" in bad.stderr


def test_without_runs_every_other_part(tmp_path: Path) -> None:
    """The split for a large backlog: ``run --without erp-applier`` beside
    ``run --only erp-applier`` (docs/benchmarks.md)."""
    env = hub_env(HUB_HTTP_PORT=str(free_port()))
    with daemon(tmp_path, env, "--without", "erp-applier", "--without", "certificates") as proc:
        def status() -> str:
            return subprocess.run([sys.executable, "-m", "hub", "status"], cwd=tmp_path,
                                  env=env, capture_output=True, text=True, timeout=60).stdout
        def parts() -> set[str]:  # the first column of the PART table
            lines = status().split("PART", 1)[-1].split("\n\n", 1)[0].splitlines()[1:]
            return {line.split()[0] for line in lines if line.strip()}
        wait_for(lambda: "crm-applier" in parts(), 60, "the other parts' heartbeats")
        running = parts()
        assert "erp-applier" not in running and "certificates" not in running, running
        assert {"relay", "http", "crm-poller", "erp-poller", "housekeeping"} <= running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    bad = subprocess.run([sys.executable, "-m", "hub", "run", "--without", "nonsense"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown part(s): nonsense" in bad.stderr
