"""The LIMS lot watcher: which lots' release data changed after a watermark."""

# The LIMS's columns are upper-case, which ruff takes for constants (a "Yoda condition").
# ruff: noqa: SIM300

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, update

from connectors.lims import LimsReader, LotChange, NotReleased
from connectors.lims.schema import lot, result, sample, test
from tests.connectors.lims.kit import LATER, copy_sample, release_samples, set_result

#: Before every seeded change.
EPOCH = dt.datetime(2000, 1, 1)
#: The last seeded change: B2611-0011's last result entry.
LAST_SEEDED = dt.datetime(2026, 2, 28, 17, 50, 0, 123456)


def _order() -> list[str]:
    return [*(f"B2611-{n:04d}" for n in range(1, 11)), "B2611-0012", "B2611-0011"]


def test_every_lot_once_with_its_newest_change_in_order(lims: Engine) -> None:
    reader = LimsReader(lims)
    everything = reader.changed_since(EPOCH, 100)
    assert [c.batch_number for c in everything] == _order()
    assert [c.lot_number for c in everything[:3]] == [1001, 1002, 1003]
    # B2611-0006's newest change is its re-sample's review, not the original's.
    assert everything[5] == LotChange("B2611-0006", dt.datetime(2026, 2, 10, 15, 0, 0, 123456),
                                      1006)
    assert everything[-1].changed_on == LAST_SEEDED
    assert reader.changed_since(EPOCH, 3) == everything[:3]
    assert reader.changed_since(LAST_SEEDED, 100) == []
    assert reader.changed_since(LAST_SEEDED - dt.timedelta(microseconds=1), 100) == [
        everything[-1]]
    aware = (LAST_SEEDED - dt.timedelta(hours=8)).replace(tzinfo=dt.UTC).astimezone(
        dt.timezone(dt.timedelta(hours=8)))  # the same instant as UTC 09:50, in UTC+8
    assert reader.changed_since(aware, 100) == reader.changed_since(
        LAST_SEEDED - dt.timedelta(hours=8), 100) == everything[-2:]


def test_a_result_edited_after_release_brings_its_lot_back(lims: Engine) -> None:
    reader = LimsReader(lims)
    before = reader.quality("B2611-0003")
    assert before is not None and before.changed_on is not None
    assert reader.changed_since(LAST_SEEDED, 10) == []
    with lims.begin() as conn:
        set_result(conn, release_samples(conn, "B2611-0003")[0], "WATER",
                   ENTRY="0.045", FORMATTED_ENTRY="0.045", CHANGED_ON=LATER)
    assert reader.changed_since(LAST_SEEDED, 10) == [LotChange("B2611-0003", LATER, 1003)]
    after = reader.quality("B2611-0003")
    assert after is not None
    assert after.changed_on == LATER > before.changed_on
    assert next(r.value for r in after.results if r.component == "WATER") == "0.045"
    assert reader.changed_since(LATER, 10) == []


def test_lot_sample_test_and_result_stamps_all_count(lims: Engine) -> None:
    reader = LimsReader(lims)
    with lims.connect() as conn:
        number = release_samples(conn, "B2611-0004")[0]
    edits = [
        update(lot).where(lot.c.LOT_NAME == "B2611-0004"),
        update(sample).where(sample.c.SAMPLE_NUMBER == number),
        update(test).where(test.c.SAMPLE_NUMBER == number, test.c.ANALYSIS == "WATER_KF"),
        update(result).where(result.c.SAMPLE_NUMBER == number, result.c.NAME == "PURITY"),
    ]
    for n, edit in enumerate(edits):
        stamp = LATER + dt.timedelta(seconds=n)
        with lims.begin() as conn:
            assert conn.execute(edit.values(CHANGED_ON=stamp)).rowcount == 1
        assert reader.changed_since(LAST_SEEDED, 10) == [LotChange("B2611-0004", stamp, 1004)]


def test_other_samples_of_a_lot_do_not_count(lims: Engine) -> None:
    reader = LimsReader(lims)
    with lims.begin() as conn:
        original = release_samples(conn, "B2611-0005")[0]
        copy_sample(conn, original, 9001, SAMPLING_POINT="IPC", TEXT_ID="B2611-0005-IPC",
                    DATE_REVIEWED=LATER, CHANGED_ON=LATER)
    assert reader.changed_since(LAST_SEEDED, 10) == []
    quality = reader.quality("B2611-0005")
    assert quality is not None and quality.sample_number == original


def test_lots_changed_in_one_instant_are_paged_by_lot_number(lims: Engine) -> None:
    reader = LimsReader(lims)
    with lims.begin() as conn:
        for batch in ("B2611-0009", "B2611-0002", "B2611-0007"):
            set_result(conn, release_samples(conn, batch)[-1], "PURITY", CHANGED_ON=LATER)
    first = reader.changed_since(LAST_SEEDED, 2)
    assert [(c.batch_number, c.changed_on) for c in first] == [
        ("B2611-0002", LATER), ("B2611-0007", LATER)]
    rest = reader.changed_since(first[-1].changed_on, 2, after_lot=first[-1].lot_number)
    assert [c.batch_number for c in rest] == ["B2611-0009"]
    assert reader.changed_since(LATER, 2, after_lot=rest[-1].lot_number) == []
    assert reader.changed_since(LATER, 2) == []


def test_a_lot_that_becomes_authorised_is_listed_and_then_released(lims: Engine) -> None:
    reader = LimsReader(lims)
    batch = "B2611-0012"
    try:
        reader.quality(batch)
        raise AssertionError("B2611-0012 awaits review")
    except NotReleased:
        pass
    with lims.begin() as conn:
        (number,) = release_samples(conn, batch)
        conn.execute(update(sample).where(sample.c.SAMPLE_NUMBER == number).values(
            STATUS="A", DATE_REVIEWED=LATER, REVIEWER="HZHOU", CHANGED_ON=LATER))
        conn.execute(update(test).where(test.c.SAMPLE_NUMBER == number).values(
            STATUS="A", CHANGED_ON=LATER))
        conn.execute(update(result).where(result.c.SAMPLE_NUMBER == number).values(
            STATUS="A", CHANGED_ON=LATER))
    assert reader.changed_since(LAST_SEEDED, 10) == [LotChange(batch, LATER, 1012)]
    quality = reader.quality(batch)
    assert quality is not None
    assert (quality.sample_number, quality.reviewer, quality.reviewed_at) == (
        number, "HZHOU", LATER)
    assert [r.component for r in quality.results] == [
        "APPEARANCE", "PURITY", "ETHANOL", "WATER", "COLOUR", "DENSITY", "ACIDITY", "RESIDUE"]
