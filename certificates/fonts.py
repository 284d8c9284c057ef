"""The fonts a certificate is set in: which ones, the check that they are installed, and a
compact Chinese subset that makes Chinese pages fast.

The stylesheet names its families explicitly (no generic ``sans-serif``), so fontconfig
cannot quietly substitute another font and set the page differently on another machine:
DejaVu Sans for Latin text, Noto Sans CJK SC for Chinese (Debian ``fonts-dejavu-core`` and
``fonts-noto-cjk``). :func:`check_fonts` runs before the first render and names the package
to install when a family is missing.

Noto Sans CJK SC has 65,000 glyphs, and WeasyPrint subsets every font it embeds on every
render, which for this font costs ~70 ms a page. So at start-up :func:`cjk_subsets` cuts the
installed font down (``hb-subset``, Debian ``libharfbuzz-bin``, ~0.3 s) to the GB 2312
characters, Latin, Greek, punctuation and symbols: ~9,000 glyphs, the same outlines. The
stylesheet puts that subset (family :data:`CJK_SUBSET_FAMILY`, served from memory through the
renderer's URL fetcher) before the full font, so a rarer character still prints, from the
full font. Without ``hb-subset`` the pages look the same, only slower.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "CJK_SUBSET_FAMILY",
    "REQUIRED_FONTS",
    "FontFile",
    "FontsMissing",
    "check_fonts",
    "cjk_subsets",
    "font_face_css",
    "match_font",
]

#: Font family -> the Debian package that provides it (see scripts/setup.sh).
REQUIRED_FONTS: Mapping[str, str] = {
    "DejaVu Sans": "fonts-dejavu-core",
    "Noto Sans CJK SC": "fonts-noto-cjk",
}
CJK_FAMILY = "Noto Sans CJK SC"
CJK_SUBSET_FAMILY = "Certificate Sans CJK"
#: Asset name -> (CSS font-weight, fontconfig style) of the Chinese subset fonts.
_CJK_SUBSETS: Mapping[str, tuple[str, str]] = {
    "cjk-regular.otf": ("normal", "Regular"),
    "cjk-bold.otf": ("bold", "Bold"),
}
_TIMEOUT = 30.0


class FontsMissing(RuntimeError):
    """A font family the certificate stylesheet names is not installed."""


@dataclass(frozen=True)
class FontFile:
    """Where fontconfig finds a face: the file and the face's index in it (for .ttc files)."""

    path: str
    index: int


def match_font(family: str, style: str = "Regular") -> FontFile:
    """The installed face of ``family`` in ``style``; raises FontsMissing when there is none.

    Uses ``fc-match``, which always answers with *some* font, so the answer's family is
    checked against the one asked for.
    """
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        raise FontsMissing("fc-match not found: install the Debian package fontconfig")
    try:
        answer = subprocess.run(
            [fc_match, "--format", "%{file}\n%{index}\n%{family}", f"{family}:style={style}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=_TIMEOUT,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise FontsMissing(f"fc-match failed for {family!r}: {exc}") from exc
    path, index, families = ([*answer.split("\n", 2), "", ""])[:3]
    if family not in {name.strip() for name in families.split(",")}:
        package = REQUIRED_FONTS.get(family, "the package that provides it")
        raise FontsMissing(f"font {family!r} is not installed (apt-get install {package})")
    return FontFile(path=path, index=int(index or 0))


def check_fonts() -> None:
    """Raise FontsMissing, naming the package to install, unless every family is present."""
    for family in REQUIRED_FONTS:
        match_font(family)


def cjk_subsets() -> dict[str, bytes]:
    """The Chinese subset fonts by asset name, or {} when ``hb-subset`` is not installed.

    Raises FontsMissing when Noto Sans CJK SC is missing, or hb-subset fails on it.
    """
    hb_subset = shutil.which("hb-subset")
    if hb_subset is None:
        return {}
    text = _subset_text()
    processes = {}
    for name, (_, style) in _CJK_SUBSETS.items():
        face = match_font(CJK_FAMILY, style)
        processes[name] = subprocess.Popen(
            [
                hb_subset,
                f"--font-file={face.path}",
                f"--face-index={face.index}",
                "--no-hinting",
                "--name-IDs=*",
                f"--text={text}",
                "--output-file=/dev/stdout",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    fonts: dict[str, bytes] = {}
    for name, process in processes.items():
        try:
            out, err = process.communicate(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate()
            raise FontsMissing(f"hb-subset timed out on {CJK_FAMILY}") from exc
        if process.returncode or not out:
            message = err.decode(errors="replace").strip()
            raise FontsMissing(f"hb-subset failed on {CJK_FAMILY}: {message}")
        fonts[name] = out
    return fonts


def font_face_css(subsets: Iterable[str], url_prefix: str) -> str:
    """``@font-face`` rules for the subset fonts among ``subsets`` (asset names)."""
    rules = []
    for name in subsets:
        if name in _CJK_SUBSETS:
            weight = _CJK_SUBSETS[name][0]
            rules.append(
                f'@font-face {{ font-family: "{CJK_SUBSET_FAMILY}"; font-weight: {weight}; '
                f"src: url({url_prefix}{name}); }}"
            )
    return "\n".join(rules)


def _subset_text() -> str:
    """GB 2312 (the 6,763 common hanzi and its symbols), Latin, Greek and punctuation."""
    codepoints: set[int] = set()
    for low, high in (
        (0x20, 0x7E),  # ASCII
        (0xA0, 0x24F),  # Latin-1, Latin Extended-A and -B
        (0x370, 0x3FF),  # Greek, for units and names
        (0x2000, 0x22FF),  # punctuation, super/subscripts, letterlike, arrows, maths
        (0x3000, 0x303F),  # CJK punctuation
        (0xFF00, 0xFFEF),  # full-width forms
    ):
        codepoints.update(range(low, high + 1))
    for first in range(0xA1, 0xF8):
        for second in range(0xA1, 0xFF):
            try:
                codepoints.add(ord(bytes((first, second)).decode("gb2312")))
            except UnicodeDecodeError:
                continue
    return "".join(chr(code) for code in sorted(codepoints))
