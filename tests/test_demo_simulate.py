"""``demo simulate``: the people of the three systems at work, on SQLite and on the real
servers (CRM and LIMS on PostgreSQL, ERP on MariaDB through ODBC), without the hub running.

Where the hub would have brought CRM orders into the ERP, the tests enter them the way the hub
writes them (held, ``Confirmed = N``, ``U_CRM_ID`` set), so the ERP users have work.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text, update

from connectors.crm.schema import crm_account, crm_order, crm_order_line
from connectors.erp.schema import dln1, ibt1, odln, oinv, ordr, rdr1
from connectors.lims.reader import LimsReader, NotReleased
from connectors.lims.schema import lot, result, sample, test
from hub.demo import init
from hub.demo.people import ErpUser, LabPerson, Line
from hub.demo.simulate import ACTIONS, Simulator, simulate
from hub.settings import Settings
from hub.store.engine import make_engine
from hub.store.types import utcnow
from tests.databases import Databases, seeded_system
from tests.helpers import hub_env

CRM_ONLY = {"submit": 4, "edit": 1.5, "cancel": 0.2}
SEEDED_LOTS = 12


@pytest.fixture(params=[
    pytest.param("sqlite", id="sqlite"),
    pytest.param("real", id="pg-crm-lims_mariadb-erp",
                 marks=[pytest.mark.postgres, pytest.mark.mariadb]),
])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Zero configuration under a temporary var dir, or the three systems on the servers."""
    if request.param == "sqlite":
        yield Settings(_env_file=None, var_dir=tmp_path / "var")  # type: ignore[call-arg]
        return
    pg, maria = Databases("postgresql", tmp_path), Databases("mariadb", tmp_path)
    pg.check_server()
    maria.check_server()
    try:
        configured = Settings(  # type: ignore[call-arg]
            _env_file=None, var_dir=tmp_path / "var", crm_url=pg.url("crm"),
            erp_url=maria.url("erp"), lims_url=pg.url("lims"))
        init(configured, seed=True)
        yield configured
    finally:
        pg.drop_all()
        maria.drop_all()


class Systems:
    def __init__(self, settings: Settings) -> None:
        self.crm = make_engine(settings.system_url("crm"))
        self.erp = make_engine(settings.system_url("erp"))
        self.lims = make_engine(settings.system_url("lims"))

    def close(self) -> None:
        for engine in (self.crm, self.erp, self.lims):
            engine.dispose()


def rows(engine: Engine, query: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where))
                   .scalar_one())


def bring_into_erp(systems: Systems, order_id: str) -> int:
    """What the hub does with a submitted CRM order: the same order in the ERP, held."""
    header = rows(systems.crm, select(crm_order, crm_account.c.erp_customer_code).join(
        crm_account, crm_account.c.account_id == crm_order.c.account_id,
    ).where(crm_order.c.order_id == order_id))[0]
    lines = rows(systems.crm, select(crm_order_line).where(
        crm_order_line.c.order_id == order_id).order_by(crm_order_line.c.line_no))
    doc_entry, _ = ErpUser(systems.erp, "hub").enter_order(
        header.erp_customer_code,
        [Line(ln.product_code, ln.quantity, ln.unit_price, unit=ln.unit) for ln in lines],
        currency=header.currency, reference=header.order_number)
    with systems.erp.begin() as conn:
        conn.execute(update(ordr).where(ordr.c.DocEntry == doc_entry).values(
            U_CRM_ID=order_id, Confirmed="N", U_CustPO=header.customer_po,
            U_ReqDate=header.requested_date))
    return doc_entry


def assert_authorised_lot(lims: Engine, batch: str, product: str) -> None:
    found = rows(lims, select(lot).where(batch == lot.c.LOT_NAME))
    assert len(found) == 1, f"batch {batch} is no LIMS lot"
    assert product == found[0].PRODUCT and found[0].STATUS == "A"
    released = LimsReader(lims).quality(batch)
    assert released is not None and released.product == product


