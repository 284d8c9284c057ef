"""The whole sync running in-process on either stack, driven through the systems' tables.

- ``embedded``: hub store, bus and the three systems on SQLite files, the embedded bus.
- ``real``: hub store on PostgreSQL, RabbitMQ, CRM on PostgreSQL, ERP on MariaDB through
  ODBC, LIMS on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from connectors.crm.schema import crm_account
from hub.daemon import Daemon
from hub.demo.people import ErpUser, SalesPerson
from hub.demo.reference import init
from hub.parts import build_parts
from hub.runtime import Runtime
from hub.settings import Settings
from tests.bus.kit import QUEUE_PREFIX, delete_test_queues
from tests.databases import AMQP_URL, Databases

#: (system, url) -> the URL to use instead; see :func:`stack_settings`.
Route = Callable[[str, str], str] | None

SYNC_PARTS = ("relay", "deadletters", "crm-poller", "crm-applier", "erp-poller", "erp-applier")


@dataclass
class Stack:
    kind: str
    settings: Settings
    runtime: Runtime
    daemon: Daemon

    @property
    def crm(self) -> Engine:
        return self.runtime.system("crm")

    @property
    def erp(self) -> Engine:
        return self.runtime.system("erp")

    def sales(self) -> SalesPerson:
        return SalesPerson(self.crm)

    def erp_user(self) -> ErpUser:
        return ErpUser(self.erp)

    def account(self, number: str = "C00042") -> str:
        with self.crm.connect() as conn:
            found: str = conn.execute(select(crm_account.c.account_id).where(
                crm_account.c.account_number == number)).scalar_one()
        return found


def stack_settings(kind: str, tmp_path: Path, *, route: Route = None, **extra: Any
                   ) -> tuple[Settings, list[Databases]]:
    """Settings of a fresh ``kind`` stack; ``route(system, url)`` may point a system's URL
    elsewhere (at a proxy in front of its server, say)."""
    def to(system: str, url: str) -> str:
        return url if route is None else route(system, url)

    common: dict[str, Any] = {"poll_interval": 0.2, "retry_delays": (0.2, 0.5, 1.0),
                              "http_port": 0, "partitions": 2, **extra}
    if kind == "embedded":
        var = tmp_path / "var"
        return Settings(_env_file=None, var_dir=var,  # type: ignore[call-arg]
                        database_url=f"sqlite:///{var}/hub.db",
                        **{f"{system}_url": to(system, f"sqlite:///{var}/{system}.db")
                           for system in ("crm", "erp", "lims")}, **common), []
    pg, maria = Databases("postgresql", tmp_path), Databases("mariadb", tmp_path)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=pg.url("hub", create=True), broker_url=AMQP_URL,
        exchange=f"{QUEUE_PREFIX}x-{uuid.uuid4().hex[:8]}",
        queue_prefix=f"{QUEUE_PREFIX}{uuid.uuid4().hex[:8]}.", crm_url=to("crm", pg.url("crm")),
        erp_url=to("erp", maria.url("erp")), lims_url=to("lims", pg.url("lims")), **common)
    return settings, [pg, maria]


@contextmanager
def running(kind: str, tmp_path: Path, parts: tuple[str, ...] = SYNC_PARTS, *,
            route: Route = None, **extra: Any) -> Iterator[Stack]:
    """Seeded systems, an empty hub and a daemon of ``parts`` on the ``kind`` stack; all of
    it (queues and databases too) removed afterwards."""
    settings, databases = stack_settings(kind, tmp_path, route=route, **extra)
    init(settings, seed=True)
    runtime = Runtime.open(settings)
    daemon = Daemon(runtime, [p for p in build_parts(runtime) if p.name in parts])
    daemon.prepare()
    daemon.start()
    built = Stack(kind, settings, runtime, daemon)
    try:
        yield built
    finally:
        built.daemon.shutdown()  # a test may have replaced the daemon
        runtime.close()
        if settings.broker_url is not None:
            delete_test_queues(settings.queue_prefix)
            delete_test_queues(settings.exchange)
        for db in databases:
            db.drop_all()


@pytest.fixture(params=["embedded", "real"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with running(request.param, tmp_path) as built:
        yield built
