"""The two kinds of part a connector runs: a poller of its system and an applier into it.

A :class:`Poller` reads each of its streams by watermark and writes the resulting messages to
the outbox in the same hub transaction that advances the watermark. An :class:`Applier`
consumes one queue per partition (so changes to one record apply in order while different
records apply in parallel), skips messages its inbox has seen, and applies the rest.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from hub.bus.base import Failures, Incoming, Subscription
from hub.errors import (
    Contention,
    DatabaseUnavailable,
    HubError,
    InvalidMessage,
    translate_db_error,
)
from hub.model.messages import Message, PartyChanged
from hub.model.records import Party
from hub.outbox import Outbox
from hub.parts import Part
from hub.runtime import Runtime, SystemName
from hub.store.deadletters import DeadLetters, NewDeadLetter
from hub.store.engine import READ_ONLY
from hub.store.inbox import Inbox
from hub.store.types import utcnow
from hub.sync.orders import party_fields
from hub.sync.outage import Outage, is_outage
from hub.sync.state import SyncState
from hub.sync.xref import Xref
from hub.watermark import Change, Watermark

__all__ = ["Applier", "Poller", "Stream", "reject_source_row"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


@dataclass
class Stream:
    """One table (or document family) of a source, read by its own watermark."""

    watermark: Watermark
    #: fetch(source_conn, lower, after, limit) -> changes, as hub.watermark.Fetch
    fetch: Callable[[Connection, Any, Any, int], Sequence[Change[Any]]]
    #: messages(hub_conn, source_conn, changes) -> what to publish (echoes dropped)
    messages: Callable[[Connection, Connection, Sequence[Change[Any]]], list[Message]]
    #: load(source_conn, changes) -> the changes with rows, when ``fetch`` lists keys only
    load: Callable[[Connection, Sequence[Change[Any]]], Sequence[Change[Any]]] | None = None
    #: own(hub_conn, changes) -> the (key, version) of those the hub knows whole at that
    #: version (its own writes, see hub.sync.orders.known_whole); with ``load``, these are
    #: taken without reading their rows
    own: Callable[[Connection, Sequence[Change[Any]]], set[tuple[str, str]]] | None = None


def reject_source_row(hub: Connection, route: str, change: Change[Any],
                      problem: HubError) -> None:
    """Put a source row the canonical model refuses into dead letters, once per version.

    The stream moves on (the row is marked seen with the rest of its page); the row's next
    change, once someone has corrected it in its system, is read and synced as usual.
    """
    log.warning("%s: source row %s not synced: %s", route, change.key, problem)
    DeadLetters.add(hub, [NewDeadLetter(
        message_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{route}/{change.key}/{change.version}")),
        queue=f"poller:{route.split('.', 1)[0]}", routing_key=route,
        body=json.dumps({"key": change.key, "version": change.version,
                         "changed_at": change.changed_at.isoformat()}).encode(),
        headers={}, reason=str(problem), error_code=problem.code, attempts=1,
        type=route, correlation_key=change.key,
    )])


class Poller(Part):
    """Polls its system's streams into the outbox every ``poll_interval``."""

    system: ClassVar[SystemName]
    page = 500

    @abstractmethod
    def streams(self) -> Sequence[Stream]:
        """The streams to read, in dependency order (customers before orders)."""

    def run(self, stop: threading.Event) -> None:
        streams = self.streams()
        settings = self.runtime.settings
        for stream in streams:
            stream.watermark.tune(overlap=settings.watermark_overlap,
                                  sweep=settings.watermark_sweep)
        failures = Failures(log, f"{self.name} poll failed", f"{self.name} polling again")
        while not stop.is_set():
            began = time.monotonic()
            try:
                counts = [self.poll(stream) for stream in streams]
                taken = sum(counts)
                full = any(n >= self.page for n in counts)
                self.last_poll_at = utcnow()
                failures.succeeded()
                self.after_round()
            except HubError as exc:
                stop.wait(failures.failed(exc))
                continue
            if taken:
                self.runtime.outbox_wakeup.set()
            if not full:
                # Caught up: every poll re-reads the overlap window, so polling again at once
                # would only burn the CPU the appliers need. A full page means a backlog.
                # Polls start every ``poll_interval`` (the time a poll takes is not added to
                # it): a change waits at most one interval before it is read.
                stop.wait(max(0.0, began + self.runtime.settings.poll_interval - time.monotonic()))

    def poll(self, stream: Stream) -> int:
        """Take one page of a stream; returns how many changes were read.

        The source is read in a read-only transaction and nothing is written to it while the
        hub transaction is open: every part takes locks in the order system, then hub.
        """
        engine = self.runtime.system(self.system)
        try:
            with engine.connect() as source, self.runtime.store.begin() as hub:
                source = source.execution_options(**{READ_ONLY: True})
                changes = stream.watermark.poll(
                    hub, lambda lower, after, limit: stream.fetch(source, lower, after, limit),
                    limit=self.page,
                    load=None if stream.load is None else functools.partial(
                        _load, stream.load, stream.own, hub, source),
                )
                if not changes:
                    return 0
                messages = stream.messages(hub, source, [c for c in changes
                                                         if c.row is not None])
                Outbox.add(hub, messages, partitions=self.runtime.settings.partitions)
                stream.watermark.commit(hub, changes)
                source.rollback()
        except SQLAlchemyError as exc:
            raise translate_db_error(exc, f"polling {self.system}") from exc
        stream.watermark.committed()
        self.after_poll()
        return len(changes)

    def after_poll(self) -> None:
        """Hook for work that writes to the system once the poll's hub transaction is done."""

    def after_round(self) -> None:
        """Hook run after every successful round of polls, changes or none (it may raise
        :class:`~hub.errors.HubError`, handled as a failed poll)."""


