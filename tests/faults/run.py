"""One fault run: private servers, the hub's parts as processes, the workload, the nemesis,
then convergence and the independent reconciliation, summed up in a Jepsen-style table.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, and_, func, select
from sqlalchemy.exc import SQLAlchemyError

from connectors.crm.schema import crm_order
from connectors.erp.schema import ordr
from hub.demo.reference import create_schemas, ensure_database, seed
from hub.errors import HubError
from hub.store import Store
from hub.store.engine import make_engine
from hub.store.tables import id_xref, sync_state
from hub.trace import trace
from hub.trace_view import render
from tests.faults.daemon import ApartDaemon, HubProcesses
from tests.faults.nemesis import KINDS, Fault, Nemesis
from tests.faults.reconcile import Reconciliation, progress, reconcile
from tests.faults.servers import Servers, free_port
from tests.faults.workload import Clerk, Submitter

__all__ = ["Config", "Report", "run"]

log = logging.getLogger("faults")


@dataclass
class Config:
    orders: int = 1000
    rate: float = 80.0
    counts: dict[str, int] = field(default_factory=dict)
    converge_timeout: float = 300.0
    seed: int = 6
    keep: bool = False
    erp_changes: bool = True
    apart: bool = False  # one daemon with HUB_APART=erp-applier, not a process per part
    #: Seconds after the last fault within which the run must converge to pass (None: any
    #: time within ``converge_timeout``).
    converge_within: float | None = None


@dataclass
class Report:
    config: Config
    reconciliation: Reconciliation | None = None
    faults: list[Fault] = field(default_factory=list)
    convergence: float | None = None
    since_last_order: float | None = None
    elapsed: float = 0.0
    unexpected_exits: list[tuple[str, int]] = field(default_factory=list)
    stop_codes: dict[str, int | None] = field(default_factory=dict)
    crm_retries: int = 0
    erp_confirmations: int = 0
    recovered: int = 0
    workdir: str = ""
    #: For a failed reconciliation: the hub's trace and sync state of the first orders wrong.
    post_mortem: list[str] = field(default_factory=list)
    #: For a failed run: the hub's last warnings and errors, from every process's log.
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        r = self.reconciliation
        within = self.config.converge_within
        return (r is not None and r.ok and self.convergence is not None
                and (within is None or self.convergence <= within)
                and not any(f.error for f in self.faults) and not self.unexpected_exits
                and all(code == 0 for code in self.stop_codes.values()))

    def details(self) -> str:
        """The table, then what went wrong and, for orders wrong or lost, the post-mortem."""
        r = self.reconciliation
        return "\n".join([self.table(), *(r.problems() if r is not None else []),
                          *self.post_mortem,
                          *(["the hub's last warnings:", *self.log_tail] if self.log_tail
                            else [])])

    def table(self) -> str:
        r = self.reconciliation or Reconciliation()
        per_kind = Counter(f.kind for f in self.faults)
        failed = Counter(f.kind for f in self.faults if f.error)
        conv = f"{self.convergence:.1f}" if self.convergence is not None else "not reached"
        rows = [
            ("orders attempted (committed in the CRM)", f"{r.attempted:,}"),
            ("confirmed (in the ERP once, ERP number back in the CRM)", f"{r.confirmed:,}"),
            ("lost", f"{len(r.lost):,}"),
            ("duplicated (ERP orders per CRM order > 1)", f"{len(r.duplicated):,}"),
            ("ERP orders with no CRM order", f"{len(r.phantoms):,}"),
            ("orders with a field that disagrees", f"{len(r.mismatches):,}"),
            ("DocNums doubled / orders with doubled lines",
             f"{r.doubled_doc_nums} / {r.doubled_lines}"),
            ("failed, in dead letters with a reason / without", f"{len(r.failed_with_reason)}"
                                                              f" / {len(r.failed_without_reason)}"),
            ("dead letters (all) / without a reason",
             f"{r.dead_letters} / {r.dead_letters_without_reason}"),
            ("ERP confirmations made / seen back in the CRM",
             f"{self.erp_confirmations:,} / {r.erp_changes_back:,}"),
            ("faults injected / recovered (sync moved on after it)",
             f"{len(self.faults)} / {self.recovered}"),
            *((f"  {kind}", f"{per_kind[kind]}" + (f" ({failed[kind]} failed to inject)"
                                                   if failed[kind] else ""))
              for kind in KINDS if per_kind[kind] or self.config.counts.get(kind)),
            ("parts that exited unasked (restarted)", f"{len(self.unexpected_exits)}"),
            ("convergence after the last fault (s)", conv),
            ("  after the last order was submitted (s)",
             f"{self.since_last_order:.1f}" if self.since_last_order is not None else "-"),
            ("whole run (s)", f"{self.elapsed:.0f}"),
            ("verdict", "PASS" if self.ok else "FAIL"),
        ]
        width = max(len(a) for a, _ in rows)
        out = [f"| {'measure':{width}} | {'value':>12} |", f"|{'-' * (width + 2)}|{'-' * 14}|"]
        out += [f"| {a:{width}} | {b:>12} |" for a, b in rows]
        return "\n".join(out)


def _check_private(url: str, query: str, port: int) -> None:
    """Make sure ``url`` reaches the private server, never a shared one."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            found = int(conn.exec_driver_sql(query).scalar_one())
    finally:
        engine.dispose()
    if found != port:
        raise RuntimeError(f"{url} reached the server on port {found}, not the private {port}")


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ordr)).scalar_one())