def test_the_simulation_works_every_system(settings: Settings) -> None:
    out: list[str] = []
    # The sales people alone first, as when the hub has not brought anything over yet.
    first = simulate(settings, rate=None, actions=30, seed=11, echo=out.append, settle=0,
                     weights=CRM_ONLY)
    systems = Systems(settings)
    try:
        crm_orders = rows(systems.crm, select(crm_order).order_by(crm_order.c.order_number))
        assert first.failed == 0, "\n".join(out)
        assert len(crm_orders) == first.counts["submit"] > 0
        assert {o.modified_by for o in crm_orders} <= {"anna", "wang.fang", "lars", "priya"}
        assert all(o.order_number.startswith(f"SO-{dt.date.today():%Y}-") for o in crm_orders)
        assert any(" submitted SO-" in line and " kg" in line for line in out)
        for line in count_lines(systems.crm):
            assert 200 <= line.quantity <= 20000 and line.quantity % 50 == 0
        assert count(systems.erp, ordr) == 0 and first.counts["confirm"] == 0

        # An order typed into the ERP for a product without any lot: the lab releases one.
        seeded_buoh = count(systems.lims, lot, lot.c.PRODUCT == "BUOH-995")
        assert seeded_buoh == 0
        doc, _ = ErpUser(systems.erp).enter_order(
            "C00043", [Line("BUOH-995", Decimal(1000), Decimal("1.35"))])
        said: list[str] = []
        only_deliver = Simulator(systems.crm, systems.erp, systems.lims, echo=said.append,
                                 weights={"deliver": 1}, settle=0)
        assert only_deliver.step() == "deliver", said
        assert any("LIMS" in line and "released new lot" in line for line in said), said
        batch = rows(systems.erp, select(ibt1.c.BatchNum))[0].BatchNum
        assert_authorised_lot(systems.lims, batch, "BUOH-995")
        new_number = rows(systems.lims, select(lot.c.LOT_NUMBER).where(batch == lot.c.LOT_NAME))
        assert new_number[0][0] > 1000 + SEEDED_LOTS

        # The hub would now have brought the submitted orders over, held.
        submitted = [o.order_id for o in crm_orders if o.status == "submitted"][:6]
        assert submitted
        for order_id in submitted:
            bring_into_erp(systems, order_id)

        out.clear()
        summary = simulate(settings, rate=None, actions=150, seed=12, echo=out.append,
                           settle=0)
        assert summary.failed == 0, "\n".join(out)
        assert summary.actions == 150
        for key in ("submit", "confirm", "deliver", "invoice"):
            assert summary.counts[key] > 0, (key, summary.counts)
        assert out[-len(ACTIONS) - 2].startswith("simulated 150 actions in ")

        confirmed = rows(systems.erp, select(ordr).where(ordr.c.U_CRM_ID.in_(submitted),
                                                          ordr.c.Confirmed == "Y"))
        assert confirmed
        assert any("confirmed order" in line for line in out)
        assert count(systems.erp, odln) == summary.counts["deliver"] + 1
        assert count(systems.erp, oinv) == summary.counts["invoice"]

        # Every delivered batch is an authorised lot of the item shipped, and the order lines'
        # open quantities went down by what was shipped.
        shipped = rows(systems.erp, select(ibt1, dln1.c.BaseEntry.label("order"),
                                           dln1.c.BaseLine).join(
            dln1, (dln1.c.DocEntry == ibt1.c.BaseEntry) & (dln1.c.LineNum == ibt1.c.BaseLinNum)))
        assert len(shipped) == count(systems.erp, dln1) > 1
        for row in shipped:
            assert_authorised_lot(systems.lims, row.BatchNum, row.ItemCode)
        for line in rows(systems.erp, select(rdr1)):
            delivered = sum((r.Quantity for r in shipped
                             if r.order == line.DocEntry and r.BaseLine == line.LineNum),
                            Decimal(0))
            assert line.OpenQty == line.Quantity - delivered >= 0
            assert line.LineStatus == ("C" if line.OpenQty == 0 else "O")
        assert count(systems.erp, rdr1, rdr1.c.DocEntry == doc, rdr1.c.OpenQty < 1000) == 1
    finally:
        systems.close()


def count_lines(crm: Engine) -> list[Any]:
    return rows(crm, select(crm_order_line))


def test_a_failed_action_is_reported_and_the_simulation_goes_on(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path / "var")  # type: ignore[call-arg]
    simulate(settings, rate=None, actions=1, seed=1, echo=lambda _: None,
             weights={"submit": 1})
    systems = Systems(settings)
    try:
        ErpUser(systems.erp).enter_order("C00042", [Line("ETAC-99", Decimal(500),
                                                         Decimal("1.05"))])
        with systems.erp.begin() as conn:
            conn.execute(text('DROP TABLE "IBT1"'))
        said: list[str] = []
        simulator = Simulator(systems.crm, systems.erp, systems.lims, echo=said.append,
                              weights={"deliver": 1}, settle=0)
        assert simulator.step() == "failed"
        assert simulator.step() == "failed"
        assert simulator.summary.failed == 2 and simulator.summary.actions == 2
        assert len(said) == 2
        assert "ERP   " in said[0] and "could not deliver an order: OperationalError" in said[0]
        assert count(systems.erp, odln) == 0  # the failed delivery left nothing behind
        simulator.weights = {"submit": 1.0}
        assert simulator.step() == "submit"
    finally:
        systems.close()


