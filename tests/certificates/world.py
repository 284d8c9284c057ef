"""A hub store, a seeded ERP and a seeded LIMS on real servers, for the certificate service's
tests: deliveries posted in the ERP the way the warehouse posts them, the message the ERP
poller publishes for them, and LIMS re-tests made the way the lab makes them."""

# The LIMS's columns are upper-case, which ruff takes for constants (a "Yoda condition").
# ruff: noqa: SIM300

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import Engine, update

from certificates.parts import CertificateApplier, CertificateWatcher
from certificates.service import CertificateService
from connectors.erp.documents import ErpDeliveries
from connectors.erp.orders import ErpOrders
from connectors.erp.poller import order_key
from connectors.lims.schema import result
from hub.demo.people import ErpUser
from hub.model.messages import DeliveryPosted
from hub.runtime import Runtime
from hub.settings import Settings
from tests.connectors.lims.kit import LATER, SEEDED_AT, copy_sample, release_samples, set_result
from tests.databases import Databases, seeded_system
from tests.helpers import free_port, wait_for

#: (store, ERP and LIMS) database kinds.
STACKS = [
    pytest.param(("sqlite", "sqlite"), id="sqlite"),
    pytest.param(("postgresql", "postgresql"), id="postgresql", marks=pytest.mark.postgres),
]
#: The same, and the systems on MariaDB through ODBC.
ALL_STACKS = [
    *STACKS,
    pytest.param(("sqlite", "mariadb"), id="mariadb-odbc", marks=pytest.mark.mariadb),
]
PUBLIC = "https://coa.solvents.example.com"
#: 上海华谊精细化工有限公司 and Rheinland Lacke GmbH, seeded in the ERP.
HUAYI, RHEINLAND = "C00042", "C00043"
PRODUCT_OF = {"B2611-0001": "ETAC-99", "B2611-0002": "ETAC-99", "B2611-0003": "MEK-995",
              "B2611-0004": "IPA-999", "B2611-0005": "IPA-999", "B2611-0011": "PGMEA-995",
              "B2611-0012": "ETAC-99"}


@dataclass
class World:
    runtime: Runtime
    service: CertificateService
    erp: Engine
    lims: Engine
    orders: int = 0

    @property
    def store_kind(self) -> str:
        return self.runtime.store.dialect

    def deliver(self, customer: str, batch: str, quantity: str = "16000",
                product: str | None = None) -> DeliveryPosted:
        """An ERP order of ``customer`` for the batch's product, delivered from ``batch``;
        returns the message the ERP poller publishes for the delivery."""
        item = product or PRODUCT_OF[batch]
        self.orders += 1
        line = SimpleNamespace(product_code=item, description=item, quantity=Decimal(quantity),
                               unit_price=Decimal("1.25"), unit="kg")
        user = ErpUser(self.erp, "warehouse")
        order_entry, _ = user.enter_order(customer, [line],
                                          reference=f"SO-2026-{self.orders:06d}")
        delivery_entry = user.deliver(order_entry, [(0, Decimal(quantity), batch)])
        with self.erp.connect() as conn:
            delivery = ErpDeliveries().read(conn, delivery_entry)
            order = ErpOrders().read(conn, order_entry)
        assert delivery is not None and order is not None
        return DeliveryPosted(correlation_key=order_key(order), source="erp",
                              source_version=f"{delivery_entry}", delivery=delivery)

    def applier(self) -> CertificateApplier:
        return CertificateApplier(self.runtime)

    def watcher(self) -> CertificateWatcher:
        return CertificateWatcher(self.runtime)

    def retest(self, batch: str, component: str, value: str, *, in_spec: str = "T",
               at: dt.datetime = LATER) -> None:
        """An authorised re-test: a new release sample like the standing one, reviewed at
        ``at``, whose ``component`` result reads ``value``."""
        with self.lims.begin() as conn:
            standing = release_samples(conn, batch)[-1]
            number = standing + 1000
            copy_sample(conn, standing, number, CHANGED_ON=at, DATE_REVIEWED=at)
            set_result(conn, number, component, ENTRY=value, FORMATTED_ENTRY=value,
                       IN_SPEC=in_spec, CHANGED_ON=at)

    def flag(self, batch: str, component: str, in_spec: str, at: dt.datetime) -> None:
        """Set the LIMS's IN_SPEC flag of a result of the lot's standing release sample."""
        with self.lims.begin() as conn:
            standing = self.standing_sample(batch)
            set_result(conn, standing, component, IN_SPEC=in_spec, CHANGED_ON=at)

    def touch(self, batch: str, at: dt.datetime) -> None:
        """Stamp the standing sample's results changed without changing them."""
        with self.lims.begin() as conn:
            conn.execute(update(result).where(
                result.c.SAMPLE_NUMBER == self.standing_sample(batch)).values(CHANGED_ON=at))

    def standing_sample(self, batch: str) -> int:
        quality = self.service.reader().quality(batch)
        assert quality is not None
        return quality.sample_number

    def result_value(self, batch: str, component: str) -> str:
        quality = self.service.reader().quality(batch)
        assert quality is not None
        return next(r.value for r in quality.results if r.component == component)


@contextmanager
def world(stack: tuple[str, str], tmp_path: Path, **settings: object) -> Iterator[World]:
    """A migrated hub store of the first kind, and a seeded ERP and LIMS of the second."""
    store_kind, system_kind = stack
    with ExitStack() as stack_:
        erp = stack_.enter_context(seeded_system(system_kind, tmp_path / "erp", "erp",
                                                 now=SEEDED_AT))
        lims = stack_.enter_context(seeded_system(system_kind, tmp_path / "lims", "lims",
                                                  now=SEEDED_AT))
        if store_kind == "sqlite":
            store_url = f"sqlite:///{tmp_path}/hub.db"
        else:
            databases = Databases(store_kind, tmp_path)
            stack_.callback(databases.drop_all)
            store_url = databases.url("hub", create=True)
        config = Settings(
            var_dir=tmp_path / "var", database_url=store_url,
            erp_url=erp.url.render_as_string(hide_password=False),
            lims_url=lims.url.render_as_string(hide_password=False),
            public_url=PUBLIC, **settings)  # type: ignore[arg-type]
        runtime = Runtime.open(config)
        stack_.callback(runtime.close)
        runtime.store.migrate()
        from certificates.parts import service_for

        yield World(runtime=runtime, service=service_for(runtime), erp=erp, lims=lims)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = ["ALL_STACKS", "HUAYI", "LATER", "PUBLIC", "RHEINLAND", "SEEDED_AT", "STACKS",
           "World", "served", "sha256", "world"]


@contextmanager
def served(app: object) -> Iterator[httpx.Client]:
    """``app`` served by uvicorn on a free port in a thread, and a client of it."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_config=None, access_log=False,  # type: ignore[arg-type]
        lifespan="off"))
    thread = threading.Thread(target=server.run, name="test-http", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 20, "the test HTTP server")
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