class _Monitor:
    """Samples the sync's progress every second, riding out outages, so each fault can be
    judged: the sync moved on after it (recovered) or not."""

    def __init__(self, crm: Engine) -> None:
        self.crm = crm
        self.samples: list[tuple[float, int]] = []

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(SQLAlchemyError):
                self.samples.append((time.monotonic(), progress(self.crm)))

    def recovered(self, fault: Fault, total: int) -> bool:
        """The sync moved on after ``fault`` ended (or had nothing left to do)."""
        before = [n for t, n in self.samples if t <= fault.ended]
        after = [n for t, n in self.samples if t > fault.ended]
        base = before[-1] if before else 0
        return base >= total or bool(after and max(after) > base)


def run(config: Config, workroot: Path | None = None) -> Report:
    """Run the whole thing; always stops every private server and process it started."""
    root = Path(tempfile.mkdtemp(prefix="hubfaults-", dir=workroot))
    root.chmod(0o755)  # PostgreSQL and MariaDB run as their own users below it
    report = Report(config, workdir=str(root))
    began = time.monotonic()
    try:
        with Servers(root) as servers:
            _run(config, servers, root, report)
    finally:
        report.elapsed = time.monotonic() - began
        if not report.ok:
            report.log_tail = log_tail(root)
        if config.keep:
            pass  # logs and the servers' data directories, for a post-mortem
        elif report.ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            for sub in ("postgresql", "mariadb", "rabbitmq"):  # keep logs, not data
                shutil.rmtree(root / sub, ignore_errors=True)
    return report


def _run(config: Config, servers: Servers, root: Path, report: Report) -> None:
    assert servers.postgres and servers.mariadb and servers.rabbit
    pg, maria = servers.postgres, servers.mariadb
    urls = {"crm": pg.url("crm"), "erp": maria.url("erp"), "lims": pg.url("lims")}
    hub_url = pg.url("hub")
    _check_private(pg.url("postgres"), "SHOW port", pg.port)
    _check_private(maria.url("information_schema"), "SELECT @@port", maria.port)
    for url in (*urls.values(), hub_url):
        ensure_database(url)
    create_schemas(urls)
    seed(urls)
    store = Store(hub_url)
    store.migrate()  # once, before six processes start
    store.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update({
        "HUB_DATABASE_URL": hub_url, "HUB_BROKER_URL": servers.rabbit.url,
        "HUB_CRM_URL": urls["crm"], "HUB_ERP_URL": urls["erp"], "HUB_LIMS_URL": urls["lims"],
        "HUB_HTTP_PORT": str(free_port()), "HUB_LOG_FORMAT": "json", "HUB_POLL_INTERVAL": "0.5",
    })
    crm, erp, hub = make_engine(urls["crm"]), make_engine(urls["erp"]), make_engine(hub_url)
    hub_procs: HubProcesses | ApartDaemon = (
        ApartDaemon(env, root) if config.apart else HubProcesses(env, root))
    stop, stop_clerk = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    try:
        hub_procs.start_all()
        submitter = Submitter(crm, config.orders, config.rate)
        clerk = Clerk(erp)
        monitor = _Monitor(crm)
        window = config.orders / config.rate
        nemesis = Nemesis(servers, hub_procs, config.counts, window, seed=config.seed)
        started = time.monotonic()
        workers = [("submitter", lambda: submitter.run(stop)),
                   ("monitor", lambda: monitor.run(stop)),
                   ("nemesis", lambda: nemesis.run(stop, started))]
        if config.erp_changes:
            workers.append(("clerk", lambda: clerk.run(stop_clerk)))
        for name, target in workers:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            threads.append(thread)
        for thread in [t for t in threads if t.name in ("submitter", "nemesis")]:
            while thread.is_alive():
                thread.join(1.0)
                hub_procs.check()
        stop_clerk.set()
        last_fault = max([f.ended for f in nemesis.done], default=started)
        report.faults = nemesis.done
        report.crm_retries = submitter.retries
        log.info("workload and faults done; waiting for convergence")
        report.convergence, reconciliation = _converge(
            config, crm, erp, hub, submitter.submitted, hub_procs)
        report.reconciliation = reconciliation
        if not reconciliation.ok:
            report.post_mortem = post_mortem(
                hub_url, {"crm": crm, "erp": erp},
                [*reconciliation.wrong_orders, *reconciliation.lost][:2])
        report.erp_confirmations = len(clerk.confirmed)
        if report.convergence is not None:  # an instant so far: make it durations
            converged_at = report.convergence
            report.since_last_order = converged_at - (submitter.finished_at or started)
            report.convergence = max(0.0, converged_at - last_fault)
        total = len(submitter.submitted)
        report.recovered = sum(monitor.recovered(f, total) for f in nemesis.done if not f.error)
        report.unexpected_exits = list(hub_procs.unexpected_exits)
    finally:
        stop.set()
        stop_clerk.set()
        report.stop_codes = hub_procs.stop()
        for thread in threads:
            thread.join(10)
        for engine in (crm, erp, hub):
            engine.dispose()


