"""Helpers for the certificate tests: sample data with a twist, and reading PDFs back with
poppler (``pdftotext``, ``pdftoppm``, ``pdffonts``) as a customer's viewer would."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from certificates.data import CertificateData, ResultLine
from certificates.samples import sample_certificate, sample_results


def pdftotext(
    pdf: bytes, tmp_path: Path, first: int | None = None, last: int | None = None, *,
    raw: bool = False,
) -> str:
    """The text of ``pdf`` (pages ``first``..``last``) laid out as on the page, or with
    ``raw`` in drawing order (each table cell's lines together)."""
    source = tmp_path / "in.pdf"
    source.write_bytes(pdf)
    pages = []
    if first is not None:
        pages += ["-f", str(first)]
    if last is not None:
        pages += ["-l", str(last)]
    return subprocess.run(
        ["pdftotext", "-raw" if raw else "-layout", "-enc", "UTF-8", *pages, str(source), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def word_boxes(pdf: bytes, tmp_path: Path) -> list[tuple[int, float, float, float, float, str]]:
    """(page, x min, y min, x max, y max, word) in points for every word ``pdftotext`` finds."""
    source = tmp_path / "boxes.pdf"
    source.write_bytes(pdf)
    html = subprocess.run(
        ["pdftotext", "-bbox", "-enc", "UTF-8", str(source), "-"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    boxes = []
    for number, page in enumerate(html.split("<page ")[1:], start=1):
        for match in re.finditer(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>',
            page,
        ):
            x0, y0, x1, y1 = (float(value) for value in match.groups()[:4])
            boxes.append((number, x0, y0, x1, y1, match.group(5)))
    return boxes


def squash(text: str) -> str:
    """``text`` without any whitespace, to find strings that a table cell wrapped."""
    return re.sub(r"\s+", "", text)


def page_png(pdf: bytes, tmp_path: Path, page: int = 1, dpi: int = 60) -> Path:
    source = tmp_path / "page.pdf"
    source.write_bytes(pdf)
    prefix = tmp_path / f"page-{page}"
    subprocess.run(
        ["pdftoppm", "-png", "-r", str(dpi), "-f", str(page), "-l", str(page),
         "-singlefile", str(source), str(prefix)],
        check=True,
        timeout=60,
    )
    return prefix.with_suffix(".png")


def ink_fraction(png: Path) -> float:
    """The share of pixels that are clearly not white."""
    with Image.open(png) as image:
        grey = image.convert("L")
        histogram = grey.histogram()
    dark = sum(histogram[:200])
    return dark / sum(histogram)


def pdffonts(pdf: bytes, tmp_path: Path) -> list[tuple[str, str]]:
    """(font name without subset prefix, "yes"/"no" embedded) for each font in ``pdf``."""
    source = tmp_path / "fonts.pdf"
    source.write_bytes(pdf)
    out = subprocess.run(
        ["pdffonts", str(source)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    fonts = []
    for line in out.splitlines()[2:]:
        parts = line.split()
        name = parts[0].split("+", 1)[-1]
        embedded = parts[-5]
        fonts.append((name, embedded))
    return fonts


def long_certificate(lines: int = 40) -> CertificateData:
    """A certificate whose results table needs two pages."""
    base = sample_results()
    results = []
    for number in range(lines):
        line = base[number % len(base)]
        results.append(
            line.model_copy(
                update={"name_en": f"{line.name_en} #{number + 1}", "order": number}
            )
        )
    return sample_certificate(results=tuple(results))


def failing_certificate() -> CertificateData:
    """ETAC-99 with water above its limit (0.05) and a hazy appearance."""
    results = []
    for line in sample_results():
        if line.component == "WATER":
            line = line.model_copy(update={"value": "0.081", "numeric": Decimal("0.081")})
        elif line.component == "APPEARANCE":
            line = line.model_copy(update={"value": "Hazy"})
        results.append(line)
    return sample_certificate(results=tuple(results))


def hostile_certificate(port: int) -> CertificateData:
    """LIMS text that would be code or fetch something if it were not treated as data."""
    local = f"http://127.0.0.1:{port}"
    texts = {
        "template": "{{ 7*7 }}{% raw %}",
        "script": "<script>alert(1)</script>",
        "file": '<img src="file:///etc/passwd">',
        "http": f'<img src="{local}/img.png"><link rel="stylesheet" href="{local}/x.css">',
        "css": f'<div style="background: url({local}/bg.png)">x</div>',
    }
    results: list[ResultLine] = list(sample_results())
    results[0] = results[0].model_copy(
        update={"name_en": texts["template"], "value": texts["template"],
                "text_value": texts["template"]}
    )
    results[1] = results[1].model_copy(update={"name_en": texts["script"], "method": texts["file"]})
    results[2] = results[2].model_copy(update={"units": texts["css"], "value": "0.020"})
    data = sample_certificate(results=tuple(results))
    quality = data.quality.model_copy(
        update={"product_name_en": texts["http"], "reviewer": texts["file"],
                "grade": texts["css"], "sample_text_id": texts["script"]}
    )
    assert data.recipient is not None
    recipient = data.recipient.model_copy(update={"customer_name": texts["http"]})
    issue = data.issue.model_copy(update={"verify_url": f"{local}/verify/abc"})
    return data.model_copy(update={"quality": quality, "recipient": recipient, "issue": issue})


HOSTILE_TEXTS = (
    "{{ 7*7 }}{% raw %}",
    "<script>alert(1)</script>",
    '<img src="file:///etc/passwd">',
)


@dataclass
class Recorder:
    """A local HTTP server's address and every request it got."""

    port: int
    requests: list[str] = field(default_factory=list)


@contextmanager
def recording_server() -> Iterator[Recorder]:
    """A tiny HTTP server on 127.0.0.1 that records each request and answers with a PNG."""
    recorder = Recorder(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorder.requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"fetched")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
