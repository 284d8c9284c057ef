"""Names of the message headers the hub sets and reads, in one place."""

__all__ = [
    "H_ATTEMPT", "H_BODY_ENCODING", "H_CODE", "H_KEY", "H_OCCURRED", "H_QUEUE", "H_REASON",
    "H_TYPE",
]

H_ATTEMPT = "x-hub-attempt"
"""Delivery attempt of this copy: 1 first, 2 on the first retry, ..."""
H_TYPE = "x-hub-type"
"""The canonical message type, e.g. ``order.changed``."""
H_KEY = "x-hub-key"
"""The correlation key: order number, DocNum or batch number."""
H_QUEUE = "x-hub-queue"
"""The queue a dead or retried message belongs to."""
H_REASON = "x-hub-reason"
"""Why a message was dead-lettered, in words."""
H_CODE = "x-hub-error-code"
"""The error's short code (see hub.errors)."""
H_BODY_ENCODING = "x-hub-body-encoding"
"""``base64`` when a stored body was not UTF-8."""
H_OCCURRED = "x-hub-occurred-at"
"""When the source committed the change (naive UTC, ISO 8601): the start of end-to-end latency."""
