"""The FastAPI application: health, readiness, metrics, the certificate and operations APIs."""

from __future__ import annotations

import functools
from collections.abc import Callable

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from hub import __version__
from hub.errors import HubError
from hub.http.metrics import HubCollector
from hub.runtime import SYSTEMS, Runtime

__all__ = ["create_app"]


def create_app(runtime: Runtime) -> FastAPI:
    """Build the app around ``runtime``; nothing is shared with other apps in the process."""
    app = FastAPI(title="Integration hub", version=__version__)
    registry = CollectorRegistry()
    registry.register(HubCollector(runtime))

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> Response:
        """A path key that cannot be one (``/dead-letters/1 OR 1=1``) names nothing: the same
        404 as a key that does not exist. Bad query parameters stay 422."""
        if any(error.get("loc", ("",))[0] == "path" for error in exc.errors()):
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return await request_validation_exception_handler(request, exc)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Readiness: the store, the bus and the three systems all answer."""
        checks: dict[str, str] = {}
        probes: dict[str, Callable[[], None]] = {
            "store": runtime.store.ping,
            "bus": runtime.bus.ping,
            **{s: functools.partial(runtime.ping_system, s) for s in SYSTEMS},
        }
        for name, probe in probes.items():
            try:
                probe()
                checks[name] = "ok"
            except HubError as exc:
                checks[name] = str(exc)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    from certificates.api import add_certificate_routes
    from certificates.parts import service_for

    add_certificate_routes(app, service_for(runtime), rate_limit=runtime.settings.rate_limit)
    from hub.http.ops import add_ops_routes

    add_ops_routes(app, runtime)
    from hub.http.dashboard import add_dashboard_routes

    add_dashboard_routes(app, runtime)
    return app
