"""The operations dashboard, ``/ops/``: flows with live rates and lag, part health,
conflicts, dead letters with replay and discard, a trace search and throughput and latency
charts. Server-rendered (Jinja2, inline SVG); staff log in with their staff token."""

from hub.http.dashboard.views import add_dashboard_routes

__all__ = ["add_dashboard_routes"]
