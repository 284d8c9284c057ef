"""Fresh, seeded systems for a daemon run as ``python -m hub run``, on either stack."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, func, select

from connectors.crm.schema import crm_order
from hub.demo.reference import create_schemas, seed
from tests.bus.kit import QUEUE_PREFIX, delete_test_queues
from tests.databases import AMQP_URL, Databases
from tests.helpers import free_port, hub_env

__all__ = ["daemon_stack", "synced_orders"]


@contextlib.contextmanager
def daemon_stack(kind: str, tmp_path: Path, **settings: str
                 ) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(the daemon's environment with ``settings``, URLs of crm/erp/lims) on fresh, seeded
    systems: ``embedded`` (SQLite files under ``tmp_path/var``, and nothing configured but
    where they live, so the bus is the embedded one) or ``real`` (hub store, CRM and LIMS on
    PostgreSQL, ERP on MariaDB through ODBC, RabbitMQ); dropped afterwards."""
    if kind == "embedded":
        var = tmp_path / "var"
        urls = {name: f"sqlite:///{var}/{name}.db" for name in ("crm", "erp", "lims")}
        var.mkdir()
        create_schemas(urls)
        seed(urls)
        yield hub_env(HUB_VAR_DIR=str(var), HUB_HTTP_PORT=str(free_port()), **settings), urls
        return
    pg, maria = Databases("postgresql", tmp_path), Databases("mariadb", tmp_path)
    tag = uuid.uuid4().hex[:8]
    urls = {"crm": pg.url("crm", create=True), "erp": maria.url("erp", create=True),
            "lims": pg.url("lims", create=True)}
    try:
        create_schemas(urls)
        seed(urls)
        yield hub_env(
            HUB_DATABASE_URL=pg.url("hub", create=True), HUB_BROKER_URL=AMQP_URL,
            HUB_CRM_URL=urls["crm"], HUB_ERP_URL=urls["erp"], HUB_LIMS_URL=urls["lims"],
            HUB_EXCHANGE=f"{QUEUE_PREFIX}x-{tag}", HUB_QUEUE_PREFIX=f"{QUEUE_PREFIX}{tag}.",
            HUB_HTTP_PORT=str(free_port()), **settings,
        ), urls
    finally:
        delete_test_queues(f"{QUEUE_PREFIX}{tag}.")
        delete_test_queues(f"{QUEUE_PREFIX}x-{tag}")
        pg.drop_all()
        maria.drop_all()


def synced_orders(crm: Engine) -> int:
    """CRM orders that carry their ERP number: the round trip is done for them."""
    with crm.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(crm_order).where(
            crm_order.c.erp_order_number.is_not(None))).scalar_one())
