"""How fast certificates render and are served, each beside the naive way in the same run.

    .venv/bin/python -m bench.certificates            # 30 renders per language, 20 s of HTTP
    .venv/bin/python -m bench.certificates --quick    # 10 renders, 5 s

1. **Render** a one-page certificate (8 results) to PDF, English and bilingual Chinese, each a
   certificate not rendered before. The hub: :func:`certificates.render.render_pdf` (fonts,
   the parsed stylesheet and the CJK subset built once per process; PDF/A-3u with the JSON
   attachment). Naive: what a first version would do per request — a fresh WeasyPrint
   ``HTML(...).write_pdf()`` with a new font configuration and the stylesheet parsed again,
   system fonts embedded whole. Both after one untimed warm-up render.
2. **Serve** a stored certificate over HTTP: the daemon's HTTP part (``python -m hub run
   --only http``) on the embedded defaults in a temporary directory, the certificate issued
   once beforehand, ``--clients`` keep-alive clients on this same machine asking for the PDF
   for ``--seconds``. The naive baseline renders per request, so its rate is bounded by its
   render time (measured above, without any HTTP overhead, which favours it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx

from bench.common import say
from certificates.data import CertificateData
from certificates.html import render_html
from certificates.qr import qr_png_data_uri
from certificates.render import ASSETS, STYLESHEET, AssetFetcher, render_pdf, warm_up
from certificates.samples import sample_certificate

__all__ = ["main"]


def naive_pdf(data: CertificateData, lang: str) -> bytes:
    """A fresh WeasyPrint render, as a first version would do it for each request."""
    from weasyprint import CSS, HTML
    from weasyprint.text.fonts import FontConfiguration

    fonts = FontConfiguration()
    assets = {path.name: path.read_bytes() for path in ASSETS.iterdir() if path.is_file()}
    fetcher = AssetFetcher(assets).for_qr(qr_png_data_uri(data.issue.verify_url))
    css = CSS(string=assets[STYLESHEET].decode(), font_config=fonts, url_fetcher=fetcher)
    pdf = HTML(string=render_html(data, lang), url_fetcher=fetcher).write_pdf(
        stylesheets=[css], font_config=fonts)
    assert isinstance(pdf, bytes)
    return pdf


def timed(render: Callable[[CertificateData, str], bytes], lang: str, count: int) -> list[float]:
    """Milliseconds per render of ``count`` certificates never rendered before."""
    render(sample_certificate(batch="B2699-9999"), lang)  # warm-up, not timed
    samples = []
    for i in range(count):
        data = sample_certificate(batch=f"B2612-{i:04d}", version=1 + i % 3)
        started = time.perf_counter()
        pdf = render(data, lang)
        samples.append((time.perf_counter() - started) * 1000)
        assert pdf.startswith(b"%PDF")
    return samples


def _hub(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "hub", *args], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"hub {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def serve(seconds: float, clients: int) -> tuple[list[float], float]:
    """(latencies in ms, requests per second) of a stored PDF over HTTP."""
    from hub.demo.people import ErpUser
    from hub.store.engine import make_engine

    with tempfile.TemporaryDirectory(prefix="bench-cert-") as tmp:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(HUB_VAR_DIR=str(Path(tmp) / "var"), HUB_HTTP_PORT=str(port),
                   HUB_RATE_LIMIT="0", HUB_LOG_FORMAT="json")
        _hub(env, "demo", "init", "--seed")
        erp = make_engine(f"sqlite:///{Path(tmp) / 'var' / 'erp.db'}")
        try:
            user = ErpUser(erp, "warehouse")
            line = SimpleNamespace(product_code="ETAC-99", description="Ethyl acetate",
                                   quantity=Decimal(16000), unit_price=Decimal("1.25"),
                                   unit="kg")
            order, _ = user.enter_order("C00042", [line], reference="SO-BENCH-1")
            user.deliver(order, [(0, Decimal(16000), "B2611-0001")])
        finally:
            erp.dispose()
        token = _hub(env, "token", "create", "--customer", "C00042").strip().split()[-1]
        _hub(env, "certificate", "get", "B2611-0001", "--customer", "C00042",
             "-o", str(Path(tmp) / "first.pdf"))
        log = open(Path(tmp) / "daemon.log", "wb")  # noqa: SIM115 - closed below
        daemon = subprocess.Popen([sys.executable, "-m", "hub", "run", "--only", "http"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/api/v1/certificates/B2611-0001/pdf"
            headers = {"Authorization": f"Bearer {token}"}
            _wait_http(f"http://127.0.0.1:{port}/healthz")
            with httpx.Client(headers=headers) as client:
                for _ in range(20):  # warm-up
                    assert client.get(url).status_code == 200
            return _load(url, headers, seconds, clients)
        finally:
            daemon.terminate()
            daemon.wait(30)
            log.close()


def _load(url: str, headers: dict[str, str], seconds: float, clients: int
          ) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        mine: list[float] = []
        with httpx.Client(headers=headers) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                answer = http.get(url)
                mine.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200 and answer.content.startswith(b"%PDF")
        with lock:
            latencies.extend(mine)

    began = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, len(latencies) / (time.monotonic() - began)


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _p50(samples: list[float]) -> float:
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.certificates", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=2, help="concurrent HTTP clients")
    args = parser.parse_args(argv)
    count, seconds = (10, 5.0) if args.quick else (30, 20.0)

    say("warming up the renderer (fonts, CJK subset)")
    started = time.perf_counter()
    warm_up()
    say(f"renderer ready in {time.perf_counter() - started:.2f} s")
    rows = []
    for lang, label in (("en", "1-page English"), ("zh", "1-page Chinese/English")):
        naive = timed(naive_pdf, lang, count)
        hub = timed(render_pdf, lang, count)
        say(f"{label}: naive p50 {_p50(naive):.0f} ms, hub p50 {_p50(hub):.0f} ms")
        rows.append((f"render {label} (p50 of {count})", f"{_p50(naive):.0f} ms",
                     f"{_p50(hub):.0f} ms", f"{_p50(naive) / _p50(hub):.1f}x"))
    naive_en = _p50(timed(naive_pdf, "en", max(5, count // 3)))
    say(f"HTTP: {args.clients} clients for {seconds:.0f} s")
    latencies, rate = serve(seconds, args.clients)
    rows.append((f"stored PDF over HTTP, {args.clients} clients (p50)",
                 f"{naive_en:.0f} ms (a render per request)", f"{_p50(latencies):.1f} ms",
                 f"{naive_en / _p50(latencies):.0f}x"))
    rows.append(("stored PDF over HTTP, requests/s", f"{1000 / naive_en:.1f}/s at most",
                 f"{rate:,.0f}/s ({len(latencies):,} requests)",
                 f"{rate / (1000 / naive_en):.0f}x"))
    print()
    print("| measurement | naive baseline | hub | speed-up |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
