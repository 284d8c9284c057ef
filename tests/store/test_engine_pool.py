"""Pooled connections on the real servers: checked before use only after sitting idle, and a
connection the server dropped costs a retry, never a dead pool.

SQLAlchemy's ``pool_pre_ping`` checked every connection at every checkout: a round trip for
each transaction, hundreds a second in a busy daemon.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

import hub.store.engine as engines
from hub.store.engine import make_engine
from tests.databases import MARIADB_URL, PG_URL

SERVERS = [pytest.param(PG_URL, id="postgresql"),
           pytest.param(MARIADB_URL, id="mariadb", marks=pytest.mark.mariadb)]


@pytest.fixture(params=SERVERS)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    built = make_engine(request.param, pool_size=1)
    try:
        yield built
    finally:
        built.dispose()


def _count_pings(engine: Engine) -> list[int]:
    pings: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        pings.append(1)
        return ping(dbapi_conn)

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    return pings


def _session_id(engine: Engine) -> int:
    query = "SELECT pg_backend_pid()" if engine.dialect.name == "postgresql" else (
        "SELECT CONNECTION_ID()")
    with engine.connect() as conn:
        return int(conn.execute(text(query)).scalar_one())


def _kill(engine: Engine, session: int) -> None:
    """End ``session`` from another connection, as a server restart would."""
    killer = make_engine(engine.url.render_as_string(hide_password=False), pool_size=1)
    try:
        with killer.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"SELECT pg_terminate_backend({session})"))
            else:
                conn.execute(text(f"KILL CONNECTION {session}"))
    finally:
        killer.dispose()


def test_a_connection_back_only_a_moment_is_lent_without_a_round_trip(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 60.0)
    pings = _count_pings(engine)
    first = _session_id(engine)
    for _ in range(5):
        assert _session_id(engine) == first  # the same pooled connection
    assert pings == []


def test_a_connection_idle_for_a_while_is_checked_and_a_dead_one_replaced(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.0)
    pings = _count_pings(engine)
    first = _session_id(engine)
    assert _session_id(engine) == first and len(pings) == 1  # checked, alive, kept
    _kill(engine, first)
    second = _session_id(engine)  # no error: the check found it gone and reconnected
    assert second != first
    assert len(pings) == 2


def test_a_connection_dropped_moments_after_its_last_use_costs_one_failure(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 60.0)
    first = _session_id(engine)
    _kill(engine, first)
    with pytest.raises(DBAPIError) as failed:
        _session_id(engine)
    assert failed.value.connection_invalidated
    assert _session_id(engine) != first  # the caller's retry gets a new connection
