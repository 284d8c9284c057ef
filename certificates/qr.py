"""The verification link as a QR code, embedded in the page as a PNG ``data:`` URI.

A PNG of one pixel per module, scaled up without smoothing (``image-rendering: pixelated``),
prints as crisply as vector art and costs WeasyPrint ~1 ms, where the same code as inline SVG
cost ~25 ms a page (WeasyPrint parses and draws SVG paths in Python). The URI is made here and
nowhere else, and the renderer's URL fetcher serves exactly this URI for this certificate and
refuses every other ``data:`` URI.
"""

from __future__ import annotations

import base64
import functools

import segno

__all__ = ["decode_png_data_uri", "qr_png", "qr_png_data_uri"]

_PREFIX = "data:image/png;base64,"


@functools.lru_cache(maxsize=64)
def qr_png(url: str) -> bytes:
    """``url`` as a QR code (error correction M, four modules of quiet zone), as PNG bytes."""
    data_uri = segno.make(url, error="m", micro=False).png_data_uri(scale=1, border=4)
    return decode_png_data_uri(data_uri)


def qr_png_data_uri(url: str) -> str:
    """``url`` as a QR code in a ``data:image/png;base64,`` URI."""
    return _PREFIX + base64.b64encode(qr_png(url)).decode("ascii")


def decode_png_data_uri(uri: str) -> bytes:
    """The bytes of a base64 PNG ``data:`` URI; raises ValueError for anything else."""
    if not uri.startswith(_PREFIX):
        raise ValueError("not a base64 PNG data: URI")
    return base64.b64decode(uri[len(_PREFIX) :], validate=True)
