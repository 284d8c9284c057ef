"""Replaying, editing and discarding dead letters: back to the queue of the consumer that
failed, recorded in the journal (who, when, and for an edit what changed).

An edited message is validated against the canonical model before anything happens: it must
stay the message its route carries (``crm.order.changed.p0`` carries a ``crm``
``order.changed``), keep its correlation key (which chose its partition) and keeps the dead
letter's message id (so a consumer never applies one message twice). The dead letter keeps
the original body; the journal's ``edited`` entry keeps both bodies and the changed fields.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from hub.bus.base import Bus, Outgoing
from hub.errors import HubError, InvalidMessage
from hub.headers import H_ATTEMPT, H_BODY_ENCODING, H_CODE, H_KEY, H_QUEUE, H_REASON, H_TYPE
from hub.journal import Entry, record
from hub.model.messages import decode, encode
from hub.store.db import Store
from hub.store.deadletters import DeadLetter, DeadLetters, body_to_text
from hub.store.tables import journal
from hub.store.types import utcnow

__all__ = ["Outcome", "assign", "discard", "edit_and_replay", "edits", "replay", "validate_edit"]

_DROPPED = frozenset({H_ATTEMPT, H_REASON, H_CODE, H_QUEUE, H_BODY_ENCODING, "x-death",
                      "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                      "x-delivery-count"})
#: ``<source>.<type>.p<partition>``, the routes the hub publishes on.
_ROUTE = re.compile(r"([a-z]+)\.([a-z_]+\.[a-z_]+)\.p[0-9]+")
#: At most this many changed fields are kept in the journal for one edit.
_MAX_CHANGES = 200


@dataclass(frozen=True)
class Outcome:
    """What became of one dead letter. ``code`` says why not, for callers that answer
    differently: ``missing``, ``not_dead``, ``not_a_message``, ``invalid``, ``unchanged``,
    ``bus``."""

    id: int
    ok: bool
    detail: str
    code: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)


def _not_a_message(letter: DeadLetter) -> Outcome | None:
    # Parts that are not bus consumers park what they refuse under "poller:crm",
    # "certificates:blocked" ...: no consumer reads such a queue.
    if ":" in letter.queue:
        return Outcome(letter.id, False, f"{letter.queue} is not a bus queue: fix the cause in "
                       "its system, which then sends the change again", "not_a_message")
    return None


def _check(letter: DeadLetter | None, letter_id: int) -> Outcome | None:
    if letter is None:
        return Outcome(letter_id, False, "no such dead letter", "missing")
    if letter.status != "dead":
        return Outcome(letter_id, False, f"already {letter.status}", "not_dead")
    return _not_a_message(letter)


def _source(letter: DeadLetter) -> str | None:
    """The system a letter's message came from, as its route names it (``crm.order...``)."""
    found = _ROUTE.fullmatch(letter.routing_key or "")
    return found.group(1) if found else None


def _send(bus: Bus, letter: DeadLetter, body: bytes, extra: Mapping[str, Any]) -> None:
    headers = {k: v for k, v in letter.headers.items() if k not in _DROPPED}
    headers.update(extra)
    headers[H_ATTEMPT] = 1
    bus.send(letter.queue, Outgoing(letter.message_id, letter.routing_key, body, headers))


def replay(store: Store, bus: Bus, ids: Sequence[int], *, by: str) -> list[Outcome]:
    """Send each dead letter back to its queue as a first attempt, and mark it replayed.

    The message keeps its id, so a consumer that did apply it before will not apply it twice.
    """
    outcomes: list[Outcome] = []
    for letter_id in ids:
        with store.begin() as conn:
            letter = DeadLetters.get(conn, letter_id)
        refused = _check(letter, letter_id)
        if refused is not None or letter is None:
            outcomes.append(refused or Outcome(letter_id, False, "no such dead letter"))
            continue
        sent_at = utcnow()  # the consumer may apply it before the journal below is written
        try:
            _send(bus, letter, letter.body, {})
        except HubError as exc:
            outcomes.append(Outcome(letter_id, False, f"not replayed: {exc}", "bus"))
            continue
        with store.begin() as conn:
            DeadLetters.resolve(conn, letter_id, status="replayed", by=by)
            record(conn, [Entry(event="replayed", message_id=letter.message_id,
                                type=letter.type, correlation_key=letter.correlation_key,
                                source=_source(letter), target=letter.queue, at=sent_at,
                                detail={"dead_letter": letter_id, "by": by})])
        outcomes.append(Outcome(letter_id, True, f"sent back to {letter.queue}"))
    return outcomes


