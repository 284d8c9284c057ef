"""One AMQP connection to RabbitMQ (kombu 5 with the py-amqp transport), with bounded waits.

py-amqp blocks without a timeout in every RPC (``queue_declare``, ``channel.open`` ...), so each
connection gets socket-level read and write timeouts; ``drain`` waits with an explicit timeout.
py-amqp has no heartbeat thread: the owner calls :meth:`Link.tick` from its drain loop, and
:meth:`Link.keepalive` sends heartbeats while the owner is busy elsewhere (a long handler).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import amqp
from amqp import exceptions as amqp_exc
from kombu import connection as kombu_connection

from hub.errors import BrokerUnavailable, PermanentError
from hub.settings import mask_url

__all__ = ["LINK_ERRORS", "WRITE_BYTES", "Link", "describe"]

log = logging.getLogger(__name__)

_KombuConnection: Any = kombu_connection.Connection

#: Everything py-amqp and the socket layer raise when a connection or channel breaks.
LINK_ERRORS: tuple[type[BaseException], ...] = (
    amqp_exc.AMQPError,
    amqp_exc.MessageNacked,
    OSError,
)


#: Bytes of frames a publishing batch writes to the socket at a time.
WRITE_BYTES = 64 * 1024


def describe(exc: BaseException) -> str:
    """A one-line description of a driver error, for logs and the hub's own errors."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Link:
    """An open AMQP connection. Raises :class:`BrokerUnavailable` when it cannot be opened,
    :class:`PermanentError` for a URL that is not AMQP 0-9-1."""

    def __init__(
        self, url: str, *, connect_timeout: float, heartbeat: int, io_timeout: float,
        tls: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.heartbeat = heartbeat
        self._client: Any = _KombuConnection(
            url,  # amqp:// and amqps:// both mean kombu's py-amqp transport
            # amqps:// alone verifies the certificate chain but not the host name: the
            # options name the host (and the CA and client certificate, when configured).
            ssl=dict(tls) if tls else False,
            connect_timeout=connect_timeout,
            heartbeat=heartbeat,
            # Socket-level timeouts bound every RPC py-amqp waits for without a timeout.
            transport_options={"read_timeout": io_timeout, "write_timeout": io_timeout},
        )
        try:
            self._client.ensure_connection(max_retries=0, reraise_as_library_errors=False)
            conn = self._client.connection
        except LINK_ERRORS as exc:
            self._client.collect()
            raise BrokerUnavailable(
                f"cannot connect to RabbitMQ at {mask_url(url)}: {describe(exc)}"
            ) from exc
        if not isinstance(conn, amqp.Connection):
            self._client.collect()
            raise PermanentError(f"{mask_url(url)} is not an AMQP 0-9-1 (amqp://) broker URL")
        self.conn: Any = conn
        self._lock = threading.Lock()

    def channel(self) -> Any:
        """A new channel whose message bodies stay bytes."""
        channel = self.conn.channel()
        channel.auto_decode = False
        return channel

    def drain(self, timeout: float) -> bool:
        """Handle one incoming method (delivery, confirm ...); False when none came in time."""
        try:
            self.conn.drain_events(timeout=max(0.0, timeout))
        except TimeoutError:
            return False
        return True

    def tick(self) -> None:
        """Send a heartbeat when one is due; raises when the broker has gone silent."""
        self.conn.heartbeat_tick()

    @contextlib.contextmanager
    def batched_writes(self) -> Iterator[None]:
        """Hold back what the block writes to the socket, and write it in pieces of
        :data:`WRITE_BYTES`.

        py-amqp writes every message with its own ``sendall``, and each write lets go of the
        GIL: in a busy daemon another thread took it every time, and the relay waited to get
        it back after every message it published (1,800 thread switches a second in a
        drain). A batch written all at its end would leave the broker idle until then (a
        fifth slower alone); pieces keep it busy while the rest is framed. What the block
        wrote is written even when it raises, so the broker gets every message the channel
        has numbered.
        """
        transport = self.conn.transport
        write = getattr(transport, "_write", None)
        if write is None:
            yield
            return
        held: list[bytes] = []
        size = 0

        def hold(data: Any) -> None:
            nonlocal size
            held.append(bytes(data))  # a view of py-amqp's frame buffer, reused next message
            size += len(data)
            if size >= WRITE_BYTES:
                chunk, size = b"".join(held), 0
                held.clear()
                write(chunk)

        transport._write = hold
        try:
            yield
        finally:
            transport._write = write
            if held:
                transport.write(b"".join(held))

    @contextlib.contextmanager
    def keepalive(self) -> Iterator[None]:
        """Send heartbeats from a helper thread while the caller does not use the connection."""
        if not self.heartbeat:
            yield
            return
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.heartbeat / 2):
                with self._lock:
                    if done.is_set():
                        return
                    try:
                        self.conn.send_heartbeat()
                    except LINK_ERRORS:
                        return  # the owner notices when it uses the connection again

        thread = threading.Thread(target=beat, name="amqp-keepalive", daemon=True)
        thread.start()
        try:
            yield
        finally:
            with self._lock:
                done.set()
            thread.join(timeout=5)

    def close(self) -> None:
        """Close politely (the broker requeues unacked deliveries at once); never raises."""
        try:
            self.conn.close()
        except LINK_ERRORS as exc:
            log.debug("closing AMQP connection: %s", describe(exc))
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the socket without the closing handshake (after an error); never raises."""
        with contextlib.suppress(*LINK_ERRORS, AttributeError):
            self.conn.collect()
        with contextlib.suppress(*LINK_ERRORS, AttributeError):
            self._client.collect()

