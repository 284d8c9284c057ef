"""SIGTERM and SIGINT stop the daemon however the main thread is placed when they arrive."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The main thread holds the stop event's own lock when the signal arrives, as it does for a
# moment in every ``stop.wait()`` and ``stop.set()``. A handler that set the event there
# waited for that lock forever (a forked part that got SIGINT and SIGTERM 1 ms apart never
# stopped). Python runs the handler at the next bytecode, inside the ``with`` block.
_PROBE = """
import os, signal, threading
from hub.signals import stopping_on_signals
stop = threading.Event()
with stopping_on_signals(stop):
    with stop._cond:
        os.kill(os.getpid(), signal.SIG{name})
        held = True
    print("stopped" if stop.wait(10) else "not stopped")
print("handler back:", signal.getsignal(signal.SIG{name}) is signal.default_int_handler
      or signal.getsignal(signal.SIG{name}) == signal.SIG_DFL)
"""


@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_a_signal_while_the_main_thread_holds_the_stop_lock_still_stops(name: str) -> None:
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE.format(name=name)],
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the signal handler deadlocked on the stop event's lock")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["stopped", "handler back: True"]


# Between two blocks (the daemon forking its HUB_APART parts) a stop signal stays pending,
# in the process and in a child it forks, and the next block receives it.
_HELD = """
import os, signal, sys, threading
from hub.signals import hold_stop_signals, stopping_on_signals
first = threading.Event()
with stopping_on_signals(first):
    hold_stop_signals()
os.kill(os.getpid(), signal.SIG{name})  # pending: it neither ends the process nor is lost
pid = os.fork()
if pid == 0:
    os.kill(os.getpid(), signal.SIG{name})
stop = threading.Event()
with stopping_on_signals(stop):
    got = stop.wait(10)
if pid == 0:
    os._exit(0 if got else 3)
child = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print("first:", first.is_set(), "then:", got, "child:", child)
"""


@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_a_held_stop_signal_reaches_the_next_block_in_the_process_and_its_child(
        name: str) -> None:
    done = subprocess.run([sys.executable, "-c", _HELD.format(name=name)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "first: False then: True child: 0"
