"""Replaying and discarding dead letters: back to the queue of the consumer that failed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hub.bus.base import Bus, Outgoing
from hub.errors import HubError
from hub.headers import H_ATTEMPT, H_BODY_ENCODING, H_CODE, H_QUEUE, H_REASON
from hub.journal import Entry, record
from hub.store.db import Store
from hub.store.deadletters import DeadLetters

__all__ = ["Outcome", "discard", "replay"]


@dataclass(frozen=True)
class Outcome:
    id: int
    ok: bool
    detail: str


def replay(store: Store, bus: Bus, ids: Sequence[int], *, by: str) -> list[Outcome]:
    """Send each dead letter back to its queue as a first attempt, and mark it replayed.

    The message keeps its id, so a consumer that did apply it before will not apply it twice.
    """
    outcomes: list[Outcome] = []
    for letter_id in ids:
        with store.begin() as conn:
            letter = DeadLetters.get(conn, letter_id)
        if letter is None:
            outcomes.append(Outcome(letter_id, False, "no such dead letter"))
            continue
        if letter.status != "dead":
            outcomes.append(Outcome(letter_id, False, f"already {letter.status}"))
            continue
        dropped = {H_ATTEMPT, H_REASON, H_CODE, H_QUEUE, H_BODY_ENCODING, "x-death",
                   "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                   "x-delivery-count"}
        headers = {k: v for k, v in letter.headers.items() if k not in dropped}
        headers[H_ATTEMPT] = 1
        try:
            bus.send(letter.queue, Outgoing(letter.message_id, letter.routing_key, letter.body,
                                            headers))
        except HubError as exc:
            outcomes.append(Outcome(letter_id, False, f"not replayed: {exc}"))
            continue
        with store.begin() as conn:
            DeadLetters.resolve(conn, letter_id, status="replayed", by=by)
            record(conn, [Entry(event="replayed", message_id=letter.message_id,
                                type=letter.type, correlation_key=letter.correlation_key,
                                target=letter.queue, detail={"dead_letter": letter_id, "by": by})])
        outcomes.append(Outcome(letter_id, True, f"sent back to {letter.queue}"))
    return outcomes


def discard(store: Store, ids: Sequence[int], *, by: str, note: str) -> list[Outcome]:
    """Mark dead letters discarded, keeping who did it and why."""
    outcomes: list[Outcome] = []
    with store.begin() as conn:
        for letter_id in ids:
            letter = DeadLetters.get(conn, letter_id)
            if letter is None or not DeadLetters.resolve(
                conn, letter_id, status="discarded", by=by, note=note
            ):
                outcomes.append(Outcome(letter_id, False, "no such dead letter, or not dead"))
                continue
            record(conn, [Entry(event="discarded", message_id=letter.message_id,
                                type=letter.type, correlation_key=letter.correlation_key,
                                target=letter.queue, error=note,
                                detail={"dead_letter": letter_id, "by": by})])
            outcomes.append(Outcome(letter_id, True, "discarded"))
    return outcomes
