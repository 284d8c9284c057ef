"""Publish a certificate as a PDF/A-3u file. The only module that imports WeasyPrint.

The PDF embeds the certificate data as ``certificate.json`` (see
:mod:`certificates.attachment`) and carries its title, author and language as metadata.

What the renderer may fetch, through :class:`AssetFetcher`: the files bundled in
``certificates/assets`` and the Chinese subset fonts (:mod:`certificates.fonts`), named by
``coa-asset:NAME`` URLs, and the one ``data:`` URI of this certificate's own QR code
(:mod:`certificates.qr`). Every other URL is refused: ``file:``, ``http(s):``, ``ftp:``, any
other ``data:`` URI. A refused URL stops the render with :class:`CertificateRenderError`
rather than printing a page with a hole in it: the templates autoescape every value, so text
from the LIMS cannot produce a URL, and a refusal means a template bug that should be loud.

What is cached across renders, once per process (built on first use, not at import): the font
configuration with the subset fonts, the parsed stylesheet, the asset bytes and the parsed
templates. WeasyPrint and Pango are not known to be safe across threads sharing a font
configuration, so renders run one at a time under a lock (a page takes ~0.1-0.2 s).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes
import threading
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from weasyprint import CSS, HTML, Attachment
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

from certificates.attachment import ATTACHMENT_NAME
from certificates.data import CertificateData
from certificates.fonts import check_fonts, cjk_subsets, font_face_css
from certificates.html import DEMO_LETTERHEAD, Letterhead, render_html
from certificates.qr import decode_png_data_uri, qr_png_data_uri
from hub.errors import PermanentError

__all__ = [
    "ASSETS",
    "ASSET_SCHEME",
    "PDF_VARIANT",
    "AssetFetcher",
    "CertificateRenderError",
    "FetchRefused",
    "render_pdf",
    "warm_up",
]

ASSETS = Path(__file__).parent / "assets"
ASSET_SCHEME = "coa-asset"
PDF_VARIANT = "pdf/a-3u"
STYLESHEET = "certificate.css"
OUTPUT_INTENT = "--srgb"
_SRGB_ASSET = "srgb.icc"


class CertificateRenderError(PermanentError):
    """The certificate could not be rendered (a refused fetch, a layout failure)."""

    code = "certificate_render"


class FetchRefused(ValueError):
    """A URL that is not a bundled asset: the renderer never fetches it."""


class AssetFetcher(URLFetcher):  # type: ignore[misc]  # WeasyPrint is untyped
    """Serves ``coa-asset:NAME`` from the bundled assets, and the one QR code ``data:`` URI
    it was made for; refuses every other URL.

    ``fail_on_errors`` makes WeasyPrint stop the render at a refusal instead of logging a
    warning and leaving the resource out.
    """

    def __init__(self, assets: Mapping[str, bytes], qr_uri: str | None = None) -> None:
        super().__init__(
            timeout=1,
            allowed_protocols=(ASSET_SCHEME, "data"),
            allow_redirects=False,
            fail_on_errors=True,
        )
        self._assets = assets
        self._qr_uri = qr_uri

    def for_qr(self, qr_uri: str) -> AssetFetcher:
        """A fetcher for one render: the same assets, and this certificate's QR code."""
        return AssetFetcher(self._assets, qr_uri)

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> Any:
        if self._qr_uri is not None and url == self._qr_uri:
            return URLFetcherResponse(
                "data:", body=decode_png_data_uri(url), headers={"Content-Type": "image/png"}
            )
        scheme, _, name = url.partition(":")
        if scheme.lower() != ASSET_SCHEME or name not in self._assets:
            raise FetchRefused(f"refused to fetch {url[:120]!r}: only bundled assets are served")
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = {"Content-Type": content_type}
        return URLFetcherResponse(
            f"{ASSET_SCHEME}:{name}", body=self._assets[name], headers=headers
        )