def discard(store: Store, ids: Sequence[int], *, by: str, note: str) -> list[Outcome]:
    """Mark dead letters discarded, keeping who did it and why."""
    outcomes: list[Outcome] = []
    with store.begin() as conn:
        for letter_id in ids:
            letter = DeadLetters.get(conn, letter_id)
            if letter is None:
                outcomes.append(Outcome(letter_id, False, "no such dead letter", "missing"))
                continue
            if not DeadLetters.resolve(conn, letter_id, status="discarded", by=by, note=note):
                outcomes.append(Outcome(letter_id, False, f"already {letter.status}",
                                        "not_dead"))
                continue
            record(conn, [Entry(event="discarded", message_id=letter.message_id,
                                type=letter.type, correlation_key=letter.correlation_key,
                                target=letter.queue, error=note,
                                detail={"dead_letter": letter_id, "by": by})])
            outcomes.append(Outcome(letter_id, True, "discarded"))
    return outcomes


# -- editing ---------------------------------------------------------------------------------


def _parse(body: bytes) -> Any:
    """``body`` as JSON, or None when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def assign(body: bytes, assignments: Sequence[str]) -> bytes:
    """``body`` (a JSON object) with each ``path=value`` set: ``path`` is dotted keys and list
    indexes (``order.lines.0.quantity``), ``value`` JSON (``5``, ``null``, ``"5"``) or else
    plain text. Missing keys are added. Raises :class:`InvalidMessage` when the body is not
    a JSON object or a path does not fit it."""
    doc = _parse(body)
    if not isinstance(doc, dict):
        raise InvalidMessage("the message is not a JSON object: replace its whole body instead")
    for assignment in assignments:
        path, sep, raw = assignment.partition("=")
        if not sep or not path.strip():
            raise InvalidMessage(f"{assignment!r}: expected path=value")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        _set(doc, path.strip().split("."), value, assignment)
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def _set(doc: Any, path: list[str], value: Any, shown: str) -> None:
    here = doc
    for depth, step in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(here, list):
            if not step.isdigit() or int(step) >= len(here):
                raise InvalidMessage(f"{shown!r}: no item {step} in {'.'.join(path[:depth])}")
            if last:
                here[int(step)] = value
                return
            here = here[int(step)]
        elif isinstance(here, dict):
            if last:
                here[step] = value
                return
            here = here.setdefault(step, {})
        else:
            raise InvalidMessage(f"{shown!r}: {'.'.join(path[:depth])} is not an object or list")


def _changes(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """The leaves that differ between two JSON values, by dotted path."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [c for k in dict.fromkeys([*before, *after])
                for c in _changes(before.get(k), after.get(k), f"{path}.{k}" if path else k)]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [c for i, (b, a) in enumerate(zip(before, after, strict=True))
                for c in _changes(b, a, f"{path}.{i}" if path else str(i))]
    return [] if before == after else [{"path": path or "(body)", "before": before,
                                        "after": after}]


