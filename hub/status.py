"""``hub status``: one look at every part, flow, queue, dead letter, conflict and certificate.

The figures are those of ``/metrics`` (both come from :mod:`hub.readings`): message rates
and source-commit → target-commit latency over the last few minutes per route, source
watermark lag, conflicts, dead letters, certificates rendered and their render time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hub import readings
from hub.components import HELD_KEY, SINCE_KEY, WHY_KEY
from hub.errors import HubError
from hub.readings import Histogram, Readings
from hub.settings import Settings
from hub.store.db import Store

__all__ = ["WINDOW", "collect", "render"]

#: The window rates and latencies are measured over.
WINDOW = dt.timedelta(minutes=5)


def collect(settings: Settings, *, window: dt.timedelta = WINDOW) -> dict[str, Any]:
    """Read the store (and the bus, if it answers) into a plain, JSON-able report."""
    from hub.bus import open_bus

    store = Store(settings.database, connect_timeout=settings.connect_timeout)
    try:
        try:
            bus = open_bus(settings, store)
        except HubError as exc:
            found = readings.read(store, None, window=window)
            return _report(settings, found, [f"bus: {exc}"])
        try:
            return _report(settings, readings.read(store, bus, window=window), [])
        finally:
            bus.close()
    finally:
        store.dispose()


def _report(settings: Settings, r: Readings, errors: list[str]) -> dict[str, Any]:
    all_latency = Histogram.empty(readings.LATENCY_BUCKETS)
    for f in r.flows:
        all_latency += f.latency
    report: dict[str, Any] = {
        "settings": settings.describe(),
        "at": r.at.isoformat(),
        "window_seconds": r.window_seconds,
        "errors": [*r.errors, *errors],
        "components": [
            {"name": c.name, "process": c.process, "connector": c.connector, "state": c.state,
             "healthy": c.up, "heartbeat_age": round(c.heartbeat_age, 1),
             "last_poll_age": None if c.last_poll_age is None else round(c.last_poll_age, 1),
             **c.detail}
            for c in r.components],
        "connectors": [{"name": c.name, "up": c.up, "parts": list(c.parts)}
                       for c in r.connectors],
        "processes": [{"process": m.process, "rss_bytes": m.rss_bytes,
                       "peak_bytes": m.peak_bytes, "parts": list(m.parts),
                       "worker_of": m.worker_of}
                      for m in readings.processes(r.components)],
        "orders_awaiting_erp": _awaiting(readings.orders_awaiting(r.components, now=r.at)),
        "flows": [
            {"route": str(f.route), "type": f.route.type, "source": f.route.source,
             "target": f.route.target, "applied": f.applied, "retried": f.retried,
             "dead_lettered": f.dead_lettered, "rate_per_minute": round(f.rate_per_minute, 2),
             "latency_p50": _round(f.latency.quantile(0.5)),
             "latency_p95": _round(f.latency.quantile(0.95))}
            for f in r.flows],
        "latency": {"count": all_latency.count, "p50": _round(all_latency.quantile(0.5)),
                    "p95": _round(all_latency.quantile(0.95))},
        "sources": [{"source": s.source, "position": s.position and s.position.isoformat(),
                     "lag_seconds": _round(s.lag_seconds), "idle_seconds": _round(s.idle_seconds)}
                    for s in r.sources],
        "queues": dict(r.queues),
    }
    if r.outbox is not None:
        report["outbox"] = {"pending": r.outbox.pending,
                            "lag_seconds": round(r.outbox.oldest_age_seconds, 1)}
        report["dead_letters"] = sum(d.count for d in r.dead_letters if d.status == "dead")
        report["dead_letters_by"] = [
            {"status": d.status, "queue": d.queue, "error_code": d.error_code, "count": d.count}
            for d in r.dead_letters]
    if r.conflicts is not None:
        report["conflicts"] = {
            "total": r.conflicts.total,
            "recent": [{"at": c.at.isoformat(), "kind": c.kind, "key": c.correlation_key,
                        "field": c.field, "crm": c.crm_value, "erp": c.erp_value,
                        "winner": c.winner} for c in r.conflicts.recent[:5]]}
    if r.certificates is not None:
        timing = Histogram.empty(readings.RENDER_BUCKETS)
        for hist in r.certificates.render_time.values():
            timing += hist
        report["certificates"] = {
            "issued": r.certificates.issued, "superseded": r.certificates.superseded,
            "rendered": dict(r.certificates.rendered),
            "render_p50": _round(timing.quantile(0.5)),
            "render_p95": _round(timing.quantile(0.95))}
    running = [c for c in report["components"] if c["state"] != "stopped"]
    report["healthy"] = not report["errors"] and all(c["healthy"] for c in running)
    return report


def _awaiting(found: readings.OrdersAwaiting | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {"count": found.count, "oldest_seconds": _round(found.oldest_seconds)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


def render(report: dict[str, Any]) -> str:
    """The report as a terminal page."""
    lines = [f"store {report['settings']['database']}   bus {report['settings']['broker']}", ""]
    if report["components"]:
        lines.append(f"{'PART':20} {'STATE':9} {'HEARTBEAT':>10} {'LAST POLL':>10}  PROCESS")
        for c in report["components"]:
            poll = "-" if c["last_poll_age"] is None else f"{c['last_poll_age']}s ago"
            state = c["state"] if c["healthy"] or c["state"] == "stopped" else f"{c['state']}!"
            lines.append(f"{c['name']:20} {state:9} {str(c['heartbeat_age']) + 's ago':>10} "
                         f"{poll:>10}  {c['process']}")
        lines += [f"{c['name']} holds {c[HELD_KEY]} messages since {c[SINCE_KEY]} UTC: "
                  f"{c[WHY_KEY]}" for c in report["components"] if c.get(HELD_KEY)]
        lines.append("connectors: " + "  ".join(
            f"{c['name']} {'up' if c['up'] else 'DOWN'}" for c in report["connectors"]))
        if report["processes"]:
            lines.append("memory: " + "  ".join(
                f"{m['process']} {_mib(m['rss_bytes'])} (peak {_mib(m['peak_bytes'])}"
                + (f", worker of {m['worker_of']})" if m["worker_of"] else ")")
                for m in report["processes"]))
    else:
        lines.append("no parts have reported yet: is `hub run` running?")
    minutes = report["window_seconds"] / 60
    lines += ["", f"flows over the last {minutes:g} min"
                  f" (latency: source commit to target commit)"]
    if report["flows"]:
        lines.append(f"{'ROUTE':36} {'APPLIED':>7} {'/MIN':>7} {'RETRIED':>7} {'DEAD':>5} "
                     f"{'P50':>7} {'P95':>7}")
        for f in report["flows"]:
            lines.append(f"{f['route']:36} {f['applied']:>7} {f['rate_per_minute']:>7.1f} "
                         f"{f['retried']:>7} {f['dead_lettered']:>5} "
                         f"{_seconds(f['latency_p50']):>7} {_seconds(f['latency_p95']):>7}")
        lat = report["latency"]
        lines.append(f"all routes: {lat['count']} timed, p50 {_seconds(lat['p50'])}, "
                     f"p95 {_seconds(lat['p95'])}")
    else:
        lines.append("  nothing applied")
    if report["sources"]:
        lines += ["", f"{'SOURCE':36} {'LAG':>9} {'IDLE':>9}"]
        lines += [f"{s['source']:36} {_seconds(s['lag_seconds']):>9} "
                  f"{_seconds(s['idle_seconds']):>9}" for s in report["sources"]]
    if "outbox" in report:
        lines += ["", f"outbox: {report['outbox']['pending']} waiting, "
                      f"oldest {report['outbox']['lag_seconds']:.1f}s",
                  f"dead letters: {report['dead_letters']}"]
    if (awaiting := report["orders_awaiting_erp"]) is not None:
        oldest = ("" if awaiting["oldest_seconds"] is None
                  else f", the oldest changed {_seconds(awaiting['oldest_seconds'])} ago")
        lines.append(f"CRM orders awaiting the ERP: {awaiting['count']}{oldest}")
    if "conflicts" in report:
        conflicts = report["conflicts"]
        lines.append(f"conflicts: {conflicts['total']}")
        lines += [f"  {c['at'][:19]} {c['key'] or '-'} {c['field']}: {c['winner']} won "
                  f"(crm {c['crm']}, erp {c['erp']})" for c in conflicts["recent"]]
    if "certificates" in report:
        certs = report["certificates"]
        rendered = ", ".join(f"{n} {lang}" for lang, n in sorted(certs["rendered"].items()))
        lines.append(f"certificates: {certs['issued']} issued ({certs['superseded']} "
                     f"superseded), PDFs rendered: {rendered or 'none'}, render p50 "
                     f"{_seconds(certs['render_p50'])}, p95 {_seconds(certs['render_p95'])}")
    if report["queues"]:
        lines += ["", f"{'QUEUE':40} {'WAITING':>8}"]
        lines += [f"{q:40} {n:>8}" for q, n in sorted(report["queues"].items())]
    lines += [f"ERROR: {e}" for e in report["errors"]]
    return "\n".join(lines)