def party_messages(hub: Connection, _source: Connection, changes: Sequence[Change[Any]],
                   system: str) -> list[Message]:
    """What ``system``'s poller publishes for changed partners (CRM accounts, ERP business
    partners): a PartyChanged for each that differs from what the hub knows of that side;
    an unreadable row goes to dead letters (a CRM account has no status column to show it)."""
    out: list[Message] = []
    for change in changes:
        if isinstance(change.row, InvalidMessage):
            reject_source_row(hub, f"{system}.party.changed", change, change.row)
            continue
        party: Party = change.row
        keys = {"crm": party.crm_id, "erp": party.erp_code}
        cid = Xref.resolve(hub, "party", **{system: keys.pop(system)}, **keys)
        state = SyncState.load(hub, "party", cid)
        if state.exists and state.side(system).fields == party_fields(party):
            continue  # the hub wrote it, or nothing the other system cares about changed
        out.append(PartyChanged(correlation_key=party.number, source=system,
                                source_version=change.version, party=party,
                                occurred_at=change.changed_at))
    return out


def _load(load: Callable[[Connection, Sequence[Change[Any]]], Sequence[Change[Any]]],
          own_of: Callable[[Connection, Sequence[Change[Any]]], set[tuple[str, str]]] | None,
          hub: Connection, source: Connection, found: Sequence[Change[Any]]
          ) -> list[Change[Any]]:
    """The rows of ``found``, except for the hub's own writes: an echo is taken as it is
    (row None), without reading it, when ``own_of`` says the hub knows that version. A row
    read may carry a newer version than the one listed (it changed in between): it is
    taken at that version, as ``load`` returns it."""
    own = own_of(hub, found) if own_of is not None else set()
    loaded = {c.key: c for c in load(
        source, [c for c in found if (c.key, c.version) not in own])}
    return [c if (c.key, c.version) in own else loaded[c.key] for c in found
            if (c.key, c.version) in own or c.key in loaded]


