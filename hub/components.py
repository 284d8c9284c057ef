"""Heartbeats of the daemon's parts, kept in the store so ``status`` sees every process."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from hub.store.bulk import insert_ignore
from hub.store.tables import component
from hub.store.types import utcnow

__all__ = ["ComponentState", "Components", "process_name"]


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ComponentState:
    name: str
    process: str
    state: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    last_poll_at: dt.datetime | None
    detail: dict[str, Any]

    def age(self, now: dt.datetime | None = None) -> float:
        return ((now or utcnow()) - self.heartbeat_at).total_seconds()


class Components:
    """Read and write the ``component`` table in the caller's transaction."""

    @staticmethod
    def beat(
        conn: Connection, name: str, state: str, *, started_at: dt.datetime,
        last_poll_at: dt.datetime | None = None, detail: Mapping[str, Any] | None = None,
    ) -> None:
        now = utcnow()
        values = {
            "process": process_name(), "state": state, "heartbeat_at": now,
            "detail": json.dumps(dict(detail or {}), default=str), "started_at": started_at,
        }
        if last_poll_at is not None:
            values["last_poll_at"] = last_poll_at
        changed = conn.execute(update(component).where(component.c.name == name).values(**values))
        if not changed.rowcount:
            insert_ignore(conn, component, [{"name": name, **values}])

    @staticmethod
    def all(conn: Connection) -> list[ComponentState]:
        return [
            ComponentState(
                name=r.name, process=r.process, state=r.state, started_at=r.started_at,
                heartbeat_at=r.heartbeat_at, last_poll_at=r.last_poll_at,
                detail=json.loads(r.detail or "{}"),
            )
            for r in conn.execute(select(component).order_by(component.c.name))
        ]