class _Renderer:
    """What every render shares: fonts, the parsed stylesheet, the assets, a lock."""

    def __init__(self) -> None:
        check_fonts()
        assets = {path.name: path.read_bytes() for path in ASSETS.iterdir() if path.is_file()}
        subsets = cjk_subsets()
        assets.update(subsets)
        # PDF/A needs an output intent. WeasyPrint's own "srgb" reads its sRGB profile on
        # every render and leaves the file open; declared once here, the profile is parsed
        # once and shared.
        assets[_SRGB_ASSET] = (resources.files("weasyprint.pdf") / "sRGB2014.icc").read_bytes()
        self.fetcher = AssetFetcher(assets)
        self.fonts = FontConfiguration()
        self.color_profiles: dict[str, Any] = {}
        css = "\n".join(
            (
                f"@color-profile {OUTPUT_INTENT} {{ src: url({ASSET_SCHEME}:{_SRGB_ASSET}); "
                "components: r, g, b; }",
                font_face_css(subsets, f"{ASSET_SCHEME}:"),
                assets[STYLESHEET].decode(),
            )
        )
        self.stylesheet = CSS(
            string=css,
            font_config=self.fonts,
            color_profiles=self.color_profiles,
            url_fetcher=self.fetcher,
        )
        if OUTPUT_INTENT not in self.color_profiles:
            raise CertificateRenderError("the sRGB output intent profile did not load")
        self.lock = threading.Lock()


_BUILD_LOCK = threading.Lock()
_RENDERERS: list[_Renderer] = []


def _renderer() -> _Renderer:
    """The process's one renderer, built on first use (by one thread, if several ask)."""
    with _BUILD_LOCK:
        if not _RENDERERS:
            _RENDERERS.append(_Renderer())
        return _RENDERERS[0]


def warm_up() -> None:
    """Build the shared renderer and lay out a page in each language, so the first real
    render is not the slow one (fontconfig and Pango load their fonts lazily).

    Raises FontsMissing when the certificate fonts are not installed.
    """
    # Imported here: the samples pull in the demo data, which a render never needs.
    from certificates.samples import sample_certificate

    for lang in ("en", "zh"):
        render_pdf(sample_certificate(), lang)


def render_pdf(
    data: CertificateData,
    lang: str = "en",
    *,
    verdicts: Mapping[int, str] | None = None,
    letterhead: Letterhead = DEMO_LETTERHEAD,
) -> bytes:
    """The certificate as PDF/A-3u bytes, with ``certificate.json`` embedded.

    ``verdicts`` as for :func:`certificates.html.render_html`. Raises ValueError for an
    unknown language or unfitting verdicts, CertificateRenderError when rendering fails, and
    FontsMissing (on first use) when the certificate fonts are not installed.
    """
    html = render_html(data, lang, verdicts=verdicts, letterhead=letterhead)
    renderer = _renderer()
    fetcher = renderer.fetcher.for_qr(qr_png_data_uri(data.issue.verify_url))
    issued = _utc_naive(data.issue.issued_at)
    attachment = Attachment(
        string=data.model_dump_json().encode("utf-8"),
        name=ATTACHMENT_NAME,
        description=f"Certificate data (CertificateData, schema {data.schema_version})",
        created=issued,
        modified=issued,
        relationship="Data",
        url_fetcher=fetcher,
    )
    identifier = hashlib.sha256(
        f"{data.issue.number}\n{data.issue.version}\n{lang}".encode()
    ).hexdigest()[:32]
    with renderer.lock:
        try:
            pdf = HTML(string=html, url_fetcher=fetcher).write_pdf(
                stylesheets=[renderer.stylesheet],
                font_config=renderer.fonts,
                color_profiles=renderer.color_profiles,
                output_intent=OUTPUT_INTENT,
                pdf_variant=PDF_VARIANT,
                pdf_identifier=identifier.encode("ascii"),
                attachments=[attachment],
            )
        except FatalURLFetchingError as exc:
            raise CertificateRenderError(
                f"certificate {data.issue.number}: {exc} ({exc.__cause__})"
            ) from exc
        except Exception as exc:  # WeasyPrint's own failures: retrying cannot help
            raise CertificateRenderError(
                f"certificate {data.issue.number}: rendering failed: {exc!r}"
            ) from exc
    if not isinstance(pdf, bytes):  # pragma: no cover - write_pdf returns bytes without target
        raise CertificateRenderError("WeasyPrint returned no PDF")
    return pdf


def _utc_naive(moment: dt.datetime) -> dt.datetime:
    """WeasyPrint writes attachment dates as UTC ("...Z") from naive datetimes."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)
