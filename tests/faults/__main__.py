"""The fault suite from the command line (``make faults`` runs the full one)::

    .venv/bin/python -m tests.faults --orders 20000 --broker-restarts 10 --kills 20 \\
        --mariadb-outages 2 --pg-restarts 1 --memory-alarms 1

Prints a Jepsen-style table; exits 1 when an order was lost, doubled or wrong, a fault could
not be injected, or the hub did not converge in time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
from pathlib import Path

from tests.faults.run import Config, describe_machine, run


def _exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="orders submitted per second")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of the daemon or a part")
    parser.add_argument("--broker-restarts", type=int, default=2)
    parser.add_argument("--memory-alarms", type=int, default=1)
    parser.add_argument("--mariadb-outages", type=int, default=1)
    parser.add_argument("--pg-restarts", type=int, default=1)
    parser.add_argument("--no-erp-changes", action="store_true",
                        help="leave out the ERP clerk's confirmations")
    parser.add_argument("--apart", action="store_true",
                        help="run the hub as one daemon with HUB_APART=erp-applier (killing a "
                             "part kills its forked ERP applier), not a process per part")
    parser.add_argument("--converge-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the run's temp directory goes (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the hub's logs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("sqlalchemy").setLevel(logging.CRITICAL)  # outages are expected here
    logging.getLogger("alembic").setLevel(logging.WARNING)
    config = Config(
        orders=args.orders, rate=args.rate, converge_timeout=args.converge_timeout,
        seed=args.seed, keep=args.keep, erp_changes=not args.no_erp_changes, apart=args.apart,
        counts={"kill": args.kills, "broker-restart": args.broker_restarts,
                "memory-alarm": args.memory_alarms, "mariadb-outage": args.mariadb_outages,
                "pg-restart": args.pg_restarts},
    )
    # SIGTERM (and SIGINT, which a background job ignores) end the run through its cleanup:
    # every private server and hub process is stopped.
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    started = dt.datetime.now(dt.UTC)
    report = run(config, args.workdir)
    print(f"\nfault run of {started:%Y-%m-%d %H:%M} UTC on {describe_machine()}")
    print(report.details())
    for fault in report.faults:
        if fault.error:
            print(f"fault {fault.kind} failed: {fault.error}")
    if report.unexpected_exits:
        print(f"parts that exited unasked: {report.unexpected_exits}")
    if not report.ok:
        print(f"logs kept in {report.workdir}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
