"""The bus: one small interface, a RabbitMQ implementation and an embedded one behind it.

A consumer hands the bus a *batch handler*: it gets up to ``batch_size`` messages and returns,
for each, ``None`` (applied: ack) or the exception that stopped it. The bus then settles every
message the same way in both implementations (:func:`settle`):

- applied                       → acked
- :class:`RetryableError`       → redelivered after the next delay of ``retry_delays``;
                                  dead-lettered when the delays are used up
- :class:`PermanentError`       → dead-lettered at once, with the reason
- a handler that raises         → the batch is split and each message handled alone, so one
                                  poison message cannot hold back the rest

Retries may overtake later messages of the same key, so handlers must compare versions
(state transfer with a source version, not diffs) rather than rely on arrival order.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from hub.errors import HubError, PermanentError, RetryableError
from hub.headers import H_ATTEMPT, H_KEY, H_TYPE
from hub.model.messages import Message, decode, encode, routing_key

__all__ = [
    "Bus",
    "Failures",
    "Handler",
    "Incoming",
    "Outgoing",
    "Subscription",
    "Verdict",
    "settle",
    "topic_matches",
]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Outgoing:
    """A message ready to publish: its id, routing key, JSON body and headers."""

    message_id: str
    routing_key: str
    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, message: Message, partitions: int) -> Outgoing:
        return cls(
            message_id=str(message.message_id),
            routing_key=routing_key(message, partitions),
            body=encode(message),
            headers={H_TYPE: message.type, H_KEY: message.correlation_key},
        )


@dataclass(frozen=True)
class Incoming:
    """A delivered message. ``attempt`` is 1 the first time, 2 on the first retry, ..."""

    queue: str
    message_id: str
    routing_key: str
    body: bytes
    headers: Mapping[str, Any]
    attempt: int = 1
    redelivered: bool = False
    #: The bus's own handle for settling this delivery (a row id, a delivery tag).
    receipt: int = 0

    def decode(self) -> Message:
        """The canonical message; raises :class:`~hub.errors.InvalidMessage` (permanent)."""
        return decode(self.body)

    def as_outgoing(self, *, attempt: int | None = None) -> Outgoing:
        headers = dict(self.headers)
        if attempt is not None:
            headers[H_ATTEMPT] = attempt
        return Outgoing(self.message_id, self.routing_key, self.body, headers)


@dataclass(frozen=True)
class Subscription:
    """A consumer's durable queue and the routing-key patterns bound to it.

    Patterns use AMQP topic syntax: ``*`` one word, ``#`` zero or more words.
    """

    queue: str
    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,120}", self.queue):
            raise ValueError(f"bad queue name {self.queue!r}")


Handler = Callable[[Sequence[Incoming]], Sequence[BaseException | None]]


@dataclass(frozen=True)
class Verdict:
    """What becomes of one delivered message after its handler ran."""

    action: Literal["ack", "retry", "dead"]
    reason: str = ""
    code: str = ""
    delay: float = 0.0


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, HubError) else f"{type(exc).__name__}: {text}"


def verdict_for(error: BaseException | None, attempt: int, delays: Sequence[float]) -> Verdict:
    """Decide ack / retry / dead for one message from its handler's result."""
    if error is None:
        return Verdict("ack")
    if isinstance(error, PermanentError):
        return Verdict("dead", _describe(error), error.code)
    code = error.code if isinstance(error, RetryableError) else "unexpected"
    if attempt <= len(delays):
        return Verdict("retry", _describe(error), code, delays[attempt - 1])
    return Verdict("dead", f"gave up after {attempt} attempts: {_describe(error)}", code)


def settle(batch: Sequence[Incoming], handler: Handler, delays: Sequence[float]) -> list[Verdict]:
    """Run ``handler`` on ``batch`` and turn its results into one verdict per message.

    A handler that raises (rather than returning per-message errors) is run again on each
    message alone, so a single poison message is isolated; a retryable error for the whole
    batch (e.g. the target database is down) is retried as a whole without splitting.
    """
    try:
        results = list(handler(batch))
        if len(results) != len(batch):
            raise RuntimeError(f"handler returned {len(results)} results for {len(batch)}")
    except RetryableError as exc:
        results = [exc] * len(batch)
    except Exception as exc:  # a bug or a poison message: isolate it
        if len(batch) == 1:
            log.exception("handler failed", extra={"message_id": batch[0].message_id})
            results = [exc]
        else:
            results = []
            for one in batch:
                results.extend(_single(one, handler))
    return [verdict_for(err, msg.attempt, delays) for msg, err in zip(batch, results, strict=True)]


