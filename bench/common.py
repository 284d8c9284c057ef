"""What every benchmark needs: the machine's description, a throwaway PostgreSQL database,
1 KB canonical messages, rates and the table they are printed in, and a consumer's effect (an
inbox row per message) with a meter that times it."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import resource
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import metadata

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from hub.bus.base import Incoming, Outgoing
from hub.headers import H_KEY, H_TYPE
from hub.model.messages import OrderChanged, encode
from hub.model.records import Order, OrderLine
from hub.store.bulk import insert_ignore
from hub.store.db import Store
from hub.store.engine import make_engine
from hub.store.inbox import Inbox
from hub.store.tables import inbox
from hub.store.types import utcnow

__all__ = [
    "BODY_BYTES",
    "STALL_SECONDS",
    "Machine",
    "Meter",
    "Rate",
    "Row",
    "check_claimed",
    "describe_machine",
    "format_table",
    "in_batches",
    "inbox_handler",
    "orders",
    "peak_rss_mib",
    "prepare_inbox",
    "say",
    "throwaway_pg_database",
    "watchdog",
]

BODY_BYTES = 1024
#: No message for this long while consuming means something is wrong.
STALL_SECONDS = 60.0


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the machine ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    cpus: int
    ram_gib: float
    cpu_model: str
    python: str
    rabbitmq: str
    postgresql: str
    libraries: str

    def lines(self) -> list[str]:
        return [
            f"CPU: {self.cpus} x {self.cpu_model}; RAM {self.ram_gib:.1f} GiB",
            f"RabbitMQ {self.rabbitmq}; PostgreSQL {self.postgresql}",
            f"Python {self.python}; {self.libraries}",
        ]


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def describe_machine(rabbitmq_version: str, pg_url: str) -> Machine:
    """The machine and server versions; ``rabbitmq_version`` comes from a live connection."""
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            pg_version = str(conn.execute(text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()
    libraries = ", ".join(
        f"{name} {_version(name)}" for name in ("kombu", "amqp", "SQLAlchemy", "psycopg")
    )
    return Machine(
        cpus=len(os.sched_getaffinity(0)), ram_gib=_ram_gib(), cpu_model=_cpu_model(),
        python=platform.python_version(), rabbitmq=rabbitmq_version,
        postgresql=pg_version.split()[0], libraries=libraries,
    )


# -- a throwaway database ---------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_pg_database(base_url: str, prefix: str = "bench") -> Iterator[str]:
    """Create ``<prefix>_<random>`` on the server of ``base_url``; drop it (FORCE) afterwards.

    Yields the new database's URL. Raises the driver's error when the server is unreachable.
    """
    base = make_url(base_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base_url, pool_size=1)
    try:
        with admin.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                f'CREATE DATABASE "{name}"'
            )
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
                )
    finally:
        admin.dispose()


# -- messages ---------------------------------------------------------------------------------


def _order_template() -> OrderChanged:
    lines = tuple(
        OrderLine(
            line_no=i + 1, erp_line=i, product_code=f"RESIN-{100 + i}",
            description="Epoxy resin, 25 kg drum", quantity=Decimal("12.000"), unit="kg",
            unit_price=Decimal("18.4500"),
        )
        for i in range(2)
    )
    order = Order(
        order_number="SO-000000", customer="C00042", status="confirmed", currency="EUR",
        customer_po="PO-778812", order_date=dt.date(2026, 11, 23),
        requested_date=dt.date(2026, 12, 1), total_amount=Decimal("442.80"), notes="",
        lines=lines,
    )
    return OrderChanged(
        correlation_key="SO-000000", source="crm", source_version="1", order=order,
        occurred_at=dt.datetime(2026, 11, 23, 12, 0, 0, 123456),
    )


def orders(count: int, lane: str) -> list[Outgoing]:
    """``count`` canonical ``order.changed`` messages of ``BODY_BYTES`` JSON each, with fresh
    ids, routed ``<lane>.order.changed.p0`` so each benchmark lane reaches its own queue."""
    template = _order_template()
    padding = BODY_BYTES - len(encode(template))
    if padding < 0:
        raise AssertionError(f"the template order is {-padding} bytes over {BODY_BYTES}")
    order = template.order.model_copy(update={"notes": "n" * padding})
    routing = f"{lane}.order.changed.p0"
    out: list[Outgoing] = []
    for i in range(count):
        number = f"SO-{i % 1_000_000:06d}"
        message = template.model_copy(update={
            "message_id": uuid.uuid4(), "correlation_key": number,
            "order": order.model_copy(update={"order_number": number}),
        })
        out.append(Outgoing(
            message_id=str(message.message_id), routing_key=routing, body=encode(message),
            headers={H_TYPE: message.type, H_KEY: message.correlation_key},
        ))
    return out


# -- rates and the table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """``messages`` handled in ``seconds`` (one timed run)."""

    messages: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("inf")

    @classmethod
    def since(cls, messages: int, started: float) -> Rate:
        return cls(messages, time.perf_counter() - started)


@dataclass(frozen=True)
class Row:
    """One line of the table: a measurement, its naive baseline and the hub's way."""

    what: str
    baseline_label: str
    baseline: Rate | None
    hub_label: str
    hub: Rate

    @property
    def speedup(self) -> float | None:
        if self.baseline is None:
            return None
        return self.hub.per_second / self.baseline.per_second


