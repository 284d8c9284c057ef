"""The hub's exchanges and queues on RabbitMQ, and how they are declared.

    <exchange> (topic) ──pattern──▶ <queue> (quorum, x-delivery-limit, DLX = <dlx>)
                                      ▲   │ consumer publishes a failed message to
       expired after the delay ──────┘   ▼ <queue>.delay.<ms> (quorum, TTL = delay, DLX = "" →
                                           <queue>, at-least-once)
    <dlx> (fanout) ──▶ <dead-letters> ◀── the broker after too many deliveries; consumers for
                                           permanent errors; the relay moves them to the store

Every declaration is idempotent. A queue or exchange that already exists with other arguments
is a configuration problem, raised as :class:`PermanentError` naming the argument.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from amqp import exceptions as amqp_exc

from hub.bus.base import Subscription
from hub.errors import PermanentError

__all__ = ["Topology"]


@dataclass(frozen=True)
class Topology:
    """Names and arguments of everything the bus declares for one exchange."""

    exchange: str
    dead_letter_exchange: str
    dead_letter_queue: str
    retry_delays: tuple[float, ...]
    delivery_limit: int

    @classmethod
    def for_exchange(
        cls,
        exchange: str,
        *,
        retry_delays: tuple[float, ...],
        delivery_limit: int,
        dead_letter_exchange: str | None = None,
        dead_letter_queue: str | None = None,
    ) -> Topology:
        """Dead-letter names default to the exchange's: ``hub.events`` → ``hub.dlx``,
        ``hub.dead-letters``, so two hubs on one broker keep their dead letters apart."""
        base = exchange.removesuffix(".events")
        return cls(
            exchange=exchange,
            dead_letter_exchange=dead_letter_exchange or f"{base}.dlx",
            dead_letter_queue=dead_letter_queue or f"{base}.dead-letters",
            retry_delays=retry_delays,
            delivery_limit=delivery_limit,
        )

    # -- names -----------------------------------------------------------------------------

    def retry_queue(self, queue: str, delay: float) -> str:
        # Not ".retry.<ms>": that name was a classic queue before (see declare_subscription),
        # and a queue cannot change its type; an old one drains into <queue> by itself.
        return f"{queue}.delay.{_ms(delay)}"

    def retry_queues(self, queue: str) -> list[str]:
        """One retry queue per distinct delay, shortest first."""
        return [self.retry_queue(queue, d) for d in sorted(set(self.retry_delays))]

    # -- declarations ----------------------------------------------------------------------

    def declare_exchanges(self, channel: Any) -> None:
        """The topic exchange every message goes through, and the dead-letter exchange."""
        with _declaring("exchange", self.exchange):
            channel.exchange_declare(self.exchange, "topic", durable=True, auto_delete=False)
        with _declaring("exchange", self.dead_letter_exchange):
            channel.exchange_declare(
                self.dead_letter_exchange, "fanout", durable=True, auto_delete=False
            )

    def declare_dead_letters(self, channel: Any) -> None:
        """The queue that collects dead letters until the relay moves them into the store.

        A classic queue: quorum queues gained a default delivery limit in RabbitMQ 4, and a
        queue without a dead-letter exchange of its own would then drop what it cannot deliver.
        """
        self.declare_exchanges(channel)
        with _declaring("queue", self.dead_letter_queue):
            channel.queue_declare(
                self.dead_letter_queue, durable=True, exclusive=False, auto_delete=False
            )
        channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange, "")

    def declare_subscription(self, channel: Any, subscription: Subscription) -> None:
        """The subscription's quorum queue, its bindings and its retry queues."""
        self.declare_dead_letters(channel)
        queue = subscription.queue
        with _declaring("queue", queue):
            channel.queue_declare(
                queue, durable=True, exclusive=False, auto_delete=False,
                arguments={
                    "x-queue-type": "quorum",
                    "x-dead-letter-exchange": self.dead_letter_exchange,
                    # RabbitMQ 3.x quorum queues have no limit unless one is set.
                    "x-delivery-limit": self.delivery_limit,
                    # Keep a dead-lettered message until the dead-letter queue has it (the
                    # default, at-most-once, drops it if that fails); needs reject-publish.
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
        for pattern in subscription.patterns:
            channel.queue_bind(queue, self.exchange, pattern)
        for delay in sorted(set(self.retry_delays)):
            name = self.retry_queue(queue, delay)
            with _declaring("queue", name):
                channel.queue_declare(
                    name, durable=True, exclusive=False, auto_delete=False,
                    arguments={
                        # A classic queue dead-letters at most once: what expired while the
                        # broker was down was dropped at its restart, before <queue> was back
                        # (found by the fault suite). A quorum queue keeps each message until
                        # <queue> has confirmed it (RabbitMQ >= 3.10: TTL and at-least-once).
                        "x-queue-type": "quorum",
                        "x-message-ttl": _ms(delay),
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": queue,
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                    },
                )


def _ms(delay: float) -> int:
    return max(1, round(delay * 1000))


@contextlib.contextmanager
def _declaring(kind: str, name: str) -> Iterator[None]:
    try:
        yield
    except amqp_exc.PreconditionFailed as exc:
        text = str(exc)
        found = re.search(r"inequivalent arg '([^']+)'", text)
        arg = f"argument {found.group(1)!r}" if found else "arguments"
        raise PermanentError(
            f"{kind} {name!r} already exists on the broker with a different {arg} ({text}); "
            f"delete it or give the subscription another name"
        ) from exc