def test_nothing_to_do_is_no_action(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path / "var")  # type: ignore[call-arg]
    summary = simulate(settings, rate=None, actions=5, seed=3, echo=lambda _: None,
                       weights={"confirm": 1, "invoice": 1})
    assert summary.actions == 0 and summary.failed == 0 and not summary.counts


@pytest.mark.parametrize("kind", [pytest.param("sqlite"),
                                  pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_lab_releases_lots_the_lims_reader_certifies(kind: str, tmp_path: Path) -> None:
    with seeded_system(kind, tmp_path, "lims", now=utcnow()) as lims:
        highest = {t.name: rows(lims, select(func.max(c)))[0][0]
                   for t, c in ((lot, lot.c.LOT_NUMBER), (sample, sample.c.SAMPLE_NUMBER),
                                (test, test.c.TEST_NUMBER), (result, result.c.RESULT_NUMBER))}
        lab = LabPerson(lims, "QA.SMITH")
        released = lab.new_lot("BUOH-995")
        quality = LimsReader(lims).quality(released)
        assert quality is not None and quality.product == "BUOH-995"
        assert quality.grade == "STANDARD" and quality.reviewer == "QA.SMITH"
        assert quality.lims_in_spec is True and quality.results
        assert quality.lot_number == highest["LOT"] + 1
        assert quality.sample_number == highest["SAMPLE"] + 1
        assert quality.changed_on is not None
        assert abs((quality.changed_on - utcnow()).total_seconds()) < 60
        assert quality.manufacture_date is not None
        assert quality.manufacture_date <= dt.date.today()
        assert rows(lims, select(func.min(test.c.TEST_NUMBER)).where(
            quality.sample_number == test.c.SAMPLE_NUMBER))[0][0] == highest["TEST"] + 1
        assert rows(lims, select(func.min(result.c.RESULT_NUMBER)).where(
            quality.sample_number == result.c.SAMPLE_NUMBER))[0][0] == highest["RESULT"] + 1

        waiting = lab.new_lot("MEK-995", authorise=False)
        with pytest.raises(NotReleased):
            LimsReader(lims).quality(waiting)
        lab.authorise(waiting)
        assert LimsReader(lims).quality(waiting) is not None
        with pytest.raises(ValueError, match="awaiting review"):
            lab.authorise(waiting)

        # The seeded lot awaiting review can be authorised too.
        with pytest.raises(NotReleased):
            LimsReader(lims).quality("B2611-0012")
        lab.authorise("B2611-0012")
        seeded = LimsReader(lims).quality("B2611-0012")
        assert seeded is not None and seeded.reviewer == "QA.SMITH"
        with pytest.raises(ValueError, match="no spec"):
            lab.new_lot("NO-SUCH")


def _run_cli(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = hub_env(HUB_VAR_DIR=str(tmp_path / "var"))
    return subprocess.Popen([sys.executable, "-m", "hub", "demo", "simulate", *args],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8")


def test_the_command_runs_for_its_duration_and_prints_a_summary(tmp_path: Path) -> None:
    proc = _run_cli(tmp_path, "--duration", "3", "--rate", "5", "--seed", "1")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    lines = stdout.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("simulated "))
    done = int(lines[summary].split()[1])
    assert 5 <= done <= 16, stdout
    counts = {line[8:28].strip(): int(line[28:]) for line in lines[summary + 1:]}
    assert set(counts) == {a.label for a in ACTIONS} | {"failed"}
    assert counts["failed"] == 0 and counts["orders submitted"] > 0
    assert any(" CRM   " in line and " submitted SO-" in line for line in lines[:summary])
    for name in ("crm", "erp", "lims"):
        assert (tmp_path / "var" / f"{name}.db").is_file()


def test_the_command_stops_on_sigterm_with_its_summary(tmp_path: Path) -> None:
    proc = _run_cli(tmp_path, "--rate", "20", "--quiet")
    try:
        assert proc.stdout is not None
        # Quiet prints nothing until the summary; give it time to seed and start.
        deadline = time.monotonic() + 60
        while not (tmp_path / "var" / "lims.db").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, stdout + stderr
    assert stdout.startswith("simulated "), stdout
    assert "orders submitted" in stdout
