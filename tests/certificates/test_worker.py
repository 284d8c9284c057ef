"""The daemon renders certificates in a worker process it replaces every so many renders
(Pango keeps ~18 KB of every render; see :mod:`certificates.worker`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from certificates.bulk import learn_deliveries, missing, render_missing, tasks_per_worker
from certificates.samples import sample_certificate
from certificates.worker import RenderProcess
from hub.errors import RetryableError
from tests.certificates.kit import pdftotext
from tests.certificates.world import HUAYI, PUBLIC, RHEINLAND, world


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


def test_a_killed_worker_is_replaced_and_the_render_done(worker: RenderProcess,
                                                          tmp_path: Path) -> None:
    pid = worker.run(os.getpid)
    os.kill(pid, signal.SIGKILL)
    pdf = worker(sample_certificate(), "zh")
    assert sample_certificate().issue.number in pdftotext(pdf, tmp_path)
    assert worker.run(os.getpid) != pid


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


def _spawned_children(seen: set[int], stop: threading.Event) -> None:
    """Collect the pids of this process's spawned multiprocessing children until ``stop``."""
    while not stop.is_set():
        for task in Path(f"/proc/{os.getpid()}/task").iterdir():
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for pid in map(int, children):
                try:
                    if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        seen.add(pid)
                except OSError:
                    pass
        stop.wait(0.02)


def test_render_missing_replaces_its_workers_after_their_renders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hub certificate render-missing`` replaces a worker after about
    HUB_CERTIFICATE_RENDERS_PER_PROCESS renders, as the daemon does, and issues everything."""
    delivered = [(HUAYI, "B2611-0001"), (RHEINLAND, "B2611-0003"), (HUAYI, "B2611-0004"),
                 (RHEINLAND, "B2611-0005")]
    with world(("sqlite", "sqlite"), tmp_path) as w:
        # The workers open their own service from the environment, as the command's do.
        for name, value in (("DATABASE_URL", w.runtime.store.url),
                            ("ERP_URL", w.erp.url.render_as_string(hide_password=False)),
                            ("LIMS_URL", w.lims.url.render_as_string(hide_password=False)),
                            ("PUBLIC_URL", PUBLIC), ("VAR_DIR", str(tmp_path / "var"))):
            monkeypatch.setenv(f"HUB_{name}", value)
        for customer, batch in delivered:
            w.deliver(customer, batch)
        assert learn_deliveries(w.service) == 4
        work = missing(w.service)
        assert sorted(work) == ["B2611-0001", "B2611-0003", "B2611-0004", "B2611-0005"]
        seen: set[int] = set()
        stop = threading.Event()
        watcher = threading.Thread(target=_spawned_children, args=(seen, stop))
        watcher.start()
        done: list[int] = []
        try:
            tally = render_missing(w.service, work, workers=1, advance=done.append,
                                   renders_per_process=1)
        finally:
            stop.set()
            watcher.join()
        assert (tally.issued, tally.failed, sum(done)) == (4, 0, 4)
        # A worker per batch, and the pool may start one more as the last one leaves.
        assert len(seen) in (4, 5), f"one worker per batch, saw {sorted(seen)}"
        for customer, batch in delivered:
            assert [(c.customer, c.version) for c in w.service.versions(batch)] == [
                (customer, 1)], batch
