"""The shared parts of appliers and pollers: a batch applied together that lost a lock race
runs once more as a whole, any other failure of the whole batch applies its messages one at a
time unless a system does not answer; a poller reads the rows of what the hub did not write
itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from hub.errors import Contention, DatabaseUnavailable, HubError
from hub.sync.parts import Applier, _load
from hub.watermark import Change


@dataclass
class Msg:
    correlation_key: str


class Recorder(Applier):
    name = "test-applier"
    consumes = ("test.changed",)

    def __init__(self, failures: Sequence[HubError]) -> None:
        super().__init__(runtime=None)  # type: ignore[arg-type]  # apply_grouped needs none
        self.failures = list(failures)
        self.together: list[list[str]] = []
        self.single: list[str] = []
        self.down = ""  # what does not answer, if anything

    def _ping(self) -> None:
        if self.down:
            raise DatabaseUnavailable(f"{self.down} unreachable")

    def run_together(self, messages: Sequence[Msg], finals: Sequence[bool]
                     ) -> list[BaseException | None]:
        self.together.append([m.correlation_key for m in messages])
        if self.failures:
            raise self.failures.pop(0)
        return [None] * len(messages)

    def apply(self, message: Any, *, final: bool) -> None:
        self.single.append(message.correlation_key)

    def apply_all(self, keys: Sequence[str]) -> list[BaseException | None]:
        messages = [Msg(k) for k in keys]
        return self.apply_grouped(messages, [False] * len(messages), Msg,  # type: ignore[arg-type]
                                  self.run_together)


def test_a_batch_that_lost_a_lock_race_runs_once_more_as_a_whole() -> None:
    applier = Recorder([Contention("deadlock")])
    assert applier.apply_all(["a", "b", "c"]) == [None, None, None]
    assert applier.together == [["a", "b", "c"]] * 2
    assert applier.single == []


@pytest.mark.parametrize("failures", [
    [Contention("deadlock"), Contention("deadlock again")],  # only once more
    [DatabaseUnavailable("connection refused")],  # not a race, and every system answers
])
def test_otherwise_a_failed_batch_is_applied_one_at_a_time(failures: list[HubError]) -> None:
    applier = Recorder(failures)
    assert applier.apply_all(["a", "b", "c"]) == [None, None, None]
    assert len(applier.together) == len(failures)
    assert applier.single == ["a", "b", "c"]


def test_a_batch_that_failed_as_its_system_went_away_fails_whole() -> None:
    """One at a time, each message would fail alike (or wait out its connect timeout): the
    run fails whole, for :meth:`Applier.handle` to hold while the system is away."""
    lost = DatabaseUnavailable("connection refused")
    applier = Recorder([lost])
    applier.down = "erp"
    assert applier.apply_all(["a", "b", "c"]) == [lost] * 3
    assert applier.together == [["a", "b", "c"]] and applier.single == []


def test_a_row_read_at_a_newer_version_than_listed_is_taken_at_that_version() -> None:
    """A CRM order edited between listing and reading comes back newer; the poller takes it
    (before the own-writes skip it was taken, and it must still be)."""
    at = dt.datetime(2026, 11, 24, 10, 0)
    listed = [Change("A", "1", at, None), Change("B", "4", at, None), Change("C", "2", at, None)]

    def load(_source: Any, changes: Sequence[Change[Any]]) -> list[Change[Any]]:
        return [Change(c.key, "3" if c.key == "A" else c.version, at, f"row {c.key}")
                for c in changes]

    def own(_hub: Any, changes: Sequence[Change[Any]]) -> set[tuple[str, str]]:
        return {("B", "4")}

    taken = _load(load, own, None, None, listed)  # type: ignore[arg-type]
    assert [(c.key, c.version, c.row) for c in taken] == [
        ("A", "3", "row A"), ("B", "4", None), ("C", "2", "row C")]
