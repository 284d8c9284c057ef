"""A batch applied together that lost a lock race runs once more as a whole; any other
failure of the whole batch applies its messages one at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from hub.errors import Contention, DatabaseUnavailable, HubError
from hub.sync.parts import Applier


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
    [DatabaseUnavailable("connection refused")],  # not a race: no second try
])
def test_otherwise_a_failed_batch_is_applied_one_at_a_time(failures: list[HubError]) -> None:
    applier = Recorder(failures)
    assert applier.apply_all(["a", "b", "c"]) == [None, None, None]
    assert len(applier.together) == len(failures)
    assert applier.single == ["a", "b", "c"]
