"""An applier waits out an outage of its target, holding the batch, instead of spending the
messages' retries on it (:mod:`hub.sync.outage`).

The fault suite found why this matters (``docs/reliability.md``, under finding 8): while
MariaDB restarted, the ERP applier kept taking messages and parked each failure on the
retry delays, so a restart slower than 1 + 5 + 30 s put every order in flight on the 120-s
step, and an outage longer than all the delays together would have sent them to dead
letters. Here the ERP goes away for longer than the first two delays; its order must reach
it within seconds of its return, not on the third delay, and without a single retry.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from connectors.crm.schema import crm_order
from hub.components import HELD_KEY, SINCE_KEY, WHY_KEY
from hub.demo.people import Line
from hub.errors import Contention, DatabaseUnavailable
from hub.http.dashboard.readings import overview
from hub.http.dashboard.views import Dashboard
from hub.http.metrics import HubCollector
from hub.status import collect, render
from hub.store.tables import journal
from hub.sync.outage import Outage, is_outage
from hub.sync.parts import Applier
from tests.databases import MARIADB_URL, Databases
from tests.helpers import wait_for
from tests.proxy import Cuttable
from tests.sync.conftest import Stack, running

#: As the defaults begin (1, 5, 30 s): a message that spends its retries on the outage
#: below comes back on the 30-s step.
DELAYS = (1.0, 5.0, 30.0)
DOWN_FOR = 8.0  # seconds: past the first two delays


@contextmanager
def _stack(kind: str, tmp_path: Path) -> Iterator[tuple[Stack, Cuttable]]:
    """A running stack whose ERP, on the shared MariaDB whatever the stack, is reached
    through a proxy that cuts it off (the embedded stack keeps its bus and store)."""
    url = make_url(MARIADB_URL)
    mariadb = Databases("mariadb", tmp_path)
    with Cuttable(url.host or "127.0.0.1", url.port or 3306) as proxy:
        def via_proxy(system: str, to: str) -> str:
            if system != "erp":
                return to
            if kind == "embedded":
                to = mariadb.url("erp")
            return make_url(to).set(host="127.0.0.1", port=proxy.port).render_as_string(
                hide_password=False)

        try:
            with running(kind, tmp_path, route=via_proxy, retry_delays=DELAYS) as stack:
                yield stack, proxy
        finally:
            mariadb.drop_all()


def _applier(stack: Stack) -> Applier:
    found = [p for p in stack.daemon.parts if p.name == "erp-applier"]
    assert isinstance(found[0], Applier)
    return found[0]


def _erp_number(stack: Stack, order_id: str) -> Any:
    with stack.crm.connect() as conn:
        return conn.execute(select(crm_order.c.erp_order_number).where(
            crm_order.c.order_id == order_id)).scalar_one()


@pytest.mark.parametrize("kind", ["embedded", "real"])
def test_an_order_sent_while_the_erp_is_down_is_held_and_applied_when_it_returns(
        kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hub.sync.parts")
    with _stack(kind, tmp_path) as (stack, erp):
        applier = _applier(stack)
        erp.cut()
        cut_at = time.monotonic()
        order_id = stack.sales().submit_order(
            stack.account(), [Line("ETAC-99", D("10"), D("1.25"))])
        wait_for(lambda: applier.detail().get(HELD_KEY), 30, "the ERP applier holding it")
        held = applier.detail()
        assert held[HELD_KEY] >= 1 and held[SINCE_KEY]
        assert "erp" in held[WHY_KEY].lower()
        # Operations see it: in hub status (from the heartbeats), /metrics, the dashboard.
        wait_for(lambda: "erp-applier holds" in render(collect(stack.settings)), DOWN_FOR,
                 "hub status showing the messages held")
        page = render(collect(stack.settings))
        assert re.search(r"erp-applier holds \d+ messages since \S+ UTC: erp unreachable", page)
        samples = [m for family in HubCollector(stack.runtime).collect()
                   if family.name == "hub_applier_held_messages" for m in family.samples]
        assert [m.labels["component"] for m in samples] == ["erp-applier"]
        assert samples[0].value >= 1
        live = Dashboard(stack.runtime).env.get_template("_live.html").render(
            o=overview(stack.runtime.store, None), session=None, csrf="", flash=None,
            path="/ops/live")
        assert re.search(r'data-metric="held"[^>]*>holds \d+ messages since '
                         r'\d\d:\d\d:\d\d UTC: erp unreachable', live)
        time.sleep(max(0.0, cut_at + DOWN_FOR - time.monotonic()))
        assert _erp_number(stack, order_id) is None
        erp.restore()
        restored = time.monotonic()
        wait_for(lambda: _erp_number(stack, order_id) is not None, 20,
                 "the order's ERP number back in the CRM")
        assert time.monotonic() - restored < 15, "applied on return, not on a later retry"
        assert HELD_KEY not in applier.detail(), "the outage is over"
        with stack.runtime.store.reading() as hub:
            retried = hub.execute(select(func.count()).select_from(journal).where(
                journal.c.event == "retried", journal.c.target == "erp")).scalar_one()
        assert retried == 0, "the outage spent none of the message's retries"
        # The ERP poller failed every poll meanwhile: one warning, and a line when it is back.
        polls = [r for r in caplog.records if r.getMessage().startswith("erp-poller poll")]
        assert len([r for r in polls if r.levelno >= logging.WARNING]) == 1, polls
        wait_for(lambda: any("erp-poller polling again after" in r.getMessage()
                             for r in caplog.records), 10, "the ERP poller polling again")


def test_a_failure_while_the_systems_answer_is_not_held() -> None:
    """A database error while every system answers (a lock wait timed out, say) takes the
    retry path at once: holding would only delay it."""
    outage = Outage("erp-applier", lambda: None)
    started = time.monotonic()
    assert not outage.wait(5, threading.Event(), time.monotonic() + 60)
    assert time.monotonic() - started < 0.5 and outage.detail() == {}


def test_a_batch_is_held_no_longer_than_its_limit_nor_past_a_stop() -> None:
    def refuse() -> None:
        raise DatabaseUnavailable("erp unreachable: OperationalError")

    outage = Outage("erp-applier", refuse)
    started = time.monotonic()
    assert not outage.wait(3, threading.Event(), time.monotonic() + 1.5)
    assert 1.4 < time.monotonic() - started < 3.0
    assert outage.detail() == {}, "given up on: the next failure looks again"

    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    assert not outage.wait(3, stop, time.monotonic() + 60)
    assert time.monotonic() - started < 2.0


def test_a_deadlock_is_not_an_outage() -> None:
    assert is_outage(DatabaseUnavailable("erp: connection refused"))
    assert not is_outage(Contention("deadlock found"))
    assert not is_outage(None)
