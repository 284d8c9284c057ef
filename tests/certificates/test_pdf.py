"""The published PDF, rendered by the real WeasyPrint and read back with poppler and pypdf."""

from __future__ import annotations

import io
import logging
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import segno
from PIL import Image
from pypdf import PdfReader, PdfWriter

from certificates.attachment import AttachmentMissing, attachment_json
from certificates.data import CertificateData
from certificates.render import (
    AssetFetcher,
    CertificateRenderError,
    FetchRefused,
    render_pdf,
    warm_up,
)
from certificates.samples import sample_certificate
from tests.certificates.kit import (
    HOSTILE_TEXTS,
    failing_certificate,
    hostile_certificate,
    ink_fraction,
    long_certificate,
    page_png,
    pdffonts,
    pdftotext,
    recording_server,
    squash,
    word_boxes,
)


@pytest.fixture(scope="module")
def sample() -> CertificateData:
    return sample_certificate()


@pytest.fixture(scope="module")
def english(sample: CertificateData) -> bytes:
    return render_pdf(sample, "en")


@pytest.fixture(scope="module")
def chinese(sample: CertificateData) -> bytes:
    return render_pdf(sample, "zh")


def test_english_page_states_the_whole_certificate(
    english: bytes, sample: CertificateData, tmp_path: Path
) -> None:
    text = pdftotext(english, tmp_path)
    for expected in (
        "Certificate of Analysis",
        "Example Solvents Co., Ltd.",
        "Ethyl acetate 99.9%",
        "ETAC-99",
        "STANDARD",
        "B2611-0001",
        "2026-10-14",  # manufactured
        "2028-10-13",  # expiry
        "上海华谊精细化工有限公司",
        "C00042",
        "SO-2026-00417",
        "1047",
        "2026-10-20",
        "16,000 kg",
        "COA-B2611-0001-C00042-1",
        "Li Wang (QC Supervisor)",
        "2026-10-15 14:32 UTC",
        "The batch conforms to the specification.",
        "Page 1 of 1",
    ):
        assert expected in text, expected
    assert re.search(r"Version\s+1", text)
    rows = [line for line in text.splitlines() if "Pass" in line]
    assert len(rows) == len(sample.quality.results)
    for line in sample.quality.results:
        row = next(row for row in rows if row.strip().startswith(line.name_en))
        cells = re.split(r"\s{2,}", row.strip())
        assert cells[-1] == "Pass"
        assert cells[-2] == line.value
        assert line.method is not None and line.method in row
        if line.units:
            assert line.units in row
    assert re.search(r"Appearance\s+Visual, SOP QC-017\s+Clear\s+Clear\s+Pass", text)
    assert re.search(r"Water\s+ASTM E203\s+% \(m/m\)\s+≤ 0\.05\s+0\.020\s+Pass", text)
    assert re.search(r"Purity \(GC\)\s+GB/T 9722-2006\s+% \(m/m\)\s+≥ 99\.90\s+99\.95", text)
    density = r"Density at 20 °C\s+ASTM D4052\s+g/cm³\s+0\.897 \u2013 0\.902\s+0\.9003"
    assert re.search(density, text)


def test_chinese_page_is_bilingual(chinese: bytes, tmp_path: Path) -> None:
    text = pdftotext(chinese, tmp_path)
    for expected in (
        "质量检验报告单",
        "Certificate of Analysis",
        "乙酸乙酯",
        "Ethyl acetate 99.9%",
        "示例溶剂有限公司",
        "批号",
        "Batch No.",
        "生产日期",
        "有效期至",
        "纯度（气相色谱法）",  # noqa: RUF001
        "Purity (GC)",
        "合格",
        "本批产品经检验，符合标准要求。",  # noqa: RUF001
        "审核人",
        "Li Wang (QC Supervisor)",
        "第 1 页，共 1 页",  # noqa: RUF001
        "Page 1 of 1",
        "B2611-0001",
        "COA-B2611-0001-C00042-1",
    ):
        assert expected in text, expected


def test_failed_results_and_the_conclusion_say_so(tmp_path: Path) -> None:
    text = pdftotext(render_pdf(failing_certificate(), "en"), tmp_path)
    assert re.search(r"Water\s+ASTM E203\s+% \(m/m\)\s+≤ 0\.05\s+0\.081\s+Fail", text)
    assert re.search(r"Appearance\s+Visual, SOP QC-017\s+Clear\s+Hazy\s+Fail", text)
    assert "The batch does not conform to the specification." in text


def test_given_verdicts_are_printed(sample: CertificateData, tmp_path: Path) -> None:
    verdicts = {index: "n/a" for index in range(len(sample.quality.results))}
    text = pdftotext(render_pdf(sample, "en", verdicts=verdicts), tmp_path)
    assert "Pass" not in text
    assert "conformity is not assessed" in text


