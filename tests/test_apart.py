"""``HUB_APART``: parts the daemon forks into processes of their own, on both stacks: the
embedded default (SQLite, the bus in the hub's store) and the production one (hub store, CRM
and LIMS on PostgreSQL, ERP on MariaDB through ODBC, RabbitMQ).

The daemon and its children must behave as one daemon: orders flow through the part that
runs apart, a child that dies is started again, SIGTERM stops them all with exit code 0, and
SIGKILL of the daemon takes its children with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine

from hub.demo.backlog import load_backlog
from hub.store.engine import make_engine
from tests.helpers import alive, daemon, free_port, hub_env, wait_for
from tests.stacks import daemon_stack, synced_orders


@pytest.fixture(params=["embedded", "real"])
def stack(request: pytest.FixtureRequest, tmp_path: Path
          ) -> Iterator[tuple[dict[str, str], Engine]]:
    """(the daemon's environment with ``HUB_APART=erp-applier``, the CRM's engine) on
    fresh, seeded systems: the embedded default or the production stack."""
    with daemon_stack(request.param, tmp_path, HUB_APART="erp-applier") as (env, urls):
        crm = make_engine(urls["crm"])
        try:
            yield env, crm
        finally:
            crm.dispose()


def _status(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "hub", "status", "--json"], env=env,
                         capture_output=True, text=True, timeout=60)
    return cast(dict[str, Any], json.loads(out.stdout))


def _pid(process: str) -> int:
    return int(process.rsplit(":", 1)[1])  # "host:pid"


def _processes(env: dict[str, str]) -> dict[str, int]:
    """Which process (pid) last reported each running part, from ``hub status --json``."""
    return {c["name"]: _pid(c["process"]) for c in _status(env)["components"]
            if c["state"] == "running"}


def _memory(env: dict[str, str]) -> dict[int, int]:
    """Resident bytes of each process with parts up (pid -> bytes), from ``hub status --json``."""
    return {_pid(p["process"]): p["rss_bytes"] for p in _status(env)["processes"]}


def test_the_erp_applier_runs_apart_and_lives_and_dies_with_the_daemon(
        stack: tuple[dict[str, str], Engine], tmp_path: Path) -> None:
    env, crm = stack
    load_backlog(crm, 200)
    with daemon(tmp_path, env) as proc:
        wait_for(lambda: synced_orders(crm) == 200, 180,
                 "the backlog through the forked applier")
        where = _processes(env)
        child = where["erp-applier"]
        assert child != proc.pid and where["crm-poller"] == proc.pid
        assert where["apart"] == proc.pid, "the daemon watches its children"
        assert Path(f"/proc/{child}/status").read_text().count(f"PPid:\t{proc.pid}") == 1
        memory = _memory(env)  # each process reports its own, the child too
        assert set(memory) == {proc.pid, child}
        assert all(20 * 2**20 < rss < 2**31 for rss in memory.values())

        os.kill(child, signal.SIGKILL)  # a crash of the part: started again, orders go on
        wait_for(lambda: _processes(env).get("erp-applier") not in (None, child), 60,
                 "the ERP applier started again in a new process")
        load_backlog(crm, 50, start=200)
        wait_for(lambda: synced_orders(crm) == 250, 120, "orders after the restart")

        again = _processes(env)["erp-applier"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not alive(again), "SIGTERM stopped the part running apart too"
        log = (tmp_path / "daemon.log").read_text()
        assert "Traceback" not in log
        running = [json.loads(line) for line in log.splitlines() if '"hub running"' in line]
        assert {r["process"]: r["parts"] == ["erp-applier"] for r in running} == {
            proc.pid: False, where["erp-applier"]: True, again: True,
        }, "each line says which process logged it"

    with daemon(tmp_path, env) as proc:
        wait_for(lambda: _processes(env).get("erp-applier") not in (None, again), 60,
                 "the daemon forked its applier again")
        child = _processes(env)["erp-applier"]
        assert alive(child)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child), "a part running apart dies with its daemon"


def test_an_unknown_part_in_hub_apart_is_refused(tmp_path: Path) -> None:
    env = hub_env(HUB_VAR_DIR=str(tmp_path / "var"), HUB_APART="erp-applier,erp-aplier",
                  HUB_HTTP_PORT=str(free_port()))
    run = subprocess.run([sys.executable, "-m", "hub", "run"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "unknown part(s) in HUB_APART: erp-aplier" in run.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_before_the_fork_ends_the_daemon_cleanly(tmp_path: Path,
                                                               signum: int) -> None:
    """With HUB_APART the daemon migrates its store before it forks; while the store is down
    it waits there, and a stop signal then ends it with exit code 0 and forks nothing."""
    env = hub_env(HUB_VAR_DIR=str(tmp_path / "var"), HUB_APART="erp-applier",
                  HUB_HTTP_PORT=str(free_port()), HUB_CONNECT_TIMEOUT="1",
                  HUB_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/hub")
    with daemon(tmp_path, env) as proc:
        log = tmp_path / "daemon.log"
        wait_for(lambda: "cannot migrate the hub store yet" in log.read_text(), 60,
                 "the daemon waiting for its store")
        proc.send_signal(signum)
        assert proc.wait(30) == 0
    text = log.read_text()
    assert f"signal {signal.Signals(signum).name} received" in text
    assert "stopped before the parts started" in text
    assert "runs in a process of its own" not in text


def test_a_part_apart_that_does_not_stop_is_killed_when_the_grace_is_up(tmp_path: Path
                                                                        ) -> None:
    """The daemon gives its children the shutdown grace once: a child that has not stopped
    by then (here it is frozen, SIGSTOP) is killed, and the daemon exits with 0 without
    calling its own part that watches the children stuck."""
    with daemon_stack("embedded", tmp_path, HUB_APART="erp-applier",
                      HUB_SHUTDOWN_GRACE="3") as (env, _urls), daemon(tmp_path, env) as proc:
        wait_for(lambda: "erp-applier" in _processes(env), 120, "the forked applier running")
        child = _processes(env)["erp-applier"]
        os.kill(child, signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not alive(child)
    log = (tmp_path / "daemon.log").read_text()
    assert f"part erp-applier (pid {child}) did not stop in time; killing it" in log
    assert "parts still busy at shutdown" not in log, log[-2000:]
    assert "Traceback" not in log
