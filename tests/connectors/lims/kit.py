"""Shared pieces of the LIMS reader tests: dialects, the seed instant, and small LIMS edits
made the way the lab's LIMS would make them."""

# The LIMS's columns are upper-case, which ruff takes for constants (a "Yoda condition").
# ruff: noqa: SIM300

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, select, update

from connectors.lims.schema import lot, result, sample, test

DIALECTS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", id="mariadb-odbc", marks=pytest.mark.mariadb),
]

#: The seed's ``now``: every seeded timestamp is derived from it, microseconds included.
SEEDED_AT = dt.datetime(2026, 3, 1, 8, 0, 0, 123456)
#: Later than every seeded CHANGED_ON, with microseconds that a driver could lose.
LATER = SEEDED_AT + dt.timedelta(hours=1, microseconds=654321)

RELEASED = [f"B2611-{n:04d}" for n in range(1, 11)]
NOT_RELEASED = ["B2611-0011", "B2611-0012"]


def lot_number(conn: Connection, batch: str) -> int:
    return int(conn.execute(select(lot.c.LOT_NUMBER).where(lot.c.LOT_NAME == batch))
               .scalar_one())


def release_samples(conn: Connection, batch: str) -> list[int]:
    """The lot's release sample numbers, oldest first."""
    return list(conn.execute(
        select(sample.c.SAMPLE_NUMBER)
        .where(sample.c.LOT == lot_number(conn, batch), sample.c.SAMPLING_POINT == "RELEASE")
        .order_by(sample.c.SAMPLE_NUMBER)).scalars())


def set_result(conn: Connection, sample_number: int, component: str, **values: Any) -> int:
    """Update the (highest replicate) result of ``component`` on a sample; returns how many
    rows changed (one, or the test is wrong)."""
    replicate = conn.execute(
        select(result.c.REPLICATE_COUNT).where(result.c.SAMPLE_NUMBER == sample_number,
                                               result.c.NAME == component)
        .order_by(result.c.REPLICATE_COUNT.desc())).scalars().first()
    changed = conn.execute(
        update(result).where(result.c.SAMPLE_NUMBER == sample_number,
                             result.c.NAME == component,
                             result.c.REPLICATE_COUNT == replicate).values(**values))
    assert changed.rowcount == 1
    return int(changed.rowcount)


def copy_sample(conn: Connection, number: int, new_number: int, **values: Any) -> None:
    """A new sample like ``number`` (its tests and results too), with ``values`` changed.

    Tests and results get numbers above every seeded one, derived from ``new_number``.
    """
    row = dict(conn.execute(select(sample).where(sample.c.SAMPLE_NUMBER == number))
               .one()._mapping)
    conn.execute(sample.insert().values({**row, "SAMPLE_NUMBER": new_number, **values}))
    stamp = values.get("CHANGED_ON", row["CHANGED_ON"])
    tests = conn.execute(select(test).where(test.c.SAMPLE_NUMBER == number)).all()
    for n, old in enumerate(tests):
        test_number = new_number * 100 + n
        conn.execute(test.insert().values({**old._mapping, "TEST_NUMBER": test_number,
                                           "SAMPLE_NUMBER": new_number, "CHANGED_ON": stamp}))
        results = conn.execute(select(result).where(
            result.c.TEST_NUMBER == old.TEST_NUMBER)).all()
        for m, res in enumerate(results):
            conn.execute(result.insert().values({
                **res._mapping, "RESULT_NUMBER": test_number * 100 + m,
                "SAMPLE_NUMBER": new_number, "TEST_NUMBER": test_number,
                "CHANGED_ON": stamp}))


@contextmanager
def counting_selects(engine: Engine) -> Iterator[list[str]]:
    """The SELECT statements sent through ``engine`` while inside."""
    statements: list[str] = []

    def _count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", _count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", _count)
