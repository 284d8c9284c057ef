"""SIGTERM and SIGINT as a :class:`threading.Event`, without a lock in the signal handler.

Python runs a signal handler in the main thread between two bytecodes, and that can be
inside ``stop.wait()`` or ``stop.set()`` while the thread holds the event's lock, which is
not reentrant: a handler that set the event there waited for itself forever. A part the
daemon had forked (``HUB_APART``) did, when Ctrl-C's SIGINT and the daemon's SIGTERM reached
it 1 ms apart: the second handler ran inside the first one's ``stop.set()``, and the part
never stopped. So the handler here does nothing; the interpreter writes each signal's
number to its wakeup file descriptor at C level, and a thread reading it logs the signal
and sets the event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["STOP_SIGNALS", "hold_stop_signals", "stopping_on_signals"]

log = logging.getLogger("hub.signals")

#: The signals that stop the daemon and the commands that run until stopped.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stopping_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM or SIGINT while the block runs; then put back the handlers
    there were. Enter it in the main thread. A stop signal that :func:`hold_stop_signals`
    kept pending arrives here."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    previous = {signum: signal.signal(signum, _noted) for signum in STOP_SIGNALS}
    previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def relay() -> None:
        with open(read, "rb", buffering=0) as signals:
            while chunk := signals.read(64):  # b"" once the block has ended
                for signum in chunk:
                    if signum in STOP_SIGNALS:
                        log.info("signal %s received", signal.Signals(signum).name)
                        stop.set()

    # The relay thread is born with the stop signals blocked, so the kernel never hands it
    # one: once the block has ended the thread lingers a moment after join() returns, and a
    # signal it took then met the default handler and ended the process.
    thread = threading.Thread(target=relay, name="signals", daemon=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    thread.start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(write)
        thread.join(5)


def hold_stop_signals() -> None:
    """Keep SIGTERM and SIGINT pending in this thread (and in processes it forks) until the
    next :func:`stopping_on_signals` takes them: for the moments between two such blocks in
    which a stop signal must neither be lost nor end the process the default way."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _noted(_signum: int, _frame: FrameType | None) -> None:
    """The Python half of a stop signal: nothing (the wakeup fd carries it)."""
