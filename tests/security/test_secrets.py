"""Secrets stay secret: API tokens are never logged or stored in clear, and database and
broker passwords are never printed (settings, ``status``, errors, logs, ``/readyz``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import MetaData, create_engine, select

from hub.http.app import create_app
from hub.runtime import Runtime
from hub.settings import Settings, mask_url
from tests.certificates.world import served
from tests.helpers import daemon, free_port, hub_env, wait_for

#: Every password below contains this, so one search finds any of them.
MARK = "Pw-S3cret"
PG = "postgresql+psycopg://postgres:{pw}@127.0.0.1:{port}/hub_nowhere"


def _hub(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_tokens_are_never_logged_or_stored_in_clear(tmp_path: Path) -> None:
    """A zero-configuration daemon at DEBUG: tokens are created, used well and badly, rate
    limited; afterwards neither its log nor any table of its store holds a token."""
    port = free_port()
    env = hub_env(HUB_HTTP_PORT=str(port), HUB_LOG_LEVEL="DEBUG", HUB_RATE_LIMIT="15")
    base = f"http://127.0.0.1:{port}"
    with daemon(tmp_path, env) as proc:
        wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, 90, "healthz")
        made = [_hub(tmp_path, env, "token", "create", *who)
                for who in (("--customer", "C00042"), ("--staff", "li.wang"))]
        assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
        customer, staff = (m.stdout.strip().splitlines()[-1] for m in made)
        assert len(customer) == len(staff) == 43
        for m in made:  # the token goes to stdout only; the log lines on stderr never show it
            assert customer not in m.stderr and staff not in m.stderr
        with httpx.Client(base_url=base, timeout=30) as http:
            for token in (customer, staff):
                bearer = {"Authorization": f"Bearer {token}"}
                for url in ("/api/v1/certificates/B2611-0001",
                            "/api/v1/certificates/B2611-0001/pdf",
                            "/api/v1/certificates/' OR 1=1 --", "/api/v1/dead-letters",
                            "/api/v1/trace/B2611-0001", f"/api/v1/trace/{token}",
                            f"/api/v1/certificates/{token}", f"/verify/{token}"):
                    http.get(url, headers=bearer)
                for broken in (f"Bearer {token}x", f"Bearer {token[:-1]}", f"Basic {token}",
                               token, f"Bearer {token} {token}"):
                    assert http.get("/api/v1/dead-letters",
                                    headers={"Authorization": broken}).status_code == 401
                http.get(f"/api/v1/dead-letters?token={token}", headers=bearer)
                codes = {http.get("/api/v1/certificates/B2611-9999", headers=bearer).status_code
                         for _ in range(20)}
                assert 429 in codes
        listed = _hub(tmp_path, env, "token", "list")
        assert listed.returncode == 0 and customer not in listed.stdout + listed.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert '"level": "debug"' in log  # the log really was at DEBUG
    for token in (customer, staff):
        assert token not in log
    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'hub.db'}")
    try:
        tables = MetaData()
        tables.reflect(engine)
        assert "api_token" in tables.tables
        with engine.connect() as conn:
            stored = "\n".join(str(row) for table in tables.sorted_tables
                               for row in conn.execute(select(table)))
    finally:
        engine.dispose()
    for token in (customer, staff):
        assert token not in stored
    assert stored.count("li.wang") >= 1  # the store was read, tokens and all


URLS = {
    "database": PG.format(pw=MARK + "db", port=1),
    "broker": f"amqp://guest:{MARK}mq@127.0.0.1:1/%2F",
    "crm": f"postgresql+psycopg://crm@127.0.0.1:1/crm?password={MARK}q&sslmode=prefer",
    "erp": "mssql+pyodbc:///?odbc_connect=" + "DRIVER%3D%7BMariaDB+Unicode%7D%3BSERVER%3D"
           f"127.0.0.1%3BPORT%3D1%3BUID%3Droot%3BPWD%3D{MARK}odbc",
    "lims": f"mysql+pyodbc://root:{MARK}%40x@127.0.0.1:1/lims?driver=MariaDB+Unicode",
}


def _configured(**extra: str) -> dict[str, str]:
    return hub_env(**{**{f"HUB_{k.upper()}_URL": v for k, v in URLS.items()}, **extra})


def test_settings_never_show_a_password() -> None:
    settings = Settings(_env_file=None, **{f"{k}_url": v for k, v in URLS.items()})  # type: ignore[arg-type]
    shown = repr(settings) + str(settings) + json.dumps(settings.describe())
    shown += settings.model_dump_json()
    assert MARK not in shown, shown
    for url in URLS.values():
        assert MARK not in mask_url(url), mask_url(url)
    assert "%3D***" in mask_url(URLS["erp"]) and "password=***" in mask_url(URLS["crm"])


@pytest.mark.parametrize("args", [("status",), ("status", "--json"), ("trace", "SO-1"),
                                  ("dead-letters", "list"), ("db", "upgrade"),
                                  ("demo", "init")])
def test_the_command_line_never_prints_a_password(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Every system unreachable, passwords in every form: the errors name the systems,
    not the passwords."""
    done = _hub(tmp_path, _configured(HUB_CONNECT_TIMEOUT="2"), *args)
    output = done.stdout + done.stderr
    assert MARK not in output, output[-2000:]
    assert "Traceback" not in output, output[-3000:]


def test_the_daemon_never_logs_a_password(tmp_path: Path) -> None:
    """A daemon whose broker and systems are all unreachable (the store works) keeps
    retrying, and says why, without a password."""
    env = _configured(HUB_DATABASE_URL=f"sqlite:///{tmp_path}/hub.db",
                      HUB_HTTP_PORT=str(free_port()), HUB_LOG_LEVEL="DEBUG",
                      HUB_CONNECT_TIMEOUT="1")
    log = tmp_path / "daemon.log"
    with daemon(tmp_path, env) as proc:
        wait_for(lambda: log.read_text().count("cannot connect") >= 2, 60, "retries in the log")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    text = log.read_text()
    assert "guest:***@127.0.0.1:1" in text, text[-2000:]
    assert MARK not in text, [line for line in text.splitlines() if MARK in line][:3]


def test_readyz_never_shows_a_password(tmp_path: Path) -> None:
    """In-process, the store unreachable too."""
    settings = Settings(_env_file=None, connect_timeout=1,  # type: ignore[arg-type]
                        **{f"{k}_url": v for k, v in URLS.items()})
    runtime = Runtime.open(settings)
    try:
        with served(create_app(runtime)) as client:
            ready = client.get("/readyz")
    finally:
        runtime.close()
    assert ready.status_code == 503
    assert MARK not in ready.text, ready.text
    assert all(v != "ok" for v in ready.json()["checks"].values()), ready.text
