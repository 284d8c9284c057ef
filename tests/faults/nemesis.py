"""The nemesis: a shuffled schedule of faults, spread evenly over the workload, one at a time.

- ``kill``: SIGKILL of the whole daemon (every part process) or of one part, then restarted;
- ``broker-restart``: alternately ``rabbitmqctl stop_app``/``start_app``, and SIGKILL of the
  broker's Erlang VM followed by a fresh ``rabbitmq-server``;
- ``memory-alarm``: ``set_vm_memory_high_watermark 0`` (publishers blocked) for a while, then 0.4;
- ``mariadb-outage``: alternately SIGKILL and a clean SIGTERM of ``mariadbd``, down a few seconds;
- ``pg-restart``: ``pg_ctl stop -m immediate`` (a crash: WAL recovery at start), then start.

The link faults of the issue (tc netem on the private ports) are not here: the sandbox's kernel
has no ``prio`` qdisc, so a delay could not be confined to the private ports and would slow the
shared servers too; iptables is not installed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.faults.daemon import ApartDaemon, HubProcesses
from tests.faults.servers import Servers

__all__ = ["KINDS", "Fault", "Nemesis"]

log = logging.getLogger("faults.nemesis")

KINDS = ("kill", "broker-restart", "memory-alarm", "mariadb-outage", "pg-restart")


@dataclass
class Fault:
    kind: str
    detail: str = ""
    began: float = 0.0
    ended: float = 0.0
    error: str | None = None


@dataclass
class Nemesis:
    servers: Servers
    hub: HubProcesses | ApartDaemon
    counts: dict[str, int]
    window: float
    seed: int = 6
    outage_seconds: float = 4.0
    alarm_seconds: float = 10.0
    done: list[Fault] = field(default_factory=list)

    def schedule(self) -> list[str]:
        rng = random.Random(self.seed)
        kinds = [k for k in KINDS for _ in range(self.counts.get(k, 0))]
        rng.shuffle(kinds)
        return kinds

    def run(self, stop: threading.Event, began: float) -> None:
        """Inject every scheduled fault, evenly spaced over ``window`` seconds from ``began``
        (after a first quiet tenth), each after the previous one has ended."""
        kinds = self.schedule()
        if not kinds:
            return
        rng = random.Random(self.seed + 1)
        first = self.window * 0.1
        step = (self.window - first) / len(kinds)
        seen: Counter[str] = Counter()
        for i, kind in enumerate(kinds):
            due = began + first + i * step
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            fault = Fault(kind, began=time.monotonic())
            try:
                fault.detail = self._inject(kind, seen[kind], rng)
            except Exception as exc:  # the suite reports a fault it could not inject
                fault.error = f"{type(exc).__name__}: {exc}"
                log.error("fault %s failed: %s", kind, exc)
            fault.ended = time.monotonic()
            seen[kind] += 1
            self.done.append(fault)
            log.info("fault %d/%d %s %s (%.1f s)", i + 1, len(kinds), kind, fault.detail,
                     fault.ended - fault.began)

    def _inject(self, kind: str, nth: int, rng: random.Random) -> str:
        rabbit, maria, pg = self.servers.rabbit, self.servers.mariadb, self.servers.postgres
        assert rabbit is not None and maria is not None and pg is not None
        if kind == "kill":
            if nth % 2 == 0:
                self.hub.kill()
                return "daemon (all parts)"
            part = rng.choice(self.hub.parts)
            self.hub.kill((part,))
            return f"part {part}"
        if kind == "broker-restart":
            if nth % 2 == 0:
                rabbit.stop_app()
                time.sleep(self.outage_seconds)
                rabbit.start_app()
                return "stop_app/start_app"
            rabbit.kill()
            time.sleep(self.outage_seconds / 2)
            rabbit.start()
            return "SIGKILL of the broker, restart"
        if kind == "memory-alarm":
            t0 = time.monotonic()
            rabbit.memory_alarm(True)
            t1 = time.monotonic()
            time.sleep(self.alarm_seconds)
            t2 = time.monotonic()
            rabbit.memory_alarm(False)
            return (f"watermark 0 for {self.alarm_seconds:g} s (rabbitmqctl took "
                    f"{t1 - t0:.1f} s and {time.monotonic() - t2:.1f} s)")
        if kind == "mariadb-outage":
            if nth % 2 == 0:
                maria.kill()
                how = "SIGKILL"
            else:
                maria.stop()
                how = "SIGTERM"
            time.sleep(self.outage_seconds)
            maria.start()
            return f"{how}, down {self.outage_seconds:g} s"
        if kind == "pg-restart":
            pg.stop("immediate")
            time.sleep(self.outage_seconds)
            pg.start()
            return f"immediate stop, down {self.outage_seconds:g} s"
        raise ValueError(f"unknown fault {kind}")
