"""The daemon renders certificates in a worker process it replaces every so many renders
(Pango keeps ~18 KB of every render; see :mod:`certificates.worker`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from certificates.bulk import POOLS, learn_deliveries, missing, render_missing, tasks_per_worker
from certificates.records import Tally
from certificates.samples import sample_certificate
from certificates.worker import RenderProcess
from hub.components import PEAK_KEY, RSS_KEY, WORKERS_KEY, worker_memory
from hub.errors import RetryableError
from tests.certificates.kit import pdftotext
from tests.certificates.world import HUAYI, PUBLIC, RHEINLAND, World, world


@pytest.fixture
def worker() -> Iterator[RenderProcess]:
    renderer = RenderProcess(renders=2)
    try:
        yield renderer
    finally:
        renderer.close()


def _weasyprint_loaded() -> bool:
    return "weasyprint" in sys.modules


def test_renders_in_another_process_which_is_replaced_after_its_renders(
        worker: RenderProcess, tmp_path: Path) -> None:
    data = sample_certificate()
    first = worker.run(os.getpid)  # a task like a render: this worker has one left
    assert first != os.getpid()
    assert worker.run(_weasyprint_loaded) is False  # its second task: a fresh worker next
    pdf = worker(data, "en")
    assert pdf.startswith(b"%PDF-")
    text = pdftotext(pdf, tmp_path)
    assert data.issue.number in text
    assert data.quality.batch_number in text
    assert worker.run(_weasyprint_loaded) is True  # the render's worker: its second task
    assert worker.run(os.getpid) not in (first, os.getpid())  # a third worker


def test_the_workers_memory_goes_with_the_daemons_heartbeats(worker: RenderProcess,
                                                             tmp_path: Path) -> None:
    """The worker runs no parts, so it beats no heartbeat: the daemon reports its memory."""
    assert WORKERS_KEY not in worker_memory()
    pid = worker.run(os.getpid)
    worker(sample_certificate(), "en")  # WeasyPrint loaded: tens of MiB
    memory = worker_memory()[WORKERS_KEY][str(pid)]
    assert 20 * 2**20 < memory[RSS_KEY] <= memory[PEAK_KEY] < 2**31
    worker.close()
    assert WORKERS_KEY not in worker_memory()


def test_a_killed_worker_is_replaced_and_the_render_done(worker: RenderProcess,
                                                          tmp_path: Path) -> None:
    pid = worker.run(os.getpid)
    os.kill(pid, signal.SIGKILL)
    pdf = worker(sample_certificate(), "zh")
    assert sample_certificate().issue.number in pdftotext(pdf, tmp_path)
    assert worker.run(os.getpid) != pid


def break_the_next_submit(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the next ``ProcessPoolExecutor.submit`` fail as CPython's does when a worker
    died just before and the pool is closing its queue; returns the calls seen."""
    calls: list[int] = []
    real = ProcessPoolExecutor.submit

    def submit(self: ProcessPoolExecutor, fn: Callable[..., object], /, *args: object,
               **kwargs: object) -> object:
        calls.append(len(calls))
        if len(calls) == 1:
            raise OSError("handle is closed")
        return real(self, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", submit)
    return calls


def test_a_pool_that_breaks_as_it_is_given_a_render_is_replaced(
        worker: RenderProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen once in CI: a worker killed, and the next submit raised OSError instead of
    BrokenProcessPool. The renderer takes it as a broken pool and starts another."""
    first = worker.run(os.getpid)
    calls = break_the_next_submit(monkeypatch)
    assert worker.run(os.getpid) not in (first, os.getpid())
    assert len(calls) == 2, "tried once more, in a new pool"


def test_an_idle_worker_stops_and_the_next_render_starts_another(tmp_path: Path) -> None:
    renderer = RenderProcess(renders=50, idle=0.5)
    try:
        pid = renderer.run(os.getpid)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists(), "the idle worker is still running"
        pdf = renderer(sample_certificate(), "en")
        assert sample_certificate().issue.number in pdftotext(pdf, tmp_path)
        assert renderer.run(os.getpid) != pid
    finally:
        renderer.close()


def _pid_after_a_while() -> int:
    time.sleep(0.01)
    return os.getpid()


def test_renders_from_many_threads_at_once_all_finish_on_fresh_workers() -> None:
    """Work queued while a worker reaches its renders goes to the next worker. With the
    pool's own ``max_tasks_per_child`` it could wait for ever (CPython gh-115634)."""
    renderer = RenderProcess(renders=3)
    try:
        with ThreadPoolExecutor(4) as callers:
            pids = list(callers.map(lambda _: renderer.run(_pid_after_a_while), range(40),
                                    timeout=120))
    finally:
        renderer.close()
    counts = Counter(pids)
    assert os.getpid() not in counts
    assert len(counts) == 14 and max(counts.values()) == 3, counts  # 40 = 13 x 3 + 1


def test_a_caller_held_up_after_choosing_the_pool_still_gets_its_work_done(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen once in CI: a caller that had chosen the pool was overtaken by another, which
    retired that pool (it had had its renders) before the first gave it the work, and
    submit() refused: "cannot schedule new futures after shutdown". Choosing the pool is
    held up here, as a busy machine may hold a thread up at that point."""
    choose = RenderProcess._current

    def slowly(self: RenderProcess) -> ProcessPoolExecutor:
        pool = choose(self)
        time.sleep(0.05)
        return pool

    monkeypatch.setattr(RenderProcess, "_current", slowly)
    renderer = RenderProcess(renders=1)
    try:
        with ThreadPoolExecutor(4) as callers:
            pids = list(callers.map(lambda _: renderer.run(os.getpid), range(12), timeout=120))
    finally:
        renderer.close()
    assert len(set(pids)) == 12 and os.getpid() not in pids, pids


_PARENT = """
import os, sys, time
sys.path.insert(0, {root!r})
from certificates.worker import RenderProcess
if __name__ == "__main__":
    print(RenderProcess(renders=5).run(os.getpid), flush=True)
    time.sleep(120)
"""


def test_the_worker_of_a_daemon_killed_outright_exits(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT.format(root=str(Path(__file__).parents[2])))
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                          text=True) as parent:
        try:
            assert parent.stdout is not None
            pid = int(parent.stdout.readline())
            assert _alive(pid)
            parent.kill()
            parent.wait(10)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _alive(pid), "the worker outlived its daemon"
        finally:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; whoever adopted it reaps it


def test_a_closed_renderer_refuses_with_a_retryable_error() -> None:
    renderer = RenderProcess(renders=5)
    renderer.close()
    with pytest.raises(RetryableError):
        renderer(sample_certificate(), "en")


@pytest.mark.parametrize(("renders", "work", "tasks"), [
    (0, {"B1": ["C1"]}, None),  # 0: never replaced
    (200, {}, None),
    (200, {"B1": ["C1"], "B2": ["C1"]}, 200),
    (200, {"B1": ["C1", "C2", "C3"], "B2": ["C1"]}, 100),  # two renders a batch
    (1, {"B1": ["C1", "C2", "C3"]}, 1),  # at least one batch
])
def test_a_bulk_worker_issues_about_its_renders_of_batches(
        renders: int, work: dict[str, list[str]], tasks: int | None) -> None:
    assert tasks_per_worker(renders, work) == tasks


DELIVERED = [(HUAYI, "B2611-0001"), (RHEINLAND, "B2611-0003"), (HUAYI, "B2611-0004"),
             (RHEINLAND, "B2611-0005")]


@dataclass
class Bulk:
    """Four delivered batches without certificates, and the spawned worker processes seen
    while :meth:`run` runs ``render_missing`` on them."""

    world: World
    work: dict[str, list[str]]
    seen: list[int] = field(default_factory=list)

    def run(self, *, workers: int, renders: int,
            on_worker: Callable[[int], None] = lambda pid: None) -> tuple[Tally, int]:
        """The run's tally and how many customers it reported done."""
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(stop, on_worker))
        watcher.start()
        done: list[int] = []
        try:
            tally = render_missing(self.world.service, self.work, workers=workers,
                                   advance=done.append, renders_per_process=renders)
        finally:
            stop.set()
            watcher.join()
        return tally, sum(done)

    def _watch(self, stop: threading.Event, on_worker: Callable[[int], None]) -> None:
        while not stop.is_set():
            for task in Path(f"/proc/{os.getpid()}/task").iterdir():
                try:
                    children = (task / "children").read_text().split()
                except OSError:
                    continue
                for pid in map(int, children):
                    try:
                        spawned = b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if spawned and pid not in self.seen:
                        self.seen.append(pid)
                        on_worker(pid)
            stop.wait(0.02)

    def issued(self) -> list[tuple[str, str, int]]:
        return [(c.customer, batch, c.version) for _, batch in DELIVERED
                for c in self.world.service.versions(batch)]


@pytest.fixture
def bulk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bulk]:
    with world(("sqlite", "sqlite"), tmp_path) as w:
        # The workers open their own service from the environment, as the command's do.
        for name, value in (("DATABASE_URL", w.runtime.store.url),
                            ("ERP_URL", w.erp.url.render_as_string(hide_password=False)),
                            ("LIMS_URL", w.lims.url.render_as_string(hide_password=False)),
                            ("PUBLIC_URL", PUBLIC), ("VAR_DIR", str(tmp_path / "var"))):
            monkeypatch.setenv(f"HUB_{name}", value)
        for customer, batch in DELIVERED:
            w.deliver(customer, batch)
        assert learn_deliveries(w.service) == 4
        work = missing(w.service)
        assert sorted(work) == sorted(batch for _, batch in DELIVERED)
        yield Bulk(w, work)


ALL_ISSUED = [(customer, batch, 1) for customer, batch in DELIVERED]


def test_render_missing_replaces_its_workers_after_their_renders(bulk: Bulk) -> None:
    """``hub certificate render-missing`` replaces a worker after about
    HUB_CERTIFICATE_RENDERS_PER_PROCESS renders, as the daemon does, and issues everything."""
    tally, done = bulk.run(workers=1, renders=1)
    assert (tally.issued, tally.failed, done) == (4, 0, 4)
    assert len(bulk.seen) == 4, f"one worker per batch, saw {bulk.seen}"
    assert bulk.issued() == ALL_ISSUED


def test_render_missing_goes_on_when_a_worker_is_killed(bulk: Bulk) -> None:
    def kill_the_first(pid: int) -> None:
        if len(bulk.seen) == 1:
            os.kill(pid, signal.SIGKILL)

    tally, done = bulk.run(workers=2, renders=200, on_worker=kill_the_first)
    assert (tally.issued, tally.failed, tally.reasons, done) == (4, 0, [], 4)
    assert not _alive(bulk.seen[0]) and len(bulk.seen) >= 3  # a new pool of two
    assert bulk.issued() == ALL_ISSUED


def test_render_missing_goes_on_when_its_pool_breaks_as_it_is_given_a_batch(
        bulk: Bulk, monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure CI saw once: submit raised OSError("handle is closed") while the pool was
    breaking; the run starts a new pool and issues everything."""
    calls = break_the_next_submit(monkeypatch)
    tally, done = bulk.run(workers=2, renders=200)
    assert (tally.issued, tally.failed, tally.reasons, done) == (4, 0, [], 4)
    assert len(calls) >= 1 + 4, "the batch refused, then all four in a new pool"
    assert bulk.issued() == ALL_ISSUED


def test_render_missing_gives_up_on_workers_that_keep_dying_and_says_so(bulk: Bulk) -> None:
    tally, done = bulk.run(workers=1, renders=200,
                           on_worker=lambda pid: os.kill(pid, signal.SIGKILL))
    assert (tally.issued, tally.failed, done) == (0, 4, 0)
    assert tally.reasons == [f"4 certificate(s) of 4 batch(es) not issued: the worker "
                             f"processes stopped {POOLS} times; run the command again to "
                             "issue them"]
    assert len(bulk.seen) >= POOLS and bulk.issued() == []
    again, _ = bulk.run(workers=1, renders=200)  # nothing was lost
    assert (again.issued, again.failed) == (4, 0) and bulk.issued() == ALL_ISSUED