def _single(message: Incoming, handler: Handler) -> list[BaseException | None]:
    try:
        result = list(handler([message]))
        return result if len(result) == 1 else [RuntimeError("handler returned no result")]
    except Exception as exc:
        log.exception("handler failed", extra={"message_id": message.message_id})
        return [exc]


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching (``*`` = exactly one word, ``#`` = zero or more words)."""
    return _match(tuple(pattern.split(".")), tuple(key.split(".")))


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


def headers_json(headers: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in headers.items() if _plain(v)}, sort_keys=True, default=str)


def _plain(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


class Bus(ABC):
    """What every part of the hub needs from a message bus.

    Implementations: :class:`hub.bus.rabbitmq.RabbitBus` and
    :class:`hub.bus.embedded.EmbeddedBus`; ``tests/bus/`` holds the contract both pass.
    """

    #: Seconds a handler may keep a batch before the bus would deliver it again (a lease):
    #: at most that long may an applier hold a batch through an outage.
    hold_limit: float = float("inf")

    @abstractmethod
    def declare(self, subscription: Subscription) -> None:
        """Create the subscription's durable queue and bindings (idempotent)."""

    @abstractmethod
    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish durably; return only when the bus has taken every message.

        Raises :class:`~hub.errors.Unroutable` naming the messages no queue is bound to
        (the others are published), :class:`~hub.errors.BrokerUnavailable` when the bus did
        not confirm in time (some may have been taken: publishing again is safe, consumers
        de-duplicate by message id).
        """

    @abstractmethod
    def send(self, queue: str, message: Outgoing) -> None:
        """Put one message straight into one queue (replaying a dead letter to its consumer)."""

    @abstractmethod
    def consume(
        self,
        subscription: Subscription,
        handler: Handler,
        stop: threading.Event,
        *,
        batch_size: int | None = None,
    ) -> None:
        """Deliver batches to ``handler`` until ``stop`` is set; survives broker restarts."""

    def relay_dead_letters(self, stop: threading.Event) -> None:
        """Move dead letters from the broker into the hub's store, until ``stop`` is set.

        The embedded bus writes dead letters straight into the store, so it has nothing to do.
        """
        stop.wait()

    @abstractmethod
    def queue_depths(self) -> dict[str, int]:
        """Messages waiting (ready + unacked) per queue, for metrics and ``status``."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`~hub.errors.BrokerUnavailable` unless the bus answers."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the bus must not be used afterwards."""


def backoff(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Delay before reconnect attempt ``attempt`` (1, 2, ...): exponential, capped."""
    return float(min(cap, base * (2 ** min(attempt - 1, 10))))


class Failures:
    """A loop's failures in a row (a poller's polls, the outbox relay's publishes) while a
    system or the broker does not answer: a warning when they begin and once every
    ``remind`` seconds while they go on (debug in between), a line when the loop works
    again, and a back-off capped at ``cap`` seconds, so the loop resumes promptly.
    ``what`` heads each failure's line, ``back`` the line when the loop works again."""

    def __init__(self, logger: logging.Logger, what: str, back: str, *, cap: float = 5.0,
                 remind: float = 60.0) -> None:
        self.log, self.what, self.back = logger, what, back
        self.cap, self.remind = cap, remind
        self.count = 0
        self._warned = 0.0  # monotonic

    def failed(self, exc: BaseException) -> float:
        """Note one failure; the seconds to wait before the next try."""
        self.count += 1
        now = time.monotonic()
        if self.count == 1 or now - self._warned >= self.remind:
            again = f" ({self.count} times in a row)" if self.count > 1 else ""
            self.log.warning("%s%s: %s; trying again until it answers", self.what, again, exc)
            self._warned = now
        else:
            self.log.debug("%s: %s", self.what, exc)
        return backoff(self.count, cap=self.cap)

    def succeeded(self) -> None:
        """The loop worked: the end of the failures, if there were any."""
        if self.count:
            self.log.info("%s after %d failure(s)", self.back, self.count)
            self.count = 0