def log_tail(root: Path, limit: int = 40) -> list[str]:
    """The last ``limit`` warnings and errors the hub's processes logged (JSON lines), in
    time order, one short line each: what a slow or failed run's output should show."""
    found: list[tuple[str, str]] = []
    for path in sorted(root.glob("hub-*.log")):
        who = path.stem.removeprefix("hub-")
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict) or entry.get("level") not in (
                    "warning", "error", "critical"):
                continue
            at = str(entry.get("timestamp", ""))
            text = f"{at[11:23]} {who} {entry.get('level')} {entry.get('logger')}: " \
                   f"{entry.get('event')}"
            found.append((at, text[:240]))
    return [text for _, text in sorted(found)[-limit:]]


def post_mortem(hub_url: str, systems: dict[str, Engine], keys: list[str]) -> list[str]:
    """What the hub knows of each order in ``keys``: its trace (timeline and each system's
    state) and its sync state, the base of the next merge. Read while the servers still run,
    so a failure seen once (in CI) can be explained from its output alone."""
    out: list[str] = []
    store = Store(hub_url)
    try:
        for key in keys:
            try:
                text = render(trace(store, key, systems=systems))
                with systems["crm"].connect() as conn:
                    crm_id = conn.execute(select(crm_order.c.order_id).where(
                        crm_order.c.order_number == key)).scalar()
                with store.engine.connect() as conn:
                    state = conn.execute(
                        select(sync_state.c.state).join(id_xref, and_(
                            id_xref.c.kind == sync_state.c.kind,
                            id_xref.c.canonical_id == sync_state.c.canonical_id))
                        .where(id_xref.c.kind == "order", id_xref.c.system == "crm",
                               id_xref.c.local_key == str(crm_id))).scalar()
                out.append(f"{text}\nsync state: {state}")
            except (HubError, SQLAlchemyError) as exc:
                out.append(f"{key}: could not be traced: {exc}")
    finally:
        store.dispose()
    return out


def _converge(config: Config, crm: Engine, erp: Engine, hub: Engine, submitted: list[str],
              procs: HubProcesses | ApartDaemon) -> tuple[float | None, Reconciliation]:
    """Wait until the reconciliation passes (or the timeout); the moment it first passed."""
    deadline = time.monotonic() + config.converge_timeout
    last = Reconciliation()
    while time.monotonic() < deadline:
        procs.check()
        try:
            if progress(crm) >= len(submitted) or _count(erp) >= len(submitted):
                last = reconcile(crm, erp, hub, submitted)
                if last.ok:
                    return time.monotonic(), last
        except SQLAlchemyError as exc:
            log.warning("reconciliation could not read: %s", exc)
        time.sleep(1.0)
    with contextlib.suppress(SQLAlchemyError):
        last = reconcile(crm, erp, hub, submitted)
    return None, last


def describe_machine() -> str:
    cpus = len(os.sched_getaffinity(0))
    mem = 0.0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f
                      if line.startswith("model name")), "")
    return (f"{platform.node()}: {cpus} CPUs ({model}), {mem:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
