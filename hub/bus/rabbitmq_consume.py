"""A consumer of one RabbitMQ queue that survives broker restarts.

Deliveries are gathered into batches (``batch_size`` messages, or whatever came within
``linger`` seconds of the first) and handed to a *processor*, which settles them and acks. On
any connection error the consumer drops the connection, backs off, reconnects, declares again
and carries on: deliveries it had not acked are redelivered by the broker, so nothing is lost
and handlers see duplicates only. A processor raises :class:`RetryableError` to have the same
happen on purpose (say, its store is down).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hub.bus.base import backoff
from hub.bus.rabbitmq_link import LINK_ERRORS, Link, describe
from hub.errors import PermanentError, RetryableError
from hub.settings import mask_url

__all__ = ["ConsumerLoop", "Processor"]

log = logging.getLogger(__name__)

#: Settles a batch of py-amqp messages; calls ``ack()`` once they may leave the queue.
Processor = Callable[[Sequence[Any], Callable[[], None]], None]

_POLL = 0.5  # longest wait without looking at ``stop``


class _Cancelled(RetryableError):
    code = "broker_unavailable"


@dataclass
class ConsumerLoop:
    """Consume ``queue`` until ``stop`` is set or ``closed()`` is true."""

    url: str
    queue: str
    open_link: Callable[[], Link]
    declare: Callable[[Any], None]
    process: Processor
    prefetch: int
    batch_size: int
    linger: float
    stop: threading.Event
    closed: Callable[[], bool]

    def _done(self) -> bool:
        return self.stop.is_set() or self.closed()

    def run(self) -> None:
        """Consume; returns only when stopped. Raises :class:`PermanentError` (e.g. the queue
        exists with other arguments)."""
        failures = 0
        while not self._done():
            try:
                self._session(on_ready=lambda: None if failures == 0 else log.warning(
                    "consumer of %s resumed after %d reconnect attempt(s)", self.queue, failures
                ))
                return
            except PermanentError:
                raise
            except (*LINK_ERRORS, RetryableError) as exc:
                failures = 1 if self._resumed else failures + 1
                delay = backoff(failures)
                if failures == 1:
                    log.warning(
                        "consumer of %s lost RabbitMQ at %s (%s); reconnecting", self.queue,
                        mask_url(self.url), describe(exc),
                    )
                else:
                    log.debug("consumer of %s: still no broker (%s); next try in %.1f s",
                              self.queue, describe(exc), delay)
                if self.stop.wait(delay):
                    return

    _resumed = False

    def _session(self, on_ready: Callable[[], None]) -> None:
        self._resumed = False
        link = self.open_link()
        try:
            channel = link.channel()
            self.declare(channel)
            channel.basic_qos(0, self.prefetch, False)
            buffer: list[Any] = []
            cancelled: list[str] = []
            channel.basic_consume(
                self.queue, callback=buffer.append, no_ack=False, on_cancel=cancelled.append
            )
            on_ready()
            self._resumed = True
            self._loop(link, channel, buffer, cancelled)
        except BaseException:
            link.abort()
            raise
        link.close()  # unacked deliveries go straight back to the queue

    def _loop(self, link: Link, channel: Any, buffer: list[Any], cancelled: list[str]) -> None:
        first_at = 0.0
        while True:
            if self._done():
                if buffer:  # delivered before the stop: settle rather than return them
                    self._handle(link, channel, buffer[: self.batch_size])
                return
            if cancelled:
                raise _Cancelled(f"RabbitMQ cancelled the consumer of {self.queue}")
            now = time.monotonic()
            if buffer and not first_at:
                first_at = now
            if buffer and (len(buffer) >= self.batch_size or now - first_at >= self.linger):
                chunk = buffer[: self.batch_size]
                del buffer[: self.batch_size]
                first_at = 0.0
                self._handle(link, channel, chunk)
                continue
            wait = _POLL if not buffer else min(_POLL, first_at + self.linger - now)
            link.drain(wait)
            link.tick()

    def _handle(self, link: Link, channel: Any, chunk: Sequence[Any]) -> None:
        last = chunk[-1].delivery_tag

        def ack() -> None:
            # Deliveries are settled in order, so one multiple-ack covers the chunk.
            channel.basic_ack(last, multiple=True)

        with link.keepalive():
            self.process(chunk, ack)