def test_a_new_version_names_the_one_it_supersedes(tmp_path: Path) -> None:
    text = pdftotext(render_pdf(sample_certificate(version=2), "en"), tmp_path)
    assert re.search(r"Supersedes\s+COA-B2611-0001-C00042-1", text)
    assert "COA-B2611-0001-C00042-2 · Version 2" in text


def test_certificate_without_delivery(sample: CertificateData, tmp_path: Path) -> None:
    data = sample.model_copy(update={"recipient": None})
    text = pdftotext(render_pdf(data, "en"), tmp_path)
    assert "Not issued for a particular delivery." in text


def test_long_results_table_continues_on_a_second_page(tmp_path: Path) -> None:
    pdf = render_pdf(long_certificate(40), "en")
    assert len(PdfReader(io.BytesIO(pdf)).pages) == 2
    first = pdftotext(pdf, tmp_path, 1, 1)
    second = pdftotext(pdf, tmp_path, 2, 2)
    assert "Page 1 of 2" in first and "Page 2 of 2" in second
    assert "COA-B2611-0001-C00042-1 · Version 1" in second
    assert "Parameter" in second and "Specification" in second  # the header repeats
    printed = re.findall(r"#(\d+)\s", first + second)
    assert sorted(map(int, printed)) == list(range(1, 41))
    chinese = render_pdf(long_certificate(40), "zh")
    pages = len(PdfReader(io.BytesIO(chinese)).pages)
    assert pages > 1
    footer = f"第 {pages} 页，共 {pages} 页 · Page {pages} of {pages}"  # noqa: RUF001
    assert footer in pdftotext(chinese, tmp_path, pages, pages)


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize(
    "make", [sample_certificate, failing_certificate, long_certificate, hostile_certificate]
)
def test_no_text_leaves_the_printable_area(make: Any, lang: str, tmp_path: Path) -> None:
    data = make(8000) if make is hostile_certificate else make()
    boxes = word_boxes(render_pdf(data, lang), tmp_path)
    assert boxes
    mm = 72 / 25.4
    width, height = 210 * mm, 297 * mm
    for _page, x0, y0, x1, y1, word in boxes:
        assert 16 * mm - 0.5 <= x0 and x1 <= width - 16 * mm + 0.5, word
        assert 14 * mm <= y0 and y1 <= height - 8 * mm, word


def test_json_attachment_is_the_certificate_data(
    english: bytes, chinese: bytes, sample: CertificateData
) -> None:
    for pdf in (english, chinese):
        embedded = attachment_json(pdf)
        assert embedded == sample.model_dump(mode="json")
        assert CertificateData.model_validate(embedded) == sample


def test_attachment_missing_is_reported() -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=100, height=100)
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(AttachmentMissing):
        attachment_json(buffer.getvalue())
    with pytest.raises(AttachmentMissing):
        attachment_json(b"not a pdf")


def test_pdfa_3u_identification_and_metadata(english: bytes, chinese: bytes) -> None:
    for pdf, lang in ((english, "en"), (chinese, "zh-Hans")):
        reader = PdfReader(io.BytesIO(pdf))
        assert reader.pdf_header == "%PDF-1.7"
        catalog: Any = reader.trailer["/Root"]
        xmp = catalog["/Metadata"].get_object().get_data().decode()
        assert re.search(r"pdfaid:part(>|=\")3", xmp)
        assert re.search(r"pdfaid:conformance(>|=\")U", xmp)
        assert catalog["/Lang"] == lang
        assert "/OutputIntents" in catalog
        # WeasyPrint lists the one file twice in /AF: from the name tree and the file spec.
        (filespec,) = {ref.idnum: ref.get_object() for ref in catalog["/AF"]}.values()
        assert filespec["/F"] == "certificate.json"
        assert filespec["/AFRelationship"] == "/Data"
        assert filespec["/EF"]["/F"].get_object()["/Subtype"] == "/application/json"
        metadata = reader.metadata
        assert metadata is not None
        assert metadata.title is not None and "COA-B2611-0001-C00042-1" in metadata.title
        assert metadata.author == "Example Solvents Co., Ltd."
    chinese_metadata = PdfReader(io.BytesIO(chinese)).metadata
    assert chinese_metadata is not None and "乙酸乙酯" in (chinese_metadata.title or "")


def test_pages_are_not_blank(english: bytes, chinese: bytes, tmp_path: Path) -> None:
    for pdf in (english, chinese):
        png = page_png(pdf, tmp_path, dpi=60)
        with Image.open(png) as image:
            width, height = image.size
        assert abs(width - 496) <= 1 and abs(height - 702) <= 1  # A4 at 60 dpi
        assert 0.03 < ink_fraction(png) < 0.5


def test_only_the_named_fonts_are_used_all_embedded(
    english: bytes, chinese: bytes, tmp_path: Path
) -> None:
    allowed = {
        "DejaVu-Sans", "DejaVu-Sans-Bold",
        "Certificate-Sans-CJK", "Certificate-Sans-CJK-Bold",
    }
    for pdf in (english, chinese):
        fonts = pdffonts(pdf, tmp_path)
        assert fonts and {name for name, _ in fonts} <= allowed
        assert {embedded for _, embedded in fonts} == {"yes"}
    assert {name for name, _ in pdffonts(chinese, tmp_path)} == {
        "Certificate-Sans-CJK", "Certificate-Sans-CJK-Bold",
    }


