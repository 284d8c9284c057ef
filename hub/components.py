"""Heartbeats of the daemon's parts, kept in the store so ``status`` sees every process."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from hub.store.bulk import insert_ignore
from hub.store.tables import component
from hub.store.types import utcnow

__all__ = ["AWAITING_KEY", "HELD_KEY", "OLDEST_KEY", "PEAK_KEY", "RSS_KEY", "SINCE_KEY",
           "WHY_KEY", "WORKERS_KEY", "ComponentState", "Components", "process_memory",
           "process_name", "worker_memory"]


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


#: The heartbeat detail keys of :func:`process_memory`.
RSS_KEY, PEAK_KEY = "memory_rss_bytes", "memory_peak_bytes"
#: The heartbeat detail key of :func:`worker_memory`.
WORKERS_KEY = "memory_workers"
#: In the CRM poller's heartbeat: CRM orders sent on to the ERP that have no ERP number and
#: no error yet, and the oldest last change among them (ISO 8601, UTC; None when there are none).
AWAITING_KEY, OLDEST_KEY = "orders_awaiting_erp", "oldest_awaiting_erp_at"
#: The heartbeat detail keys of an applier waiting out an outage (:mod:`hub.sync.outage`).
HELD_KEY, SINCE_KEY, WHY_KEY = "held_messages", "unreachable_since", "unreachable"


def process_memory(pid: int | None = None) -> dict[str, int]:
    """This process's (or process ``pid``'s) resident memory now and at its peak (``VmRSS``,
    ``VmHWM``), in bytes, for its parts' heartbeats; empty where ``/proc`` does not say."""
    wanted = {"VmRSS:": RSS_KEY, "VmHWM:": PEAK_KEY}
    memory: dict[str, int] = {}
    try:
        with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as status:
            for line in status:
                field, *value = line.split()  # "VmRSS:\t  108496 kB"
                if field in wanted:
                    memory[wanted[field]] = int(value[0]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    return memory


def worker_memory() -> dict[str, Any]:
    """The memory of this process's worker processes (``multiprocessing``'s: the certificate
    renderer's), which run no parts and so beat no heartbeat of their own: ``{WORKERS_KEY:
    {pid: {RSS_KEY: .., PEAK_KEY: ..}}}``, or nothing when there are none."""
    workers = {str(child.pid): memory for child in multiprocessing.active_children()
               if child.pid is not None and (memory := process_memory(child.pid))}
    return {WORKERS_KEY: workers} if workers else {}


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