class Applier(Part):
    """Applies messages from other systems into this part's system."""

    #: routing-key stems this applier consumes, e.g. ``crm.order.changed``
    consumes: ClassVar[tuple[str, ...]]
    #: The systems it writes to or reads from, besides the hub's store: while one of them
    #: does not answer, a batch that failed on it is held (see :mod:`hub.sync.outage`).
    needs: ClassVar[tuple[SystemName, ...]] = ()

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.outage = Outage(self.name, self._ping)
        self._stop = threading.Event()

    def subscriptions(self) -> Sequence[Subscription]:
        settings = self.runtime.settings
        return [
            Subscription(f"{settings.queue_prefix}{self.name}.p{p}",
                         tuple(f"{stem}.p{p}" for stem in self.consumes))
            for p in range(settings.partitions)
        ]

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        threads = [
            threading.Thread(target=self.runtime.bus.consume, args=(sub, self.handle, stop),
                             name=sub.queue, daemon=True)
            for sub in self.subscriptions()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def handle(self, batch: Sequence[Incoming]) -> list[BaseException | None]:
        """Apply ``batch``; the outcome of each message. Messages that failed because a
        system does not answer are held and applied again once it does (within the hold
        limit: :mod:`hub.sync.outage`), rather than each spending a retry on the outage."""
        results = self._handle(batch)
        until = time.monotonic() + min(self.runtime.settings.outage_hold,
                                       self.runtime.bus.hold_limit)
        while (waiting := [i for i, r in enumerate(results) if is_outage(r)]) \
                and self.outage.wait(len(waiting), self._stop, until):
            for index, outcome in zip(waiting, self._handle([batch[i] for i in waiting]),
                                      strict=True):
                results[index] = outcome
        return results

    def detail(self) -> dict[str, Any]:
        return dict(self.outage.detail())

    def _ping(self) -> None:
        self.runtime.store.ping()
        for name in self.needs:
            self.runtime.ping_system(name)

    def _handle(self, batch: Sequence[Incoming]) -> list[BaseException | None]:
        results: list[BaseException | None] = [None] * len(batch)
        decoded: list[tuple[int, Message, bool]] = []
        retries = len(self.runtime.settings.retry_delays)
        for index, incoming in enumerate(batch):
            try:
                decoded.append((index, incoming.decode(), incoming.attempt > retries))
            except HubError as exc:
                results[index] = exc
        try:
            with self.runtime.store.begin() as hub:
                seen = Inbox.seen_many(hub, self.name,
                                       [str(m.message_id) for _, m, _ in decoded])
            todo = [item for item in decoded if str(item[1].message_id) not in seen]
            outcomes = self.apply_batch([m for _, m, _ in todo], [f for _, _, f in todo])
        except (SQLAlchemyError, HubError) as exc:
            # A system's driver error escapes the appliers' code as it is: when a system
            # does not answer, it is that outage, for every message of the batch; otherwise
            # it is a bug or a poison message, for the bus to isolate.
            why = None if isinstance(exc, HubError) and not is_outage(exc) \
                else self.outage.unreachable()
            if why is None:
                raise
            for index, _, _ in decoded:
                results[index] = DatabaseUnavailable(why)
            return results
        for (index, _, _), outcome in zip(todo, outcomes, strict=True):
            results[index] = outcome
        return results

    def apply_batch(self, messages: Sequence[Message], finals: Sequence[bool]
                    ) -> list[BaseException | None]:
        """Apply ``messages`` in order; the outcome of each (None, or why it failed).
        Appliers that can apply many messages in one transaction override this."""
        return self.apply_each(messages, finals)

    def apply_each(self, messages: Sequence[Message], finals: Sequence[bool]
                   ) -> list[BaseException | None]:
        """Apply ``messages`` one at a time, each in its own transactions."""
        outcomes: list[BaseException | None] = []
        for message, final in zip(messages, finals, strict=True):
            try:
                self.apply(message, final=final)
                outcomes.append(None)
            except HubError as exc:
                outcomes.append(exc)
        return outcomes

    def apply_grouped(
        self, messages: Sequence[Message], finals: Sequence[bool], kind: type[M],
        together: Callable[[Sequence[M], Sequence[bool]], list[BaseException | None]],
    ) -> list[BaseException | None]:
        """Apply runs of ``kind`` messages of different keys with ``together`` (one
        transaction for the run); other messages, and a message whose key is already in the
        running group, wait for the group, so each key keeps its order. A run that fails as
        a whole (a deadlock, a bad row) is applied again one message at a time, each with
        its own retry and dead-letter path; when a system it needs does not answer, the
        whole run fails alike instead (one at a time, each would fail or time out the same
        way), to be held by :meth:`handle`. A run that lost a lock race (a
        deadlock: two first writers of an empty ERP document series) is run once more as a
        whole first: one at a time, each message would queue behind every batch."""
        outcomes: list[BaseException | None] = []
        group: list[M] = []
        group_finals: list[bool] = []

        def run() -> list[BaseException | None]:
            try:
                return together(list(group), list(group_finals))
            except Contention as exc:
                log.info("%s: a batch of %d lost a lock race (%s); once more", self.name,
                         len(group), exc)
                return together(list(group), list(group_finals))

        def flush() -> None:
            if len(group) > 1:
                try:
                    outcomes.extend(run())
                except HubError as exc:
                    if is_outage(exc) and self.outage.unreachable() is not None:
                        outcomes.extend([exc] * len(group))  # one at a time would fail alike
                    else:
                        log.info("%s: a batch of %d failed as a whole (%s); one at a time",
                                 self.name, len(group), exc)
                        outcomes.extend(self.apply_each(group, group_finals))
            elif group:
                outcomes.extend(self.apply_each(group, group_finals))
            group.clear()
            group_finals.clear()

        for message, final in zip(messages, finals, strict=True):
            if isinstance(message, kind):
                if any(m.correlation_key == message.correlation_key for m in group):
                    flush()
                group.append(message)
                group_finals.append(final)
                continue
            flush()
            outcomes.extend(self.apply_each([message], [final]))
        flush()
        return outcomes

    @abstractmethod
    def apply(self, message: Message, *, final: bool) -> None:
        """Apply one message; must claim it in the inbox in its hub transaction
        (:meth:`done`). ``final`` is True on the last attempt before dead letters."""

    def done(self, hub: Connection, message: Message) -> None:
        """Record ``message`` as applied, in the hub transaction that records its effect."""
        Inbox.claim(hub, self.name, [str(message.message_id)])
