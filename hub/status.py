"""``hub status``: one look at every part, queue and dead letter."""

from __future__ import annotations

from typing import Any

from hub.components import Components
from hub.errors import HubError
from hub.outbox import Outbox
from hub.settings import Settings
from hub.store.db import Store
from hub.store.deadletters import DeadLetters
from hub.store.types import utcnow

__all__ = ["collect", "render"]

STALE_SECONDS = 30.0


def collect(settings: Settings) -> dict[str, Any]:
    """Read the store (and the bus, if it answers) into a plain report."""
    from hub.bus import open_bus

    now = utcnow()
    store = Store(settings.database, connect_timeout=settings.connect_timeout)
    report: dict[str, Any] = {"settings": settings.describe(), "components": [], "queues": {},
                              "errors": []}
    try:
        with store.begin() as conn:
            comps = Components.all(conn)
            oldest = Outbox.oldest(conn)
            report["outbox"] = {"pending": Outbox.pending(conn),
                                "lag_seconds": (now - oldest).total_seconds() if oldest else 0.0}
            report["dead_letters"] = DeadLetters.count(conn)
        report["components"] = [
            {"name": c.name, "process": c.process, "state": c.state,
             "healthy": c.state == "running" and c.age(now) < STALE_SECONDS,
             "heartbeat_age": round(c.age(now), 1),
             "last_poll_age": round((now - c.last_poll_at).total_seconds(), 1)
             if c.last_poll_at else None, **c.detail}
            for c in comps
        ]
        bus = open_bus(settings, store)
        try:
            report["queues"] = bus.queue_depths()
        finally:
            bus.close()
    except HubError as exc:
        report["errors"].append(str(exc))
    finally:
        store.dispose()
    running = [c for c in report["components"] if c["state"] != "stopped"]
    report["healthy"] = not report["errors"] and all(c["healthy"] for c in running)
    return report


def render(report: dict[str, Any]) -> str:
    lines = [f"store {report['settings']['database']}   bus {report['settings']['broker']}", ""]
    if report["components"]:
        lines.append(f"{'PART':14} {'STATE':9} {'HEARTBEAT':>10} {'LAST POLL':>10}  PROCESS")
        for c in report["components"]:
            poll = "-" if c["last_poll_age"] is None else f"{c['last_poll_age']}s ago"
            state = c["state"] if c["healthy"] or c["state"] == "stopped" else f"{c['state']}!"
            lines.append(f"{c['name']:14} {state:9} {str(c['heartbeat_age']) + 's ago':>10} "
                         f"{poll:>10}  {c['process']}")
    else:
        lines.append("no parts have reported yet: is `hub run` running?")
    if "outbox" in report:
        lines += ["", f"outbox: {report['outbox']['pending']} waiting, "
                      f"oldest {report['outbox']['lag_seconds']:.1f}s",
                  f"dead letters: {report['dead_letters']}"]
    if report["queues"]:
        lines += ["", f"{'QUEUE':40} {'WAITING':>8}"]
        lines += [f"{q:40} {n:>8}" for q, n in sorted(report["queues"].items())]
    lines += [f"ERROR: {e}" for e in report["errors"]]
    return "\n".join(lines)