def test_rare_characters_fall_back_to_the_full_cjk_font(
    sample: CertificateData, tmp_path: Path
) -> None:
    assert sample.recipient is not None
    name = "王喆化工有限公司"  # 喆 is not in GB 2312, so not in the subset font
    recipient = sample.recipient.model_copy(update={"customer_name": name})
    pdf = render_pdf(sample.model_copy(update={"recipient": recipient}), "en")
    assert name in pdftotext(pdf, tmp_path)
    assert "Noto-Sans-CJK-SC-Bold" in {font for font, _ in pdffonts(pdf, tmp_path)}


def test_qr_code_encodes_the_verification_link(english: bytes, sample: CertificateData) -> None:
    page: Any = PdfReader(io.BytesIO(english)).pages[0]
    (image,) = [image.image for image in page.images if image.image is not None
                and image.image.size[0] == image.image.size[1]]
    assert image is not None
    code = segno.make(sample.issue.verify_url, error="m", micro=False)
    expected = [list(row) for row in code.matrix_iter(scale=1, border=4)]
    grey = image.convert("L")
    assert grey.size == (len(expected[0]), len(expected))
    printed = [
        [int(grey.getpixel((x, y)) < 128) for x in range(grey.size[0])]
        for y in range(grey.size[1])
    ]
    assert printed == expected
    links = {annot.get_object()["/A"]["/URI"] for annot in page["/Annots"]}
    assert links == {sample.issue.verify_url}  # one annotation per line of the link


def test_lims_text_prints_literally_and_fetches_nothing(tmp_path: Path) -> None:
    """Markup, template code and URLs in LIMS text print as text. The renders succeeding is
    itself proof that nothing was even asked for: the fetcher stops the render at any URL
    that is not a bundled asset (see the next test)."""
    with recording_server() as server:
        # The server answers, so a fetch by the renderer would have been recorded.
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/probe", timeout=5) as reply:
            assert reply.read() == b"fetched"
        server.requests.clear()
        data = hostile_certificate(server.port)
        pdfs = [render_pdf(data, lang) for lang in ("en", "zh")]
        assert server.requests == []
    text = squash(pdftotext(pdfs[0], tmp_path, raw=True))
    for hostile in (*HOSTILE_TEXTS, f'<imgsrc="http://127.0.0.1:{server.port}/img.png">'):
        assert squash(hostile) in text, hostile
    assert "root:" not in text and "fetched" not in text
    results = squash(pdftotext(pdfs[0], tmp_path, 1, 1).split("TEST RESULTS")[1])
    # {{ 7*7 }} was not evaluated (the server's random port, printed in a URL, may hold 49).
    assert "49" not in results.replace(f"127.0.0.1:{server.port}", "")
    assert attachment_json(pdfs[0]) == data.model_dump(mode="json")
    # The one raster image is the QR code (the logo is vector art).
    assert len(PdfReader(io.BytesIO(pdfs[0])).pages[0].images) == 1


def test_a_template_that_asks_for_any_other_url_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, sample: CertificateData
) -> None:
    import certificates.render as render

    with recording_server() as server:
        for url in (
            "file:///etc/passwd",
            f"http://127.0.0.1:{server.port}/logo.png",
            "data:image/png;base64,iVBORw0KGgo=",
            "coa-asset:../render.py",
        ):
            html = f'<html><body><img src="{url}"></body></html>'
            monkeypatch.setattr(render, "render_html", lambda *args, html=html, **kwargs: html)
            with pytest.raises(CertificateRenderError, match="refused"):
                render_pdf(sample, "en")
        assert server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "http://127.0.0.1:9/x",
        "https://example.com/logo.svg",
        "ftp://example.com/x",
        "data:text/css,body{}",
        "data:image/png;base64,iVBORw0KGgo=",
        "coa-asset:missing.svg",
        "coa-asset:../html.py",
        "logo.svg",
    ],
)
def test_asset_fetcher_refuses_everything_but_bundled_assets(url: str) -> None:
    fetcher = AssetFetcher({"logo.svg": b"<svg/>"})
    with pytest.raises(FetchRefused):
        fetcher.fetch(url)
    assert fetcher.fetch("coa-asset:logo.svg").read() == b"<svg/>"


def test_weasyprint_understands_the_whole_stylesheet(caplog: pytest.LogCaptureFixture) -> None:
    """WeasyPrint logs (and then ignores) CSS it does not support: there must be none."""
    with caplog.at_level(logging.WARNING, logger="weasyprint"):
        warm_up()
        render_pdf(long_certificate(40), "zh")
    assert [record.getMessage() for record in caplog.records] == []
