"""How fast the hub syncs CRM orders into the ERP on the real stack, beside a naive baseline.

    .venv/bin/python -m bench.orders             # 20,000-order backlog, 60 s at 100 orders/s
    .venv/bin/python -m bench.orders --quick     # 2,000-order backlog, 20 s at 100 orders/s

The stack is the production one on this machine: CRM, LIMS and hub store on PostgreSQL, ERP on
MariaDB through ODBC, RabbitMQ; the daemon is ``python -m hub run`` in its own process.

1. **Backlog**: ``--orders`` submitted CRM orders of 5 lines wait in the CRM before the daemon
   starts. Timed from the daemon being ready until every CRM order carries its ERP number
   (the round trip: CRM poll, bus, ERP write, ERP status back, CRM write).
2. **Naive baseline** in the same run, on a fresh stack: the same daemon with batching off
   (``HUB_BATCH_SIZE=1``, ``HUB_PREFETCH=1``, ``HUB_PUBLISH_BATCH=1``: a confirm per message and
   one transaction per message). It drains ``--baseline-orders`` (its rate does not change
   with the backlog's size, and 20,000 at its pace would take many minutes).
3. **Latency**: the daemon with its defaults (poll interval 1 s) while orders arrive steadily
   at ``--rate`` per second, each its own CRM transaction; latency is from the CRM commit to
   the order being visible in the ERP (read every 50 ms, so up to 50 ms late).

The daemon's peak resident memory (VmHWM) is reported for each run, and for a drain the CPU
time each order cost the daemon and each server (PostgreSQL, MariaDB, RabbitMQ): on two cores,
a rate of N orders/s needs their sum under 2,000/N ms.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select, text

from bench.common import describe_machine, say
from bench.stack import PG_URL, Stack, count, cpu_seconds, running
from connectors.crm.schema import crm_order, crm_order_line
from connectors.erp.schema import ordr
from hub.demo.backlog import load_backlog, order_rows
from hub.store.types import utcnow

__all__ = ["main"]

log = logging.getLogger("bench.orders")

NAIVE = {"HUB_BATCH_SIZE": "1", "HUB_PREFETCH": "1", "HUB_PUBLISH_BATCH": "1"}


@dataclass
class Drain:
    orders: int
    seconds: float
    peak_rss_mib: float
    peak_pss_mib: float
    #: RSS (MiB) when half the orders were back, and at the end: a daemon that holds on to
    #: memory per order (as the ERP's ODBC driver once made it) grows between the two
    half_rss_mib: float
    end_rss_mib: float
    #: CPU milliseconds per order during the drain: the daemon's and each server's
    cpu_ms: dict[str, float]

    @property
    def per_second(self) -> float:
        return self.orders / self.seconds if self.seconds else 0.0

    def growth(self) -> str:
        """e.g. ``RSS 160 -> 163 MiB over the second half``."""
        return f"RSS {self.half_rss_mib:.0f} -> {self.end_rss_mib:.0f} MiB over the second half"

    def cpu(self) -> str:
        """e.g. ``daemon 2.9, PostgreSQL 1.1, ... = 5.3 ms`` (CPU per order)."""
        parts = ", ".join(f"{name} {ms:.2f}" for name, ms in self.cpu_ms.items())
        return f"{parts} = {sum(self.cpu_ms.values()):.2f} ms"


def drain(label: str, orders: int, log_dir: Path, timeout: float, **env: str) -> Drain:
    """Load a backlog on a fresh stack, start the daemon, time until every order is back."""
    stack = Stack(label)
    try:
        say(f"{label}: loading {orders:,} orders of 5 lines into the CRM")
        load_backlog(stack.engines["crm"], orders)
        # A CRM that holds a backlog this size has had its statistics taken by autovacuum;
        # one created seconds ago has not, and its line reads would scan every line.
        with stack.engines["crm"].begin() as conn:
            conn.execute(text("ANALYZE crm_order, crm_order_line"))
        with running(stack, log_dir, **env) as daemon:
            started = time.monotonic()
            cpu_before = cpu_seconds(daemon.pids())
            done = 0
            half = 0.0
            while done < orders:
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"{label}: {done:,} of {orders:,} after {timeout:.0f} s")
                time.sleep(0.5)
                now = daemon.sample_rss()
                if not half and done >= orders / 2:
                    half = now
                done = count(stack.engines["crm"], "SELECT count(*) FROM crm_order "
                             "WHERE erp_order_number IS NOT NULL")
            seconds = time.monotonic() - started
            cpu_after = cpu_seconds(daemon.pids())
            in_erp = count(stack.engines["erp"], "SELECT count(*) FROM ORDR")
            if in_erp != orders:
                raise AssertionError(f"{label}: {in_erp:,} ERP orders for {orders:,} CRM orders")
            end = daemon.sample_rss()
            rss, pss = daemon.peak_rss_mib, daemon.peak_pss_mib
        result = Drain(orders, seconds, rss, pss, half or end, end, {
            name: (cpu_after[name] - cpu_before[name]) * 1000 / orders for name in cpu_after})
        say(f"{label}: {orders:,} orders in {seconds:.1f} s = {orders / seconds:,.0f}/s, "
            f"peak RSS {rss:.0f} MiB, PSS {pss:.0f} MiB ({result.growth()}); "
            f"CPU per order: {result.cpu()}")
        return result
    finally:
        stack.close()


@dataclass
class Latency:
    samples: list[float]
    peak_rss_mib: float

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def steady(rate: float, seconds: float, log_dir: Path, **env: str) -> Latency:
    """Orders at ``rate``/s for ``seconds``; CRM commit to ERP visibility per order."""
    stack = Stack("latency")
    committed: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()
    try:
        with running(stack, log_dir, **env) as daemon:
            crm, erp = stack.engines["crm"], stack.engines["erp"]

            def watch() -> None:
                last = 0
                while not stop.is_set() or len(seen) < len(committed):
                    with erp.connect() as conn:
                        rows = conn.execute(select(ordr.c.DocEntry, ordr.c.U_CRM_ID)
                                            .where(ordr.c.DocEntry > last)).all()
                    now = time.monotonic()
                    for row in rows:
                        seen.setdefault(row.U_CRM_ID, now)
                        last = max(last, row.DocEntry)
                    if stop.is_set() and time.monotonic() - stopped_at[0] > 30:
                        return
                    time.sleep(0.05)

            stopped_at = [0.0]
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            total = int(rate * seconds)
            began = time.monotonic()
            for i in range(total):
                due = began + i / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                header, lines = order_rows(1, 10_000_000 + i, utcnow())
                with crm.begin() as conn:
                    conn.execute(insert(crm_order), header)
                    conn.execute(insert(crm_order_line), lines)
                committed[str(header[0]["order_id"])] = time.monotonic()
                if i % 50 == 0:
                    daemon.sample_rss()
            stopped_at[0] = time.monotonic()
            stop.set()
            watcher.join()
            daemon.sample_rss()
            rss = daemon.peak_rss_mib
        missing = [k for k in committed if k not in seen]
        if missing:
            raise AssertionError(f"{len(missing)} orders never reached the ERP")
        return Latency([seen[k] - committed[k] for k in committed], rss)
    finally:
        stack.close()


def _rabbitmq_version() -> str:
    out = subprocess.run(["rabbitmqctl", "-q", "version"], capture_output=True, text=True,
                         timeout=60, check=False).stdout
    return out.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.orders", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--orders", type=int, help="backlog size (20,000; 2,000 quick)")
    parser.add_argument("--baseline-orders", type=int, help="naive backlog (2,000; 500 quick)")
    parser.add_argument("--rate", type=float, default=100.0, help="steady orders per second")
    parser.add_argument("--seconds", type=float, help="steady duration (60; 20 quick)")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["backlog", "naive", "latency"], help="leave a part out")
    parser.add_argument("--env", action="append", default=[], metavar="HUB_NAME=VALUE",
                        help="a setting for the hub's daemon (not the naive baseline's "
                        "batching), e.g. HUB_WATERMARK_SWEEP=0 to compare")
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env)
    if bad := [name for name in extra if not name.startswith("HUB_")]:
        parser.error(f"--env takes HUB_ settings, not {', '.join(bad)}")
    orders = args.orders or (2_000 if args.quick else 20_000)
    baseline_orders = args.baseline_orders or (500 if args.quick else 2_000)
    seconds = args.seconds or (20.0 if args.quick else 60.0)
    logging.basicConfig(level=logging.WARNING)

    machine = describe_machine(_rabbitmq_version(), PG_URL)
    say("\n".join(machine.lines()))
    keep = os.environ.get("BENCH_KEEP") == "1"  # the daemons' logs too (see bench.stack)
    with (contextlib.nullcontext(tempfile.mkdtemp(prefix="bench-orders-")) if keep
          else tempfile.TemporaryDirectory(prefix="bench-orders-")) as tmp:
        if keep:
            say(f"daemon logs kept in {tmp}")
        log_dir = Path(tmp)
        hub: Drain | None = None
        naive: Drain | None = None
        latency: Latency | None = None
        if "backlog" not in args.skip:
            hub = drain("hub", orders, log_dir, timeout=max(600.0, orders / 20),
                        **extra)
        if "naive" not in args.skip:
            naive = drain("naive", baseline_orders, log_dir, timeout=1800.0,
                          **{**extra, **NAIVE})
        if "latency" not in args.skip:
            say(f"latency: {args.rate:.0f} orders/s for {seconds:.0f} s")
            latency = steady(args.rate, seconds, log_dir, **extra)

    print()
    print("| measurement | naive baseline | hub | speed-up |")
    print("|---|---|---|---|")
    if hub or naive:
        base = f"{naive.per_second:,.0f} orders/s ({naive.orders:,})" if naive else "-"
        mine = f"{hub.per_second:,.0f} orders/s ({hub.orders:,})" if hub else "-"
        ratio = f"{hub.per_second / naive.per_second:.1f}x" if hub and naive else "-"
        print(f"| backlog drain, CRM -> ERP -> CRM | {base} | {mine} | {ratio} |")
        rss = " / ".join(f"{d.peak_rss_mib:.0f} MiB (PSS {d.peak_pss_mib:.0f}; {d.growth()})"
                         for d in (naive, hub) if d)
        print(f"| daemon peak RSS (naive / hub) | | {rss} | |")
        cpu = " / ".join(d.cpu() for d in (naive, hub) if d)
        print(f"| CPU per order (naive / hub) | | {cpu} | |")
    if latency:
        print(f"| CRM commit -> ERP, {args.rate:.0f} orders/s for {seconds:.0f} s "
              f"| | p50 {statistics.median(latency.samples):.2f} s, "
              f"p95 {latency.quantile(0.95):.2f} s, max {max(latency.samples):.2f} s "
              f"| peak RSS {latency.peak_rss_mib:.0f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
