"""The last-synced state of a bound record, per side: the base of the three-way merge.

For each side the hub remembers the newest version of the record it has seen or written
there, and the mapped fields as they were then. A field that differs from that side's
remembered value was changed on that side since the last sync. A message whose version is
not newer than the remembered one is stale and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from hub.model.records import OrderLine
from hub.store.bulk import insert_ignore, one_of, update_many
from hub.store.tables import sync_state
from hub.store.types import utcnow

__all__ = ["PENDING", "Side", "SyncState", "older"]

#: The side under which the hub keeps what it knew before a write it remembered ahead of the
#: target's commit, until the write is known to have committed (see :meth:`SyncState.settle`).
PENDING = "pending"


def _dumps(value: Any) -> str:
    """``value`` as JSON text, keys sorted, a value JSON does not know as its ``str``.

    orjson, not json: a state is written whole at every change of its record, twice an order
    in a drain, and read whole once; json took 23 us to write an order's state and 13 to
    read it, orjson 3 and 6 (the daemon spent 11% of its time in JSON)."""
    return orjson.dumps(value, default=str,
                        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def older(version: str, than: str | None) -> bool:
    """True when a message's ``version`` is older than the one remembered (integers compare
    as numbers, timestamps as ISO text); an equal version is not older."""
    if than is None:
        return False
    if version.isdigit() and than.isdigit():
        return int(version) < int(than)
    return version < than


#: The key of the ``versions`` column's list of the sides known whole (not a side's name).
_WHOLE = "~whole"
#: The key of the state's line cross-reference (not a side's name).
_LINES = "~lines"


@dataclass
class Side:
    version: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    #: True when ``fields`` hold the whole record at ``version``, not only the fields the
    #: hub wrote: read from the side, read back after the hub created it, or written by the
    #: hub straight after a version it knew whole. That version, polled later, needs no
    #: reading (see ``Stream.own``). After an update the hub remembers only what it wrote,
    #: and someone's edit made before it, not yet polled, is in the version it stamped.
    whole: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Side:
        return cls(data.get("version"), data.get("fields", {}), bool(data.get("whole")))

    def to_json(self) -> dict[str, Any]:
        out = {"version": self.version, "fields": self.fields}
        return {**out, "whole": True} if self.whole else out


@dataclass
class SyncState:
    kind: str
    canonical_id: str
    sides: dict[str, Side] = field(default_factory=dict)
    exists: bool = False
    #: The line cross-reference of an order: the CRM line_no of each ERP line (RDR1.LineNum)
    #: the hub wrote or read. Kept here, in the row written anyway, rather than as two
    #: ``id_xref`` rows per line: those were a fifth of PostgreSQL's work in a drain.
    lines: dict[int, int] = field(default_factory=dict)

    @classmethod
    def _parsed(cls, kind: str, canonical_id: str, data: dict[str, Any]) -> SyncState:
        """The state as :meth:`_data` wrote it."""
        lines = {int(erp): crm for erp, crm in data.pop(_LINES, {}).items()}
        return cls(kind, canonical_id, {name: Side.from_json(side) for name, side in data.items()},
                   exists=True, lines=lines)

    def _data(self, sides: dict[str, Side]) -> dict[str, Any]:
        data: dict[str, Any] = {name: s.to_json() for name, s in sides.items()}
        if self.lines:
            data[_LINES] = {str(erp): crm for erp, crm in sorted(self.lines.items())}
        return data

    def bind_lines(self, lines: Iterable[OrderLine]) -> None:
        """Remember which CRM line each ERP line of ``lines`` is (those carrying both)."""
        self.lines.update((line.erp_line, line.line_no) for line in lines
                          if line.erp_line is not None and line.line_no is not None)

    def side(self, system: str) -> Side:
        return self.sides.setdefault(system, Side())

    def snapshot(self) -> dict[str, Any]:
        """What the hub knows now, to keep with :meth:`pending` (taken before a write)."""
        return dict(orjson.loads(_dumps(self._data(
            {name: s for name, s in self.sides.items() if name != PENDING}))))

    def pending(self, before: dict[str, Any], target: str) -> None:
        """Mark the write into ``target`` just remembered as not yet committed there, keeping
        ``before`` (a :meth:`snapshot` from before it was remembered) until it is."""
        self.sides[PENDING] = Side(target, {"before": before})

    def settle(self, target_version: str | None) -> bool:
        """Before the next write: a write marked :meth:`pending` committed if its target now
        holds the version the hub remembered writing, or a later one. Otherwise it was lost
        with its transaction (the process killed before the commit) and what the hub knew
        before is restored, because the base of the next merge must be what the target really holds:
        with the lost write as base, the change it carried looks applied and is never made.
        Returns True when it restored."""
        pending = self.sides.pop(PENDING, None)
        if pending is None or pending.version is None:
            return False
        written = self.side(pending.version).version
        if target_version is not None and written is not None and not older(target_version,
                                                                               written):
            return False
        before = self._parsed(self.kind, self.canonical_id, dict(pending.fields.get("before", {})))
        self.sides, self.lines = before.sides, before.lines
        return True

    @classmethod
    def load(
        cls, conn: Connection, kind: str, canonical_id: str, *, lock: bool = False
    ) -> SyncState:
        query = select(sync_state.c.state).where(
            sync_state.c.kind == kind, sync_state.c.canonical_id == canonical_id)
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        raw = conn.execute(query).scalar()
        if raw is None:
            return cls(kind, canonical_id)
        return cls._parsed(kind, canonical_id, orjson.loads(raw))

    @classmethod
    def load_many(cls, conn: Connection, kind: str, canonical_ids: Sequence[str]
                  ) -> dict[str, SyncState]:
        """:meth:`load` for each of ``canonical_ids``, one query per 500."""
        ids = list(dict.fromkeys(canonical_ids))
        raw: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            raw.update((r.canonical_id, r.state) for r in conn.execute(
                select(sync_state.c.canonical_id, sync_state.c.state).where(
                    sync_state.c.kind == kind,
                    one_of(conn, sync_state.c.canonical_id, ids[start:start + 500]))))
        out: dict[str, SyncState] = {}
        for cid in ids:
            if cid not in raw:
                out[cid] = cls(kind, cid)
                continue
            out[cid] = cls._parsed(kind, cid, orjson.loads(raw[cid]))
        return out

    @classmethod
    def versions_many(cls, conn: Connection, kind: str, canonical_ids: Sequence[str]
                      ) -> dict[str, dict[str, Side]]:
        """Each of ``canonical_ids``' sides with its version and whether it is known whole,
        without its fields (empty): what the pollers' echo check and the CRM applier's
        staleness check need, read from the small ``versions`` column instead of parsing
        the whole state (a tenth of the daemon's time in a drain). A record the hub has no
        state for has no sides."""
        ids = list(dict.fromkeys(canonical_ids))
        out: dict[str, dict[str, Side]] = {}
        legacy: list[str] = []  # written before versions carried _WHOLE
        for start in range(0, len(ids), 500):
            for row in conn.execute(
                    select(sync_state.c.canonical_id, sync_state.c.versions).where(
                        sync_state.c.kind == kind,
                        one_of(conn, sync_state.c.canonical_id, ids[start:start + 500]))):
                data: dict[str, Any] = orjson.loads(row.versions or "{}")
                whole = data.pop(_WHOLE, None)
                if whole is None:
                    legacy.append(row.canonical_id)
                    continue
                out[row.canonical_id] = {name: Side(version, {}, name in whole)
                                         for name, version in data.items()}
        for cid, state in cls.load_many(conn, kind, legacy).items():
            out[cid] = {name: Side(side.version, {}, side.whole)
                        for name, side in state.sides.items()}
        return out

    @staticmethod
    def save_many(conn: Connection, states: Sequence[SyncState]) -> None:
        """:meth:`save` for many states: one statement for the updates, one for the inserts."""
        now = utcnow()
        update_many(conn, sync_state, ("kind", "canonical_id"), [
            {"kind": s.kind, "canonical_id": s.canonical_id, "state": s._raw(),
             "versions": s._versions()} for s in states if s.exists], {"updated_at": now})
        new = [s for s in states if not s.exists]
        insert_ignore(conn, sync_state, [
            {"kind": s.kind, "canonical_id": s.canonical_id, "state": s._raw(),
             "versions": s._versions(), "updated_at": now} for s in new])
        for state in new:
            state.exists = True

    def _raw(self) -> str:
        return _dumps(self._data(self.sides))

    def _versions(self) -> str:
        """The sides' versions, and which are known whole (:meth:`versions_many`)."""
        return orjson.dumps({**{name: s.version for name, s in self.sides.items()},
                             _WHOLE: [name for name, s in self.sides.items() if s.whole]}).decode()

    def save(self, conn: Connection) -> None:
        raw, versions = self._raw(), self._versions()
        now = utcnow()
        if self.exists:
            conn.execute(update(sync_state).where(
                sync_state.c.kind == self.kind, sync_state.c.canonical_id == self.canonical_id,
            ).values(state=raw, versions=versions, updated_at=now))
        else:
            insert_ignore(conn, sync_state, [{"kind": self.kind,
                                              "canonical_id": self.canonical_id, "state": raw,
                                              "versions": versions, "updated_at": now}])
            self.exists = True


