"""A consumer of one RabbitMQ queue that survives broker restarts.

Deliveries are gathered into batches (``batch_size`` messages, or whatever came within
``linger`` seconds of the first) and handed to a *processor*, which settles them; then one
multiple-ack takes the batch off the queue. On any connection error the consumer drops the
connection, backs off, reconnects, declares again and carries on: deliveries it had not acked
are redelivered by the broker, so nothing is lost and handlers see duplicates only. A
processor raises :class:`RetryableError` to have the same happen on purpose (its store is
down, say).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.bus.base import backoff
from hub.bus.rabbitmq_link import LINK_ERRORS, Link, describe
from hub.errors import PermanentError, RetryableError
from hub.settings import mask_url

__all__ = ["ConsumerLoop", "Processor"]

log = logging.getLogger(__name__)

#: Settles a batch of py-amqp messages so they may be acked; returns what to do after the ack.
Processor = Callable[[Sequence[Any]], Callable[[], None]]

_RECONNECT: tuple[type[BaseException], ...] = (*LINK_ERRORS, RetryableError)
_POLL = 0.5  # longest wait without looking at ``stop``
_HEALTHY = 10.0  # seconds of consuming after which a failure counts as a new outage


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
    _acked: bool = field(default=False, init=False)  # a batch was acked in this session
    _ready_at: float = field(default=0.0, init=False)  # when this session began consuming
    _resumed: bool = field(default=False, init=False)  # the current outage's end was logged

    def _done(self) -> bool:
        return self.stop.is_set() or self.closed()

    def run(self) -> None:
        """Consume; returns only when stopped. Raises :class:`PermanentError` (e.g. the queue
        exists with other arguments)."""
        failures = 0
        while not self._done():
            self._acked = False
            self._ready_at = 0.0
            try:
                self._session(failures)
                return
            except PermanentError:
                raise
            except _RECONNECT as exc:
                # A session that got work done ends an outage; one that failed at once (the
                # broker is still down, the store refuses the batch) makes it longer.
                healthy = self._acked or (
                    self._ready_at and time.monotonic() - self._ready_at > _HEALTHY
                )
                failures = 1 if healthy else failures + 1
                delay = backoff(failures)
                if failures == 1:
                    self._resumed = False
                    log.warning(
                        "consumer of %s interrupted (%s); reconnecting to RabbitMQ at %s",
                        self.queue, describe(exc), mask_url(self.url),
                    )
                else:
                    log.debug("consumer of %s: still failing (%s); next try in %.1f s",
                              self.queue, describe(exc), delay)
                if self.stop.wait(delay):
                    return

    def _session(self, failures: int) -> None:
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
            self._ready_at = time.monotonic()
            if failures and not self._resumed:
                log.info("consumer of %s resumed after %d attempt(s)", self.queue, failures)
                self._resumed = True  # once per outage
            self._loop(link, channel, buffer, cancelled)
        except BaseException:
            link.abort()
            raise
        link.close()  # unacked deliveries go straight back to the queue

    def _loop(self, link: Link, channel: Any, buffer: list[Any], cancelled: list[str]) -> None:
        first_at = 0.0
        while True:
            if self._done():
                if buffer and not self.closed():  # delivered before the stop: settle them
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
        with link.keepalive():  # the handler may take longer than the heartbeat interval
            after_ack = self.process(chunk)
        # Deliveries are settled in order, so one multiple-ack covers the chunk.
        channel.basic_ack(chunk[-1].delivery_tag, multiple=True)
        self._acked = True
        after_ack()
