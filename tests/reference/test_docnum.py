"""ERP document numbering: max + 1, and the next number when another writer got there first."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from connectors.erp import schema as erp
from hub.demo import create_schemas, seed
from hub.errors import Contention, DatabaseUnavailable, translate_db_error
from tests.reference.support import Databases, engine_for

TODAY = dt.date(2026, 3, 2)


def _order(comments: str = "", card: str = "C00042") -> dict[str, Any]:
    return {"CardCode": card, "DocDate": TODAY, "DocCur": "EUR", "DocStatus": "O",
            "CANCELED": "N", "Confirmed": "Y", "Comments": comments,
            "UpdateDate": dt.datetime(2026, 3, 2, 10, 0, 0, 1)}


@pytest.fixture
def erp_url(databases: Databases) -> str:
    url = databases.url("erp")
    create_schemas({"erp": url})
    seed({"erp": url})
    return url


def _doc_nums(url: str, table=erp.ordr) -> dict[str, int]:
    with engine_for(url) as engine, engine.connect() as conn:
        rows = conn.execute(select(table.c.Comments, table.c.DocNum)).all()
    return {r.Comments: r.DocNum for r in rows}


def test_doc_nums_count_up_per_series(erp_url: str) -> None:
    with engine_for(erp_url) as engine:
        with engine.begin() as conn:
            assert erp.next_doc_num(conn, erp.ordr) == 1
            keys = [erp.insert_with_doc_num(conn, erp.ordr, _order(f"o{i}")) for i in range(3)]
            delivery = erp.insert_with_doc_num(conn, erp.odln, {
                "CardCode": "C00042", "DocDate": TODAY,
                "UpdateDate": dt.datetime(2026, 3, 2, 11, 0)})
            conn.execute(erp.dln1.insert().values(
                DocEntry=delivery[0], LineNum=0, BaseType=17, BaseEntry=keys[0][0], BaseLine=0,
                ItemCode="ETAC-99", Quantity=1))
        with engine.connect() as conn:
            stored = conn.execute(select(erp.ordr.c.DocEntry, erp.ordr.c.DocNum)
                                  .order_by(erp.ordr.c.DocNum)).all()
    assert [num for _, num in keys] == [1, 2, 3]
    entries = [entry for entry, _ in keys]
    assert entries == sorted(entries) and len(set(entries)) == 3
    assert [tuple(r) for r in stored] == keys  # DocEntry is what the database assigned
    assert delivery[1] == 1  # deliveries have their own series


def test_a_stale_read_is_walked_past_without_a_clash(
    erp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine_for(erp_url) as engine:
        with engine.begin() as conn:
            for name in ("first", "second"):
                erp.insert_with_doc_num(conn, erp.ordr, _order(name))
        monkeypatch.setattr(erp, "next_doc_num", lambda conn, table: 2)  # 2 is taken
        with engine.begin() as conn:
            _, num = erp.insert_with_doc_num(conn, erp.ordr, _order("third"))
    assert num == 3
    assert _doc_nums(erp_url) == {"first": 1, "second": 2, "third": 3}


def test_a_clash_takes_the_next_number_and_keeps_the_transaction(
    erp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = erp.claim_doc_num
    claims: list[int] = []

    def stale_once(conn, table, start):  # as if a writer that does not queue got there first
        claims.append(start)
        return 2 if len(claims) == 1 else real(conn, table, start)

    with engine_for(erp_url) as engine:
        with engine.begin() as conn:
            for name in ("first", "second"):
                erp.insert_with_doc_num(conn, erp.ordr, _order(name))
        with engine.begin() as conn:
            conn.execute(erp.oitm.insert().values(ItemCode="NEW-1", ItemName="same txn"))
            monkeypatch.setattr(erp, "claim_doc_num", stale_once)
            entry, num = erp.insert_with_doc_num(conn, erp.ordr, _order("third"))
        with engine.connect() as conn:
            kept = conn.execute(select(erp.oitm.c.ItemName)
                                .where(erp.oitm.c.ItemCode == "NEW-1")).scalar_one()
    assert num == 3 and entry > 0
    assert kept == "same txn"  # the savepoint undid the clash, not the transaction
    assert _doc_nums(erp_url) == {"first": 1, "second": 2, "third": 3}


def test_every_attempt_clashing_is_retryable(
    erp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine_for(erp_url) as engine:
        with engine.begin() as conn:
            for name in ("a", "b", "c"):
                erp.insert_with_doc_num(conn, erp.ordr, _order(name))
        monkeypatch.setattr(erp, "next_doc_num", lambda conn, table: 1)
        monkeypatch.setattr(erp, "claim_doc_num", lambda conn, table, start: start)
        with engine.begin() as conn:
            with pytest.raises(DatabaseUnavailable, match="clashed"):
                erp.insert_with_doc_num(conn, erp.ordr, _order("never"), attempts=3)
            still_usable = conn.execute(select(func.count()).select_from(erp.ordr)).scalar_one()
    assert still_usable == 3
    with pytest.raises(ValueError, match="attempts"):
        erp.insert_with_doc_num(None, erp.ordr, {}, attempts=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="series"):
        erp.insert_with_doc_num(None, erp.rdr1, {})  # type: ignore[arg-type]


def test_other_integrity_errors_are_not_retried(erp_url: str) -> None:
    with engine_for(erp_url) as engine, engine.begin() as conn, pytest.raises(IntegrityError):
        erp.insert_with_doc_num(conn, erp.ordr, _order("ghost", card="C99999"))
    assert _doc_nums(erp_url) == {}


def _erp_on(dbs: Databases) -> str:
    url = dbs.url("erp")
    create_schemas({"erp": url})
    seed({"erp": url})
    return url


def _in_thread(target) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:  # handed to the main thread
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_writer_that_does_not_queue_is_waited_for(server_databases: Databases) -> None:
    url = _erp_on(server_databases)
    with engine_for(url) as engine:
        with engine.begin() as conn:
            erp.insert_with_doc_num(conn, erp.ordr, _order("first"))

        def queued_writer() -> tuple[int, int]:
            with engine.begin() as conn:
                return erp.insert_with_doc_num(conn, erp.ordr, _order("queued"))

        with engine.connect() as plain:  # a plain max + 1 writer, still uncommitted
            plain.begin()
            plain.execute(erp.ordr.insert().values(DocNum=2, **_order("plain")))
            thread, outcome = _in_thread(queued_writer)
            time.sleep(0.5)  # the queued writer is now blocked on the uncommitted 2
            assert thread.is_alive()
            plain.commit()
        thread.join(timeout=30)
    assert not isinstance(outcome[0], BaseException), outcome
    assert outcome[0][1] == 3
    assert _doc_nums(url) == {"first": 1, "plain": 2, "queued": 3}


def test_a_deadlock_is_reported_as_a_deadlock(server_databases: Databases) -> None:
    """InnoDB rolls a deadlock victim back entirely, savepoint included; the error must say
    deadlock (retryable), not "SAVEPOINT does not exist" (which would look permanent)."""
    url = _erp_on(server_databases)
    ocrd = erp.ocrd
    mariadb = server_databases.kind == "mariadb"
    holding, blocking = threading.Event(), threading.Event()

    def lock(conn, card: str) -> None:
        conn.execute(select(ocrd).where(ocrd.c.CardCode == card).with_for_update()).all()

    with engine_for(url) as engine:

        def victim():
            with engine.begin() as conn:
                lock(conn, "C00043")
                holding.set()
                blocking.wait(timeout=30)
                if mariadb:
                    time.sleep(0.5)  # let the other writer wait first: we close the cycle
                erp.insert_with_doc_num(conn, erp.ordr, _order("victim"))  # needs C00042

        with engine.begin() as other:
            # Heavier than the victim, so InnoDB rolls the victim back. PostgreSQL aborts
            # whoever waited first, so there the victim waits first.
            other.execute(erp.oitm.update().values(InvntryUom="kg"))
            lock(other, "C00042")
            thread, outcome = _in_thread(victim)
            assert holding.wait(timeout=30)
            blocking.set()
            if not mariadb:
                time.sleep(0.5)
            lock(other, "C00043")
        thread.join(timeout=30)
    error = outcome[0]
    assert isinstance(error, DBAPIError), error
    assert "deadlock" in str(error).lower()
    assert isinstance(translate_db_error(error, "insert"), Contention)  # retried at once
    assert _doc_nums(url) == {}


def test_two_first_writers_of_an_empty_series_both_succeed(databases: Databases) -> None:
    url = _erp_on(databases)
    barrier = threading.Barrier(2)
    with engine_for(url) as engine:

        def writer(name: str):
            def run() -> tuple[int, int]:
                barrier.wait(timeout=30)
                with engine.begin() as conn:
                    return erp.insert_with_doc_num(conn, erp.ordr, _order(name))
            return run

        threads = [_in_thread(writer(name)) for name in ("x", "y")]
        for thread, _ in threads:
            thread.join(timeout=60)
    results = [outcome[0] for _, outcome in threads]
    assert not any(isinstance(r, BaseException) for r in results), results
    assert sorted(num for _, num in results) == [1, 2]
    assert sorted(_doc_nums(url).values()) == [1, 2]


def test_concurrent_writers_queue_instead_of_clashing(
    erp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers, per_writer = 4, 5
    barrier = threading.Barrier(writers)
    taken: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    reads: list[int] = []
    lock = threading.Lock()
    real = erp.next_doc_num

    def counted(conn, table):
        with lock:
            reads.append(1)
        return real(conn, table)

    def work(engine, n: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(per_writer):
                with engine.begin() as conn:
                    key = erp.insert_with_doc_num(conn, erp.ordr, _order(f"w{n}-{i}"))
                with lock:
                    taken.append(key)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    with engine_for(erp_url) as engine:
        with engine.begin() as conn:
            erp.insert_with_doc_num(conn, erp.ordr, _order("opening"))
        monkeypatch.setattr(erp, "next_doc_num", counted)
        threads = [threading.Thread(target=work, args=(engine, n)) for n in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors, errors
    nums = [num for _, num in taken]
    assert len(taken) == writers * per_writer
    assert sorted(nums) == list(range(2, 2 + writers * per_writer))  # no gaps, no repeats
    assert len({e for e, _ in taken}) == len(taken)
    # Two reads of max each (before queueing, and at its turn): nobody had to retry.
    assert len(reads) == 2 * len(taken)
