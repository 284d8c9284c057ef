"""The operations dashboard in headless Chromium (Debian's, never a downloaded one) against a
running sync: the daemon's parts on the embedded or the real stack, and the HTTP app served
by uvicorn on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from hub.http.app import create_app
from hub.tokens import CUSTOMER, STAFF, ApiTokens
from tests.certificates.world import served
from tests.sync.conftest import Stack, running

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@dataclass
class Ops:
    """A running hub, its dashboard's address and a staff and a customer token."""

    stack: Stack
    base: str
    staff: str
    customer: str

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"],
                                      headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


def _ops(kind: str, tmp_path: Path) -> Iterator[Ops]:
    with running(kind, tmp_path) as stack:
        with stack.runtime.store.begin() as conn:
            _, staff = ApiTokens.create(conn, STAFF, "ops-anna")
            _, customer = ApiTokens.create(conn, CUSTOMER, "C00042")
        with served(create_app(stack.runtime)) as http:
            yield Ops(stack, str(http.base_url).rstrip("/"), staff, customer)


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[Ops]:
    """The embedded stack."""
    yield from _ops("embedded", tmp_path)


@pytest.fixture(params=["embedded", "real"])
def any_ops(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ops]:
    """The embedded and the real stack (PostgreSQL, MariaDB through ODBC, RabbitMQ)."""
    yield from _ops(request.param, tmp_path)


def log_in(page: Page, ops: Ops, token: str | None = None, path: str = "/ops/") -> None:
    page.goto(ops.url(path))
    page.fill("#token", token or ops.staff)
    page.click("button:has-text('Log in')")
    page.wait_for_load_state()
