"""``demo init`` and the daemon's zero-config start (``ensure_embedded``)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, inspect, select, text, update

from connectors.crm import schema as crm
from connectors.erp import schema as erp
from connectors.lims import schema as lims
from hub.demo import SYSTEMS, ensure_embedded, init
from hub.settings import Settings
from hub.store.engine import make_engine
from tests.reference.support import MARIADB, Databases, engine_for, server_base_url


def _settings(var_dir: Path, **urls: str | None) -> Settings:
    given = {f"{s}_url": urls.get(s) for s in SYSTEMS}
    return Settings(_env_file=None, var_dir=var_dir, **given)


def _count(url: str, table) -> int:
    with engine_for(url) as engine, engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_init_creates_and_seeds_at_the_configured_urls(databases: Databases, tmp_path) -> None:
    urls = databases.systems()
    store = databases.url("hub")  # on a server: a database that does not exist yet
    settings = _settings(tmp_path / "var", **urls)
    settings = settings.model_copy(update={"database_url": SecretStr(store)})
    init(settings, seed=False)
    with engine_for(store) as engine, engine.connect() as conn:  # the store's database is there
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    assert _count(urls["crm"], crm.crm_account) == 0
    assert _count(urls["lims"], lims.lot) == 0
    init(settings, seed=True)
    init(settings, seed=True)  # twice changes nothing
    assert _count(urls["crm"], crm.crm_account) == _count(urls["erp"], erp.ocrd) == 9
    assert _count(urls["lims"], lims.lot) == 12
    assert not (tmp_path / "var").exists()  # nothing embedded when all are configured


def test_ensure_embedded_creates_seeded_files_once(tmp_path) -> None:
    var = tmp_path / "var"
    settings = _settings(var)
    assert ensure_embedded(settings) is True
    files = {s: var / f"{s}.db" for s in SYSTEMS}
    assert all(path.is_file() for path in files.values())
    assert not list(var.glob("*.partial*"))
    assert _count(settings.system_url("erp"), erp.oitm) == 10
    assert _count(settings.system_url("lims"), lims.result) > 50

    with engine_for(settings.system_url("crm")) as engine, engine.begin() as conn:
        conn.execute(update(crm.crm_account).values(modified_by="someone"))
    assert ensure_embedded(settings) is False
    with engine_for(settings.system_url("crm")) as engine, engine.connect() as conn:
        assert set(conn.execute(select(crm.crm_account.c.modified_by)).scalars()) == {"someone"}


def test_ensure_embedded_never_touches_a_configured_system(tmp_path) -> None:
    var = tmp_path / "var"
    elsewhere = tmp_path / "elsewhere" / "crm.db"
    settings = _settings(var, crm=f"sqlite:///{elsewhere}")
    assert ensure_embedded(settings) is True
    assert not elsewhere.exists() and not elsewhere.parent.exists()
    assert not (var / "crm.db").exists()
    assert (var / "erp.db").is_file() and (var / "lims.db").is_file()


def test_ensure_embedded_with_everything_configured_creates_nothing(tmp_path) -> None:
    urls = {s: f"sqlite:///{tmp_path / 'cfg' / s}.db" for s in SYSTEMS}
    settings = _settings(tmp_path / "var", **urls)
    assert ensure_embedded(settings) is False
    assert not (tmp_path / "var").exists() and not (tmp_path / "cfg").exists()


def test_processes_started_at_once_build_each_file_once(tmp_path) -> None:
    """Seen in CI: two worker processes of the bulk renderer, started together on a fresh
    machine, built the same ``.partial`` file and one failed with "no such table"."""
    var = tmp_path / "var"
    code = ("import sys; from hub.demo import ensure_embedded; from hub.settings import "
            "Settings; print(ensure_embedded(Settings(_env_file=None, var_dir=sys.argv[1])))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(var)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err for _, err in results]
    assert sorted(out.strip() for out, _ in results).count("True") >= 1
    assert not list(var.glob("*.partial*"))
    for system, table in (("crm", crm.crm_account), ("erp", erp.ocrd)):
        assert _count(f"sqlite:///{var / system}.db", table) == 9


def test_ensure_embedded_replaces_a_half_built_file(tmp_path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / "lims.db.partial").write_bytes(b"left over by a crash")
    (var / "lims.db.partial-wal").write_bytes(b"")
    (var / "erp.db-wal").write_bytes(b"orphaned journal of a deleted file")
    settings = _settings(var)
    assert ensure_embedded(settings) is True
    assert not list(var.glob("*.partial*"))
    assert not (var / "erp.db-wal").exists()
    with engine_for(settings.system_url("lims")) as engine:
        assert "LOT" in inspect(engine).get_table_names()
    assert _count(settings.system_url("erp"), erp.ocrd) == 9


@pytest.mark.parametrize("kind", [MARIADB])
def test_every_engine_keeps_microseconds_through_mariadb_odbc(kind: str) -> None:
    stamp = dt.datetime(2026, 3, 2, 9, 15, 30, 123457)
    engine = make_engine(server_base_url(kind))
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TEMPORARY TABLE hub_probe (ts DATETIME(6))"))
            conn.execute(text("INSERT INTO hub_probe VALUES (:ts)"), {"ts": stamp})
            back = conn.execute(text("SELECT ts FROM hub_probe")).scalar_one()
            conn.rollback()
    finally:
        engine.dispose()
    assert back == stamp
