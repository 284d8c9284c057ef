"""``python -m hub demo simulate``: the people of the three systems at work, so that a newcomer
watching ``python -m hub status`` (with ``python -m hub run`` in another terminal) sees
everything move.

The people and what they do are :class:`~hub.demo.simulator.Simulator`'s; this module runs
it at a pace, opens the systems and prints the summary.

Every action prints one line; a failed one (a lock timeout, an order changed meanwhile)
prints why and the simulation carries on. On zero configuration the embedded systems are
created and seeded first, as ``python -m hub run`` does.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import click
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url

from hub.demo.reference import SYSTEMS, System, ensure_embedded
from hub.demo.simulator import ACTIONS, Action, Simulator, Summary, reading
from hub.errors import DatabaseUnavailable, HubError, PermanentError, db_errors
from hub.settings import Settings, mask_url
from hub.signals import stopping_on_signals
from hub.store.engine import make_engine

__all__ = ["ACTIONS", "Action", "Simulator", "Summary", "open_systems", "run", "simulate"]

#: Required tables, to tell a user early that a configured system has no reference schema.
_TABLES: Mapping[System, tuple[str, ...]] = {
    "crm": ("crm_account", "crm_order", "crm_order_line"),
    "erp": ("OCRD", "ORDR", "RDR1", "ODLN", "DLN1", "IBT1", "OINV", "INV1"),
    "lims": ("LOT", "SAMPLE", "TEST", "RESULT"),
}


def simulate(settings: Settings, *, rate: float | None = 2.0, duration: float | None = None,
             actions: int | None = None, seed: int | None = None, quiet: bool = False,
             echo: Callable[[str], None] = click.echo, stop: threading.Event | None = None,
             weights: Mapping[str, float] | None = None,
             settle: float | None = None) -> Summary:
    """Act as the systems' users at ``rate`` actions per second (None: as fast as possible)
    until ``duration`` seconds have passed, ``actions`` were done, or ``stop`` is set; then
    print and return the summary. ``weights`` and ``settle`` are :class:`Simulator`'s; settle
    defaults to a few of the hub's poll intervals (at least 5 s).

    Raises DatabaseUnavailable or PermanentError when the systems cannot be opened (see
    :func:`open_systems`); once running, a failed action is reported and skipped.
    """
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    stop = stop or threading.Event()
    engines = open_systems(settings)
    try:
        simulator = Simulator(engines["crm"], engines["erp"], engines["lims"],
                              rng=random.Random(seed), echo=echo, quiet=quiet, weights=weights,
                              settle=max(5.0, 3 * settings.poll_interval) if settle is None
                              else settle)
        if not quiet:
            described = settings.describe()
            pace = f"{rate:g} action{'' if rate == 1 else 's'}/s" if rate else "full speed"
            echo(f"simulating at {pace} on CRM {described['crm']}, ERP {described['erp']}, "
                 f"LIMS {described['lims']}" + ("" if duration or actions else "; Ctrl-C stops"))
        start = next_at = time.monotonic()
        steps = 0
        while not stop.is_set():
            if actions is not None and steps >= actions:
                break
            if duration is not None and time.monotonic() - start >= duration:
                break
            simulator.step()
            steps += 1
            if rate is not None:
                next_at = max(next_at + 1 / rate, time.monotonic())
                wait = next_at - time.monotonic()
                if duration is not None:
                    wait = min(wait, start + duration - time.monotonic())
                if wait > 0 and stop.wait(wait):
                    break
        simulator.summary.seconds = time.monotonic() - start
    finally:
        for engine in engines.values():
            engine.dispose()
    for line in simulator.summary.lines():
        echo(line)
    return simulator.summary


def run(settings: Settings, *, rate: float, duration: float | None, seed: int | None,
        quiet: bool) -> int:
    """``hub demo simulate``: :func:`simulate` until the duration is up or SIGINT/SIGTERM;
    returns the exit code (1 when the systems cannot be opened)."""
    stop = threading.Event()
    try:
        with stopping_on_signals(stop):
            simulate(settings, rate=rate, duration=duration, seed=seed, quiet=quiet, stop=stop)
    except HubError as exc:
        click.echo(f"demo simulate: {exc}", err=True)
        return 1
    return 0


def open_systems(settings: Settings) -> dict[System, Engine]:
    """Engines on the three systems, after creating and seeding the embedded ones that the
    user left unconfigured and that do not exist yet (as the daemon does on start).

    Raises DatabaseUnavailable when a system cannot be reached or a configured SQLite file is
    missing (it is never created), PermanentError when a system lacks the reference tables.
    """
    if not all(settings.system_configured(s) for s in SYSTEMS):
        ensure_embedded(settings)
    engines: dict[System, Engine] = {}
    try:
        for system in SYSTEMS:
            url = settings.system_url(system)
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite" and settings.system_configured(system):
                path = Path(parsed.database or "")
                if parsed.database not in (None, "", ":memory:") and not path.exists():
                    raise DatabaseUnavailable(f"{system} database file {path} does not exist")
            engine = make_engine(url, connect_timeout=settings.connect_timeout, pool_size=2)
            engines[system] = engine
            with db_errors(f"open the {system} at {mask_url(url)}"), reading(engine) as conn:
                tables = set(inspect(conn).get_table_names())
            missing = [t for t in _TABLES[system] if t not in tables]
            if missing:
                raise PermanentError(
                    f"the {system} at {mask_url(url)} has no {', '.join(missing)}: create the "
                    "reference systems first with `python -m hub demo init --seed`")
    except BaseException:
        for engine in engines.values():
            engine.dispose()
        raise
    return engines
