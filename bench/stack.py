"""A throwaway production-like stack for benchmarks: CRM, LIMS and hub store on PostgreSQL, ERP
on MariaDB through ODBC, RabbitMQ with its own exchange and queue prefix; and a daemon on it.

Everything is named ``bench_<tag>_*`` / ``bench-<tag>-*`` and removed by :meth:`Stack.close`,
also when a measurement fails; with ``BENCH_KEEP=1`` the databases are kept (their URLs are
printed) to read the hub's journal afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from hub.demo.reference import create_schemas, ensure_database, seed
from hub.store.engine import make_engine

__all__ = ["AMQP_URL", "MARIADB_URL", "SERVERS", "Daemon", "Stack", "cpu_seconds", "delete_queues",
           "drop_database"]

PG_URL = os.environ.get("HUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get(
    "HUB_TEST_MARIADB_URL",
    "mysql+pyodbc://root:@127.0.0.1:3306/test?driver=MariaDB+Unicode&charset=utf8mb4",
)
AMQP_URL = os.environ.get("HUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


#: The servers whose CPU a drain is charged with, by process name (``comm``).
SERVERS = {"PostgreSQL": ("postgres",), "MariaDB": ("mariadbd", "mysqld"),
           "RabbitMQ": ("beam.smp", "erl_child_setup", "epmd")}
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int] | None = None) -> dict[str, float]:
    """CPU seconds used so far (user and system, all threads) by each of :data:`SERVERS`,
    and with ``pids`` by those processes as ``"daemon"``. Processes that ended in between
    are not counted: read it around a run whose servers stay up."""
    wanted = {name: server for server, names in SERVERS.items() for name in names}
    mine = set(pids or ())
    used = {"daemon": 0.0, **{server: 0.0 for server in SERVERS}}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        seconds = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
        if int(entry.name) in mine:
            used["daemon"] += seconds
        elif comm in wanted:
            used[wanted[comm]] += seconds
    return used


def family(pid: int) -> list[int]:
    """``pid`` and every process below it (children of all its threads, recursively)."""
    found = [pid]
    for tasks in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in tasks.read_text().split():
                found += family(int(child))
    return found


def delete_queues(prefix: str) -> None:
    """Delete the broker's queues and exchanges whose names start with ``prefix``."""
    import pika

    def listed(kind: str) -> list[str]:
        out = subprocess.run(["rabbitmqctl", "-q", f"list_{kind}", "name"], capture_output=True,
                             text=True, timeout=120, check=False).stdout
        return [n.strip() for n in out.splitlines() if n.strip().startswith(prefix)]

    queues, exchanges = listed("queues"), listed("exchanges")
    if not queues and not exchanges:
        return
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = conn.channel()
        for name in queues:
            channel.queue_delete(name)
        for name in exchanges:
            channel.exchange_delete(name)
    finally:
        conn.close()


class Stack:
    """Fresh, seeded reference systems and an empty hub store on this machine's servers."""

    def __init__(self, label: str) -> None:
        self.tag = f"{label}_{uuid.uuid4().hex[:6]}"
        self.urls = {
            "crm": self._url(PG_URL, "crm"),
            "erp": self._url(MARIADB_URL, "erp"),
            "lims": self._url(PG_URL, "lims"),
            "hub": self._url(PG_URL, "hub"),
        }
        for url in self.urls.values():
            ensure_database(url)
        systems = {k: v for k, v in self.urls.items() if k != "hub"}
        create_schemas(systems)
        seed(systems)
        self.engines: dict[str, Engine] = {k: make_engine(v) for k, v in systems.items()}
        self.exchange = f"bench-{self.tag}"
        self.prefix = f"bench-{self.tag}."

    def _url(self, base: str, label: str) -> str:
        return make_url(base).set(database=f"bench_{self.tag}_{label}").render_as_string(
            hide_password=False)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update({
            "HUB_DATABASE_URL": self.urls["hub"], "HUB_BROKER_URL": AMQP_URL,
            "HUB_CRM_URL": self.urls["crm"], "HUB_ERP_URL": self.urls["erp"],
            "HUB_LIMS_URL": self.urls["lims"], "HUB_EXCHANGE": self.exchange,
            "HUB_QUEUE_PREFIX": self.prefix, "HUB_LOG_FORMAT": "json",
            "HUB_HTTP_PORT": str(_free_port()),
        })
        env.update(overrides)
        return env

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()
        with contextlib.suppress(Exception):
            delete_queues(self.exchange)
        if os.environ.get("BENCH_KEEP") == "1":  # to read the hub's journal afterwards
            print("kept: " + ", ".join(make_url(u).render_as_string() for u in self.urls.values()))
            return
        for url in self.urls.values():
            with contextlib.suppress(Exception):
                drop_database(url)


def drop_database(url: str) -> None:
    """Drop the database ``url`` names, on PostgreSQL or MariaDB (connections and all)."""
    target = make_url(url)
    if target.get_backend_name() == "postgresql":
        admin = target.set(database="postgres")
        statement = f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'
    else:
        admin = target.set(database="information_schema")
        statement = f"DROP DATABASE IF EXISTS `{target.database}`"
    engine = make_engine(admin.render_as_string(hide_password=False), pool_size=1)
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(statement)
    finally:
        engine.dispose()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """``python -m hub run`` on a stack, with its peak resident memory watched (its own and
    its children's: the parts it forks for ``HUB_APART``)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "hub", "run"], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.peak_rss_mib = self.peak_pss_mib = 0.0

    def wait_ready(self, timeout: float = 60.0) -> None:
        url = f"http://127.0.0.1:{self.env['HUB_HTTP_PORT']}/readyz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError("the daemon did not become ready")

    def pids(self) -> list[int]:
        """The daemon's processes: its own and the ones it started."""
        return family(self.proc.pid)

    def sample_rss(self) -> float:
        """The daemon's resident memory now (MiB, its processes together); remembers the
        peak (the sum of each process's VmHWM), and the peak of the processes' PSS summed
        (their shared pages, such as libraries, counted once in all: what running the daemon
        as several processes really costs; sampled, so a short peak may be missed)."""
        rss = hwm = pss = 0.0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss += int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
            hwm += int(fields.get("VmHWM", "0 kB").split()[0]) / 1024
            pss += sum(int(line.split()[1]) for line in rollup.splitlines()
                       if line.startswith("Pss:")) / 1024
        self.peak_rss_mib = max(self.peak_rss_mib, hwm, rss)
        self.peak_pss_mib = max(self.peak_pss_mib, pss)
        return rss

    def stop(self) -> None:
        self.sample_rss()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@contextlib.contextmanager
def running(stack: Stack, log_dir: Path, **overrides: str) -> Iterator[Daemon]:
    daemon = Daemon(stack.env(**overrides), log_dir / f"daemon-{uuid.uuid4().hex[:6]}.log")
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()


def count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())