def _count(rate: Rate) -> str:
    return f"{rate.per_second:,.0f} msg/s ({rate.messages:,} in {rate.seconds:.2f} s)"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (readable as plain text too)."""
    out = [
        "| measurement | naive baseline | baseline rate | hub | hub rate | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = _count(row.baseline) if row.baseline else "-"
        speedup = f"{row.speedup:.1f}x" if row.speedup is not None else "-"
        out.append(
            f"| {row.what} | {row.baseline_label} | {base} | {row.hub_label} | "
            f"{_count(row.hub)} | {speedup} |"
        )
    return "\n".join(out)


# -- counting what a consumer has settled -----------------------------------------------------


@dataclass
class Meter:
    """Counts settled messages. The clock starts once ``warmup`` are done; ``stop`` is set when
    ``total`` are, or ``cap`` seconds after the clock started."""

    warmup: int
    total: int
    #: Stop counting this many seconds after the clock started (baselines; None: never).
    cap: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    count: int = 0
    counted_from: int = 0
    started: float = 0.0
    last_progress: float = field(default_factory=time.monotonic)

    def add(self, settled: int) -> None:
        self.count += settled
        self.last_progress = time.monotonic()
        if not self.started and self.count >= self.warmup:
            self.started = time.perf_counter()
            self.counted_from = self.count
        if self.count >= self.total or (
            self.cap is not None and self.started
            and time.perf_counter() - self.started >= self.cap
        ):
            self.stop.set()

    def rate(self) -> Rate:
        if not self.started:
            raise RuntimeError(f"only {self.count} of {self.total} messages were consumed")
        return Rate.since(self.count - self.counted_from, self.started)


@contextlib.contextmanager
def watchdog(meter: Meter, what: str) -> Iterator[list[str]]:
    """Set ``meter.stop`` if no message is settled for ``STALL_SECONDS``; yields a list that
    names the stall, so the caller can fail instead of reporting a partial figure."""
    stalled: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(1.0):
            if time.monotonic() - meter.last_progress > STALL_SECONDS:
                stalled.append(f"{what}: no progress for {STALL_SECONDS:g} s "
                               f"({meter.count} of {meter.total} consumed)")
                meter.stop.set()
                return

    thread = threading.Thread(target=watch, name="bench-watchdog", daemon=True)
    thread.start()
    try:
        yield stalled
    finally:
        done.set()
        thread.join(timeout=5)


def inbox_handler(store: Store, consumer: str, meter: Meter) -> Callable[
    [Sequence[Incoming]], list[BaseException | None]
]:
    """A batch handler whose effect is the inbox rows of the whole batch, in one transaction."""

    def handle(batch: Sequence[Incoming]) -> list[BaseException | None]:
        with store.begin() as conn:
            Inbox.claim(conn, consumer, [m.message_id for m in batch])
        meter.add(len(batch))
        return [None] * len(batch)

    return handle


def prepare_inbox(store: Store, consumer: str, rows: int) -> None:
    """Give ``consumer`` an inbox of ``rows`` older ids and refresh the planner's statistics
    (``ANALYZE``), as in a store that has been running for a while.

    On a fresh store without statistics PostgreSQL's generic plan for the inbox look-up may
    scan every row of the consumer (psycopg prepares statements after five executions), which
    makes each claim slower as the inbox grows: that is a cold start, not the steady state.
    """
    old = utcnow() - dt.timedelta(days=1)
    with store.begin() as conn:
        for start in range(0, rows, 5000):
            insert_ignore(conn, inbox, [
                {"consumer": consumer, "message_id": str(uuid.uuid4()), "processed_at": old}
                for _ in range(start, min(rows, start + 5000))
            ])
        conn.exec_driver_sql("ANALYZE")


def claimed(store: Store, consumer: str) -> int:
    with store.begin() as conn:
        return int(conn.execute(
            select(func.count()).select_from(inbox).where(inbox.c.consumer == consumer)
        ).scalar_one())


def check_claimed(store: Store, consumer: str, expected: int) -> None:
    found = claimed(store, consumer)
    if found != expected:
        raise RuntimeError(f"{consumer}: {found} inbox rows, expected {expected}")


def in_batches(messages: Sequence[Outgoing], size: int) -> list[Sequence[Outgoing]]:
    return [messages[i:i + size] for i in range(0, len(messages), size)]


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