def validate_edit(letter: DeadLetter, body: bytes) -> bytes:
    """The edited ``body`` as the canonical message it must be, ready to send. Raises
    :class:`InvalidMessage` with the reason when it is not one, is a different kind of
    message than its route carries, changes the correlation key, or changes nothing."""
    doc = _parse(body)
    if not isinstance(doc, dict):
        raise InvalidMessage("the edited message is not a JSON object")
    try:
        doc["message_id"] = str(uuid.UUID(letter.message_id))
    except ValueError:
        doc.pop("message_id", None)
    message = decode(json.dumps(doc, ensure_ascii=False))
    route = _ROUTE.fullmatch(letter.routing_key)
    if route is not None:
        source, type_ = route.group(1), route.group(2)
        if (message.source, message.type) != (source, type_):
            raise InvalidMessage(
                f"its route {letter.routing_key} carries a {source} {type_}, not a "
                f"{message.source} {message.type}")
    original = _parse(letter.body)
    was = original.get("correlation_key") if isinstance(original, dict) else None
    if isinstance(was, str) and was and was != message.correlation_key:
        raise InvalidMessage(f"the correlation key cannot be edited ({was!r}): it chose the "
                             "message's partition; send a new change from the system instead")
    out = encode(message)
    try:
        unchanged = encode(decode(letter.body)) == out
    except HubError:
        unchanged = False  # the original is no message at all: any valid edit is a change
    if unchanged:
        raise InvalidMessage("the edit changes nothing: replay the message as it is instead")
    return out


def edit_and_replay(store: Store, bus: Bus, letter_id: int, body: bytes, *,
                    by: str) -> Outcome:
    """Replace dead letter ``letter_id``'s message with ``body`` (validated, see
    :func:`validate_edit`) and send it back to its queue; journal ``edited`` (both bodies and
    the changed fields) and ``replayed``. Nothing changes unless the outcome is ok."""
    with store.begin() as conn:
        letter = DeadLetters.get(conn, letter_id)
    refused = _check(letter, letter_id)
    if refused is not None or letter is None:
        return refused or Outcome(letter_id, False, "no such dead letter", "missing")
    try:
        edited = validate_edit(letter, body)
    except InvalidMessage as exc:
        code = "unchanged" if "changes nothing" in str(exc) else "invalid"
        return Outcome(letter_id, False, str(exc), code)
    message = decode(edited)
    before_text = body_to_text(letter.body)[0]
    before = _parse(letter.body)
    changes = _changes(before if before is not None else before_text, _parse(edited))
    sent_at = utcnow()
    try:
        _send(bus, letter, edited, {H_TYPE: message.type, H_KEY: message.correlation_key})
    except HubError as exc:
        return Outcome(letter_id, False, f"not replayed: {exc}", "bus")
    with store.begin() as conn:
        DeadLetters.resolve(conn, letter_id, status="replayed", by=by,
                            note=f"edited: {', '.join(c['path'] for c in changes)[:500]}")
        record(conn, [
            Entry(event=event, message_id=letter.message_id, type=message.type,
                  correlation_key=message.correlation_key, source=_source(letter),
                  target=letter.queue, detail=detail, at=sent_at)
            for event, detail in (
                ("edited", {"dead_letter": letter_id, "by": by,
                            "changes": changes[:_MAX_CHANGES], "before": before_text,
                            "after": edited.decode("utf-8")}),
                ("replayed", {"dead_letter": letter_id, "by": by, "edited": True}))
        ])
    return Outcome(letter_id, True, f"edited and sent back to {letter.queue}",
                   changes=changes[:_MAX_CHANGES])


def edits(conn: Connection, letter: DeadLetter) -> list[dict[str, Any]]:
    """The journal's edits of ``letter``, oldest first: when, by whom, what changed, and
    the body that was sent."""
    found: list[dict[str, Any]] = []
    for row in conn.execute(select(journal.c.at, journal.c.detail).where(
            journal.c.message_id == letter.message_id, journal.c.event == "edited")
            .order_by(journal.c.id)):
        detail = json.loads(row.detail or "{}")
        if detail.get("dead_letter") == letter.id:
            found.append({"at": row.at, "by": detail.get("by"),
                          "changes": detail.get("changes", []), "body": detail.get("after")})
    return found
