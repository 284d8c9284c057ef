"""Between py-amqp messages and the bus's own types: deliveries, retry copies, dead letters.

A copy sent to a retry or dead-letter queue travels under another routing key, so the original
key rides along in the ``x-hub-routing-key`` header. Headers the broker adds (``x-death``,
``x-delivery-count`` ...) and the hub's bookkeeping headers are not shown to handlers.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import amqp

from hub.bus.base import Incoming, Verdict
from hub.bus.rabbitmq_topology import Topology
from hub.headers import H_ATTEMPT, H_CODE, H_KEY, H_QUEUE, H_REASON, H_TYPE
from hub.journal import Entry
from hub.store.deadletters import NewDeadLetter

__all__ = [
    "H_ROUTING_KEY",
    "Envelope",
    "dead_envelope",
    "dead_letter_of",
    "incoming",
    "retry_envelope",
]

H_ROUTING_KEY = "x-hub-routing-key"
"""The routing key a message was first published with (retry and dead copies travel under
another)."""

_BROKER_HEADERS = frozenset({
    "x-death", "x-delivery-count", "x-first-death-exchange", "x-first-death-queue",
    "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason",
})
_DEAD_HEADERS = frozenset({H_REASON, H_CODE, H_QUEUE, H_ROUTING_KEY})
_PLAIN = (str, bytes, bool, int, float, decimal.Decimal, dt.datetime, type(None))
# Ids for foreign messages without one: the same body gets the same id, so redeliveries dedupe.
_FOREIGN_IDS = uuid.UUID("0b8f5e58-2f7e-4c55-9a3e-7c1d2c7e3a10")


@dataclass(frozen=True)
class Envelope:
    """One message on its way to an exchange (``""`` = straight into a queue)."""

    exchange: str
    routing_key: str
    message_id: str
    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)

    def to_amqp(self) -> amqp.Message:
        return amqp.Message(
            self.body,
            content_type="application/json",
            delivery_mode=2,
            message_id=self.message_id,
            application_headers={k: _table_value(v) for k, v in self.headers.items()},
        )


def _table_value(value: Any) -> Any:
    """A header value py-amqp can encode (others travel as text)."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {str(k): _table_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_table_value(v) for v in value]
    return str(value)


def _body(message: Any) -> bytes:
    body = message.body
    if isinstance(body, str):  # a channel with auto_decode would give text
        return body.encode("utf-8")
    return bytes(body or b"")


def _headers(message: Any) -> dict[str, Any]:
    raw = message.properties.get("application_headers") or {}
    return dict(raw) if isinstance(raw, Mapping) else {}


def message_id_of(message: Any) -> str:
    """The message_id property, or an id derived from the body for foreign messages."""
    given = message.properties.get("message_id")
    if given:
        return str(given)
    return str(uuid.uuid5(_FOREIGN_IDS, hashlib.sha256(_body(message)).hexdigest()))


def _int(value: object, default: int) -> int:
    if not isinstance(value, int | float | str | bytes):
        return default
    try:
        return int(value)
    except ValueError:
        return default


def incoming(queue: str, message: Any) -> Incoming:
    """The bus's view of one delivery; ``receipt`` is its delivery tag."""
    headers = _headers(message)
    routing_key = str(headers.get(H_ROUTING_KEY) or message.delivery_info.get("routing_key", ""))
    shown = {k: v for k, v in headers.items() if k not in _BROKER_HEADERS | _DEAD_HEADERS}
    return Incoming(
        queue=queue,
        message_id=message_id_of(message),
        routing_key=routing_key,
        body=_body(message),
        headers=shown,
        attempt=max(1, _int(headers.get(H_ATTEMPT), 1)),
        redelivered=bool(message.delivery_info.get("redelivered")),
        receipt=int(message.delivery_tag),
    )


def retry_envelope(topology: Topology, message: Incoming, verdict: Verdict) -> Envelope:
    """The copy that waits out ``verdict.delay`` in a retry queue, then returns to its queue."""
    headers = {**message.headers, H_ATTEMPT: message.attempt + 1,
               H_ROUTING_KEY: message.routing_key}
    return Envelope("", topology.retry_queue(message.queue, verdict.delay), message.message_id,
                    message.body, headers)


def dead_envelope(topology: Topology, message: Incoming, verdict: Verdict) -> Envelope:
    """The copy that goes to the dead-letter exchange, carrying the reason."""
    headers = {
        **message.headers,
        H_REASON: verdict.reason,
        H_CODE: verdict.code or "permanent",
        H_QUEUE: message.queue,
        H_ATTEMPT: message.attempt,
        H_ROUTING_KEY: message.routing_key,
    }
    return Envelope(topology.dead_letter_exchange, message.routing_key, message.message_id,
                    message.body, headers)


def dead_letter_of(topology: Topology, message: Any) -> tuple[NewDeadLetter, Entry | None]:
    """A message from the dead-letter queue as a stored dead letter.

    Messages the broker dead-lettered itself (too many deliveries) also get a journal entry;
    the consumer already journalled the ones it dead-lettered.
    """
    headers = _headers(message)
    deaths = headers.get("x-death")
    death: Mapping[str, Any] = (
        deaths[0] if isinstance(deaths, Sequence) and deaths and isinstance(deaths[0], Mapping)
        else {}
    )
    keys = death.get("routing-keys")
    routing_key = str(
        headers.get(H_ROUTING_KEY)
        or (keys[0] if isinstance(keys, Sequence) and keys else "")
        or message.delivery_info.get("routing_key", "")
    )
    kept = {
        k: v for k, v in headers.items()
        if k not in _BROKER_HEADERS | _DEAD_HEADERS and k != H_ATTEMPT
    }
    message_id = message_id_of(message)
    by_hub = H_REASON in headers
    if by_hub:
        queue = str(headers.get(H_QUEUE) or death.get("queue") or "")
        reason = str(headers[H_REASON])
        code = str(headers.get(H_CODE) or "permanent")
        attempts = max(1, _int(headers.get(H_ATTEMPT), 1))
    else:
        queue = str(death.get("queue") or headers.get("x-first-death-queue") or "")
        why = str(death.get("reason") or headers.get("x-first-death-reason") or "")
        attempts = _int(headers.get("x-delivery-count"), topology.delivery_limit + 1)
        if why == "delivery_limit":
            reason = (
                f"delivered more than {topology.delivery_limit} times without an ack "
                "(its consumer crashed or was stopped each time)"
            )
            code = "delivery_limit"
        elif why:
            reason = f"dead-lettered by the broker from {queue!r} ({why})"
            code = why[:40]
        else:
            reason = "arrived in the dead-letter queue without a reason (published there?)"
            code = "unknown"
    letter = NewDeadLetter(
        message_id=message_id,
        queue=queue,
        routing_key=routing_key,
        body=_body(message),
        headers=kept,
        reason=reason,
        error_code=code,
        attempts=attempts,
        type=_opt(headers.get(H_TYPE)),
        correlation_key=_opt(headers.get(H_KEY)),
    )
    entry = None if by_hub else Entry.for_message(
        "dead_lettered", message_id, kept, routing_key, target=queue, error=reason,
        detail={"by": "broker"},
    )
    return letter, entry


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
