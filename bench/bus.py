"""How fast the bus moves 1 KB orders on this machine, each figure beside its naive baseline.

    .venv/bin/python -m bench.bus             # 20,000 messages per measurement (~3.5-4.5 min)
    .venv/bin/python -m bench.bus --quick     # 2,000 (under a minute)

Uses the real servers (RabbitMQ, PostgreSQL) and a temporary SQLite file. Everything it creates
is named ``bench-<random>`` (RabbitMQ) or ``bench_<random>`` (PostgreSQL) and removed at the end,
also when a measurement fails. Each measurement is warmed up first (the warm-up messages are not
timed) and timed once: medians of several runs would take too long for the baselines. The
one-message-at-a-time baselines stop after ``--baseline-seconds`` (25 s; 5 s with ``--quick``)
and report the rate up to then: their cost per message does not change with the count, and
20,000 messages at their pace would take minutes each.

What is compared:

1. publish to a durable quorum queue: kombu with ``confirm_publish`` (one confirm per message)
   against :meth:`RabbitBus.publish` in batches of 500 (pipelined confirms);
2. consume with an idempotent inbox row per message in PostgreSQL: kombu with prefetch 1, one
   transaction and one ack per message, against :meth:`RabbitBus.consume` with prefetch 200 and
   batches of 100 claimed in one transaction (plus the journal the hub writes per batch);
3. the embedded bus on SQLite and on PostgreSQL: batches of 1 against batches of 500 (publish)
   and 100 (consume), the handler claiming the batch in one transaction.

Each consumer's inbox first gets ``--inbox-rows`` older ids and ``ANALYZE``, as in a store that
has been running; ``--inbox-rows 0`` measures a fresh store without planner statistics.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from amqp import exceptions as amqp_exc
from kombu import connection as kombu_connection
from kombu import entity as kombu_entity
from kombu import messaging as kombu_messaging

from bench.common import (
    BODY_BYTES,
    Meter,
    Rate,
    Row,
    check_claimed,
    describe_machine,
    format_table,
    in_batches,
    inbox_handler,
    orders,
    peak_rss_mib,
    prepare_inbox,
    say,
    throwaway_pg_database,
    watchdog,
)
from hub.bus.base import Bus, Outgoing, Subscription
from hub.bus.embedded import EmbeddedBus
from hub.bus.rabbitmq import RabbitBus
from hub.store.db import Store
from hub.store.inbox import Inbox

__all__ = ["main"]

log = logging.getLogger("bench.bus")

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PREFIX = "bench-"
PUBLISH_BATCH = 500
CONSUME_BATCH = 100
PREFETCH = 200
#: Warm-up messages per lane: published (untimed) before the timed ones, consumed (untimed)
#: before the timed ones in the same consumer session.
WARMUP_NAIVE = 50
WARMUP_BATCHED = 1000

# kombu's own type hints are partial; these are used as plain (untyped) calls.
Connection: Any = kombu_connection.Connection
Consumer: Any = kombu_messaging.Consumer
Producer: Any = kombu_messaging.Producer
Exchange: Any = kombu_entity.Exchange
Queue: Any = kombu_entity.Queue


# -- RabbitMQ ---------------------------------------------------------------------------------


def naive_publish(amqp_url: str, exchange: str, messages: Sequence[Outgoing],
                  cap: float | None = None) -> Rate:
    """kombu, one ``Producer.publish`` per message, each waiting for its confirm; stops after
    ``cap`` seconds if given (the rate counts what was published)."""
    with Connection(amqp_url, transport_options={"confirm_publish": True}) as conn:
        producer = Producer(conn.channel(), exchange=Exchange(exchange, type="topic",
                                                              durable=True), auto_declare=False)
        started = time.perf_counter()
        deadline = started + cap if cap is not None else float("inf")
        sent = 0
        for m in messages:
            producer.publish(
                m.body, routing_key=m.routing_key, delivery_mode=2,
                content_type="application/json", content_encoding="utf-8",
                message_id=m.message_id, headers=dict(m.headers),
            )
            sent += 1
            if time.perf_counter() >= deadline:
                break
        return Rate.since(sent, started)


def batched_publish(bus: Bus, messages: Sequence[Outgoing], batch: int,
                    cap: float | None = None) -> Rate:
    """``bus.publish`` in batches of ``batch``; stops after ``cap`` seconds if given."""
    chunks = in_batches(messages, batch)
    started = time.perf_counter()
    deadline = started + cap if cap is not None else float("inf")
    sent = 0
    for chunk in chunks:
        bus.publish(chunk)
        sent += len(chunk)
        if time.perf_counter() >= deadline:
            break
    return Rate.since(sent, started)


def naive_consume(amqp_url: str, queue: str, store: Store, consumer: str, meter: Meter) -> Rate:
    """kombu, prefetch 1: per message one PostgreSQL transaction (its inbox row), then one ack."""

    def on_message(message: Any) -> None:
        with store.begin() as conn:
            Inbox.claim(conn, consumer, [str(message.properties["message_id"])])
        message.ack()
        meter.add(1)

    with Connection(amqp_url) as conn, watchdog(meter, "naive consume") as stalled:
        kombu_consumer = Consumer(
            conn.channel(), queues=[Queue(queue, no_declare=True)], on_message=on_message,
            prefetch_count=1, no_ack=False, auto_declare=False,
        )
        kombu_consumer.consume()
        while not meter.stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=1.0)
        kombu_consumer.cancel()
    if stalled:
        raise RuntimeError(stalled[0])
    return meter.rate()


def bus_consume(bus: Bus, sub: Subscription, store: Store, consumer: str, meter: Meter,
                batch_size: int, what: str) -> Rate:
    """``bus.consume`` until ``meter`` stops it; timed to its return."""
    with watchdog(meter, what) as stalled:
        bus.consume(sub, inbox_handler(store, consumer, meter), meter.stop,
                    batch_size=batch_size)
        rate = meter.rate()
    if stalled:
        raise RuntimeError(stalled[0])
    return rate


def timed_consume(store: Store, consumer: str, meter: Meter, inbox_rows: int,
                  consume: Callable[[str, Meter], Rate]) -> Rate:
    """Run ``consume`` for ``consumer`` (after giving it an inbox of ``inbox_rows`` and fresh
    statistics), then check that every message it counted left exactly one inbox row."""
    if inbox_rows:
        prepare_inbox(store, consumer, inbox_rows)
    rate = consume(consumer, meter)
    check_claimed(store, consumer, inbox_rows + meter.count)
    return rate


@dataclass
class RabbitNames:
    """Everything the benchmark declared on the broker, to delete at the end."""

    queues: list[str] = field(default_factory=list)
    exchanges: list[str] = field(default_factory=list)

    def delete(self, amqp_url: str, patience: float = 120.0) -> None:
        """Delete them all; waits up to ``patience`` seconds for a broker that is away (the
        repository's fault tests stop it now and then)."""
        names = [*self.queues, *self.exchanges]
        if any(not n.startswith(PREFIX) for n in names):
            raise AssertionError(f"refusing to delete names without {PREFIX!r}: {names}")
        deadline = time.monotonic() + patience
        while True:
            try:
                self._delete_once(amqp_url)
                return
            except (OSError, amqp_exc.ConnectionError) as exc:  # the broker is restarting
                if time.monotonic() > deadline:
                    raise
                say(f"cannot reach RabbitMQ to clean up ({exc}); trying again in 5 s")
                time.sleep(5)

    def _delete_once(self, amqp_url: str) -> None:
        with Connection(amqp_url, connect_timeout=5) as conn:
            channel = conn.channel()
            for kind, items in (("queue", self.queues), ("exchange", self.exchanges)):
                for name in items:
                    try:
                        if kind == "queue":
                            channel.queue_delete(name)
                        else:
                            channel.exchange_delete(name)
                    except amqp_exc.NotFound:
                        channel = conn.channel()  # the error closed the channel


def rabbit_rows(args: argparse.Namespace, store: Store, tag: str, names: RabbitNames,
                versions: dict[str, str]) -> list[Row]:
    n, cap = args.messages, args.baseline_seconds
    exchange = f"{PREFIX}{tag}.events"
    hub_bus = RabbitBus(args.amqp_url, store, exchange=exchange, prefetch=PREFETCH)
    one_bus = RabbitBus(args.amqp_url, store, exchange=exchange, prefetch=1)
    topo = hub_bus.topology
    names.exchanges += [topo.exchange, topo.dead_letter_exchange]
    names.queues.append(topo.dead_letter_queue)
    lanes = ("naive", "hub") if args.skip_bus_batch1 else ("naive", "hub", "one")
    subs = {lane: Subscription(f"{PREFIX}{tag}-{lane}", (f"{lane}.#",)) for lane in lanes}
    for sub in subs.values():
        names.queues += [sub.queue, *topo.retry_queues(sub.queue)]
    rows: list[Row] = []
    try:
        for sub in subs.values():
            hub_bus.declare(sub)
        versions["rabbitmq"] = _rabbit_version(args.amqp_url)

        say(f"publish: naive, {WARMUP_NAIVE} + {n} messages, a confirm each (<= {cap:g} s) ...")
        naive_publish(args.amqp_url, exchange, orders(WARMUP_NAIVE, "naive"))
        naive_pub = naive_publish(args.amqp_url, exchange, orders(n, "naive"), cap)
        say(f"publish: hub, {WARMUP_BATCHED} + {n} in batches of {PUBLISH_BATCH} ...")
        batched_publish(hub_bus, orders(WARMUP_BATCHED, "hub"), PUBLISH_BATCH)
        hub_pub = batched_publish(hub_bus, orders(n, "hub"), PUBLISH_BATCH)
        rows.append(Row(
            f"RabbitMQ publish, persistent {BODY_BYTES} B JSON, durable quorum queue",
            "kombu confirm_publish: a confirm per message", naive_pub,
            f"RabbitBus.publish, batches of {PUBLISH_BATCH} (pipelined confirms)", hub_pub,
        ))

        say(f"consume: naive (kombu, prefetch 1, a transaction + an ack per message; "
            f"<= {cap:g} s) ...")
        naive_con = timed_consume(
            store, "bench-naive", Meter(WARMUP_NAIVE, WARMUP_NAIVE + naive_pub.messages, cap),
            args.inbox_rows,
            lambda c, m: naive_consume(args.amqp_url, subs["naive"].queue, store, c, m),
        )
        say(f"consume: hub (RabbitBus, prefetch {PREFETCH}, batches of {CONSUME_BATCH}) ...")
        hub_con = timed_consume(
            store, "bench-hub", Meter(WARMUP_BATCHED, WARMUP_BATCHED + n), args.inbox_rows,
            lambda c, m: bus_consume(hub_bus, subs["hub"], store, c, m, CONSUME_BATCH,
                                     "hub consume"),
        )
        rows.append(Row(
            "RabbitMQ consume + inbox row in PostgreSQL",
            "kombu prefetch 1: a transaction + an ack per message", naive_con,
            f"RabbitBus.consume prefetch {PREFETCH}, batch {CONSUME_BATCH}: a transaction "
            "+ an ack per batch (+ journal)", hub_con,
        ))

        if "one" in subs:
            say(f"consume: RabbitBus itself, prefetch 1, batches of 1 (<= {cap:g} s) ...")
            batched_publish(hub_bus, orders(WARMUP_NAIVE + n, "one"), PUBLISH_BATCH)
            one_con = timed_consume(
                store, "bench-one", Meter(WARMUP_NAIVE, WARMUP_NAIVE + n, cap),
                args.inbox_rows,
                lambda c, m: bus_consume(one_bus, subs["one"], store, c, m, 1,
                                         "RabbitBus batch 1"),
            )
            rows.append(Row(
                "RabbitMQ consume + inbox row, the hub's code both sides",
                "RabbitBus.consume prefetch 1, batch 1", one_con,
                f"RabbitBus.consume prefetch {PREFETCH}, batch {CONSUME_BATCH}", hub_con,
            ))
    finally:
        one_bus.close()
        hub_bus.close()
    return rows


def _rabbit_version(amqp_url: str) -> str:
    with Connection(amqp_url) as conn:
        conn.connect()
        version = conn.connection.server_properties.get("version", "?")
    return version.decode() if isinstance(version, bytes) else str(version)


# -- the embedded bus -------------------------------------------------------------------------


def embedded_rows(store: Store, label: str, n: int, cap: float, inbox_rows: int) -> list[Row]:
    """Publish and consume through :class:`EmbeddedBus` on ``store``: batches of 1 (each run
    capped at ``cap`` seconds) against batches of ``PUBLISH_BATCH`` / ``CONSUME_BATCH``."""
    naive_pub, naive_con = embedded_lane(store, label, "e-naive", (1, 1), WARMUP_NAIVE, n, cap,
                                         inbox_rows)
    hub_pub, hub_con = embedded_lane(store, label, "e-hub", (PUBLISH_BATCH, CONSUME_BATCH),
                                     WARMUP_BATCHED, n, None, inbox_rows)
    return [
        Row(f"embedded bus on {label}: publish", "batches of 1 (a transaction each)",
            naive_pub, f"batches of {PUBLISH_BATCH}", hub_pub),
        Row(f"embedded bus on {label}: consume + inbox row",
            "batch 1: lease, handler and settle transactions per message",
            naive_con, f"batch {CONSUME_BATCH}: the same per batch", hub_con),
    ]


def embedded_lane(store: Store, label: str, lane: str, batches: tuple[int, int], warmup: int,
                  n: int, cap: float | None, inbox_rows: int) -> tuple[Rate, Rate]:
    """Publish ``warmup`` + ``n`` messages in batches of ``batches[0]``, then consume them in
    batches of ``batches[1]``; returns the timed (post-warm-up) publish and consume rates."""
    pub_batch, con_batch = batches
    limit = f" (<= {cap:g} s each)" if cap else ""
    say(f"embedded on {label}: publish batches of {pub_batch}, consume batches of "
        f"{con_batch}, {warmup} + {n} messages{limit} ...")
    bus = EmbeddedBus(store, batch_size=con_batch, poll_interval=0.05)
    sub = Subscription(f"{PREFIX}{lane}", (f"{lane}.#",))
    try:
        bus.declare(sub)
        batched_publish(bus, orders(warmup, lane), pub_batch)
        pub = batched_publish(bus, orders(n, lane), pub_batch, cap)
        con = timed_consume(
            store, f"bench-{lane}", Meter(warmup, warmup + pub.messages, cap), inbox_rows,
            lambda c, m: bus_consume(bus, sub, store, c, m, con_batch,
                                     f"embedded {label} {lane}"),
        )
    finally:
        bus.close()
    return pub, con


# -- the run ----------------------------------------------------------------------------------


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so that the clean-up in ``finally`` blocks runs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000,
                        help="messages per timed measurement (default 20000)")
    parser.add_argument("--quick", action="store_true",
                        help="2000 messages, baselines capped at 5 s (under a minute)")
    parser.add_argument("--baseline-seconds", type=float, default=None,
                        help="stop a one-message-at-a-time baseline after this long and "
                             "report the rate so far (default 25; 5 with --quick)")
    parser.add_argument("--inbox-rows", type=int, default=20_000,
                        help="ids already in each consumer's inbox before it starts, with "
                             "ANALYZE run, as in a store that has been running (default "
                             "20000; 0: a fresh store without statistics)")
    parser.add_argument("--skip-bus-batch1", action="store_true",
                        help="leave out RabbitBus itself at prefetch 1 / batch 1")
    parser.add_argument("--amqp-url", default=AMQP_URL)
    parser.add_argument("--pg-url", default=PG_URL,
                        help="a database on the PostgreSQL server; the benchmark creates "
                             "and drops its own beside it")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages = 2000
    if args.baseline_seconds is None:
        args.baseline_seconds = 5.0 if args.quick else 25.0
    if args.messages < 1 or args.baseline_seconds <= 0 or args.inbox_rows < 0:
        parser.error("--messages, --baseline-seconds and --inbox-rows must be positive")
    return args


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> str:
    tag = uuid.uuid4().hex[:8]
    names = RabbitNames()
    versions: dict[str, str] = {}
    rows: list[Row] = []
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        with throwaway_pg_database(args.pg_url) as pg_url, \
                tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            pg = Store(pg_url)
            sqlite = Store(f"sqlite:///{Path(tmp) / 'hub.db'}")
            try:
                pg.migrate()
                sqlite.migrate()
                rows += rabbit_rows(args, pg, tag, names, versions)
                for store, label in ((sqlite, "SQLite"), (pg, "PostgreSQL")):
                    rows += embedded_rows(store, label, args.messages, args.baseline_seconds,
                                          args.inbox_rows)
            finally:
                pg.dispose()
                sqlite.dispose()
    finally:
        if names.queues or names.exchanges:
            names.delete(args.amqp_url)
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()[0]
    machine = describe_machine(versions.get("rabbitmq", "?"), args.pg_url)
    cmd = " ".join([".venv/bin/python -m bench.bus", *(sys.argv[1:] if argv is None else argv)])
    return "\n".join([
        f"# {cmd} ({time.strftime('%Y-%m-%d')}; wall time {elapsed:.0f} s)",
        *(f"# {line}" for line in machine.lines()),
        f"# {args.messages:,} timed messages per hub figure, after an untimed warm-up; one "
        f"timed run each. Baselines stop after {args.baseline_seconds:g} s. Each consumer's "
        f"inbox starts with {args.inbox_rows:,} ids"
        + (" (statistics refreshed)." if args.inbox_rows else " (a fresh store)."),
        "",
        format_table(rows),
        "",
        f"peak RSS of the benchmark process: {peak_rss_mib():.0f} MiB; 1-minute load "
        f"average {load_before:.2f} before, {load_after:.2f} after (other work on the machine "
        "shows here)",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
    print(run(args, argv), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
