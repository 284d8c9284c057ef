"""The hub's error tree. Every failure that crosses a layer is one of these.

    HubError
    ├── RetryableError        the same work may succeed later: back off and retry
    │   ├── BrokerUnavailable     the bus cannot be reached or did not confirm in time
    │   ├── DatabaseUnavailable   a database connection failed, timed out or deadlocked
    │   │   └── Contention            a deadlock or serialization failure: at once again
    │   └── DependencyMissing     something this message needs has not arrived yet
    └── PermanentError        retrying cannot help: dead-letter at once, with the reason
        ├── InvalidMessage        a message that does not parse or validate
        ├── MappingError          a value that the mappings cannot translate
        ├── UnknownReference      an item, customer or document the target does not know
        ├── ForbiddenTransition   e.g. cancelling an order that has shipped
        └── Unroutable            a publish that no queue is bound to receive

Driver errors (SQLAlchemy, pyodbc, py-amqp, pika) are translated at the boundary with
``raise ... from exc``; :func:`translate_db_error` does that for databases.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc

__all__ = [
    "BrokerUnavailable",
    "Contention",
    "DatabaseUnavailable",
    "DependencyMissing",
    "ForbiddenTransition",
    "HubError",
    "InvalidMessage",
    "MappingError",
    "PermanentError",
    "RetryableError",
    "UnknownReference",
    "Unroutable",
    "db_errors",
    "driver_error",
    "translate_db_error",
]


class HubError(Exception):
    """Base of every error the hub raises on purpose."""

    #: Short machine-readable kind, kept with dead letters and in the journal.
    code = "hub_error"


class RetryableError(HubError):
    """A failure that may go away: the message is retried with increasing delay."""

    code = "retryable"


class PermanentError(HubError):
    """A failure that retrying cannot fix: the message goes to dead letters with the reason."""

    code = "permanent"


class BrokerUnavailable(RetryableError):
    code = "broker_unavailable"


class DatabaseUnavailable(RetryableError):
    code = "database_unavailable"


class Contention(DatabaseUnavailable):
    """Two transactions wanted each other's locks and the database rolled one back (a
    deadlock, a serialization failure): running it again at once usually succeeds."""


class DependencyMissing(RetryableError):
    code = "dependency_missing"


class InvalidMessage(PermanentError):
    code = "invalid_message"


class MappingError(PermanentError):
    code = "mapping_error"


class UnknownReference(PermanentError):
    code = "unknown_reference"


class ForbiddenTransition(PermanentError):
    code = "forbidden_transition"


class Unroutable(PermanentError):
    """Raised by a publish when some messages reached no queue; lists their ids."""

    code = "unroutable"

    def __init__(self, message: str, message_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message_ids = tuple(message_ids)


def driver_error(exc: BaseException) -> str:
    """A driver's error in one line: its type and the first line of its text."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def translate_db_error(exc: BaseException, what: str) -> HubError:
    """Map a driver or SQLAlchemy error to the hub's tree; the caller raises it ``from exc``.

    Connection loss, timeouts, deadlocks and lock waits are retryable; a violated constraint or
    bad data is permanent.
    """
    if isinstance(exc, HubError):
        return exc
    detail = f"{what}: {driver_error(exc)}"
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable(detail)
    text = str(exc).lower()
    if any(s in text for s in ("deadlock", "could not serialize")):
        return Contention(detail)
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return DatabaseUnavailable(detail)
    if any(s in text for s in ("lock wait timeout", "database is locked", "connection")):
        return DatabaseUnavailable(detail)
    return PermanentError(detail)


@contextmanager
def db_errors(what: str) -> Iterator[None]:
    """Translate SQLAlchemy errors raised inside into the hub's tree (HubErrors pass through)."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        raise translate_db_error(exc, what) from exc
