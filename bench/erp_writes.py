"""What creating orders in the ERP (MariaDB through ODBC) costs the hub, by rows per INSERT.

    .venv/bin/python -m bench.erp_writes              # 20 rounds of 100 orders each way (~20 s)
    .venv/bin/python -m bench.erp_writes --quick      # 5 rounds

The ERP applier creates a batch of new orders in one transaction: the headers in one
multi-row ``INSERT`` and the lines in as few as it can. MariaDB Connector/ODBC binds a
statement's parameters one at a time and copies its whole array of them each time, so the
CPU a statement costs grows with the square of its parameters. This creates batches of
``--orders`` orders of 5 lines (through :meth:`ErpOrders.insert`, as the applier does) with
the hub's engine, :data:`hub.store.engine.ODBC_ROWS_PER_INSERT` rows a statement, against
SQLAlchemy's default of 1,000 (the baseline), alternating, and prints the CPU time and wall
time a batch took in this process. Everything is written to a throwaway database
``bench_<random>_erp`` on the MariaDB of ``HUB_TEST_MARIADB_URL``, dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bench.common import say
from bench.stack import MARIADB_URL, drop_database
from connectors.erp.orders import ErpOrders, NewOrder
from hub.demo.reference import create_schemas, seed
from hub.demo.seed_data import CUSTOMERS, ITEMS
from hub.model.records import Order, OrderLine
from hub.store.engine import ODBC_ROWS_PER_INSERT, make_engine

#: SQLAlchemy's own number of rows per multi-row INSERT, the hub's before.
DEFAULT_ROWS = 1_000


def _batch(count: int) -> list[NewOrder]:
    orders = ErpOrders()
    batch: list[NewOrder] = []
    for i in range(count):
        order = Order(
            order_number=f"SO-{i:06d}", crm_id=str(uuid.uuid4()),
            customer=CUSTOMERS[i % len(CUSTOMERS)].number, status="submitted", currency="EUR",
            requested_date=dt.date(2026, 12, 1), customer_po=f"PO-{i}", notes="",
            lines=tuple(
                OrderLine(line_no=n + 1, product_code=ITEMS[n % len(ITEMS)].code,
                          description="Epoxy resin, 25 kg drum", quantity=Decimal("12.000"),
                          unit="kg", unit_price=Decimal("18.4500"))
                for n in range(5)),
        )
        batch.append(orders.prepare(order, confirmed=True))
    return batch


def _create(engine: Engine, rows: int, batch: Sequence[NewOrder]) -> tuple[float, float]:
    """CPU and wall seconds to create ``batch`` in one transaction, ``rows`` a statement."""
    cpu, wall = time.process_time(), time.perf_counter()
    with engine.begin() as conn:
        ErpOrders().insert(conn.execution_options(insertmanyvalues_page_size=rows), batch)
    return time.process_time() - cpu, time.perf_counter() - wall


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.erp_writes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="batches each way")
    parser.add_argument("--orders", type=int, default=100, help="orders of 5 lines a batch")
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 5
    url = make_url(MARIADB_URL).set(database=f"bench_{uuid.uuid4().hex[:6]}_erp"
                                    ).render_as_string(hide_password=False)
    create_schemas({"erp": url})
    seed({"erp": url})
    engine = make_engine(url, multirow_inserts=True)
    try:
        _create(engine, ODBC_ROWS_PER_INSERT, _batch(args.orders))  # warm-up, not timed
        timed: dict[int, list[tuple[float, float]]] = {DEFAULT_ROWS: [], ODBC_ROWS_PER_INSERT: []}
        for _ in range(args.rounds):
            for rows in timed:
                timed[rows].append(_create(engine, rows, _batch(args.orders)))
    finally:
        engine.dispose()
        drop_database(url)
    say(f"ERP: {args.rounds} batches of {args.orders} orders of 5 lines each way, "
        f"medians per batch")
    print("\n| rows per INSERT | CPU (this process) | wall | orders/s (wall) |")
    print("|---|---|---|---|")
    for rows, samples in timed.items():
        cpu = statistics.median(c for c, _ in samples)
        wall = statistics.median(w for _, w in samples)
        label = f"{rows:,}" + (" (SQLAlchemy's default: baseline)" if rows == DEFAULT_ROWS
                               else " (the hub)")
        print(f"| {label} | {cpu * 1000:.1f} ms | {wall * 1000:.1f} ms | "
              f"{args.orders / wall:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
