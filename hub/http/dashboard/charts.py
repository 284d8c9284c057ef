"""Charts as inline SVG, drawn on the server: no script, nothing fetched.

Colours come from classes that ``ops.css`` styles (``s-applied``, ``s-dead`` ...), so the
markup needs no inline styles (the dashboard's Content-Security-Policy allows none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

from hub.http.dashboard.readings import History

__all__ = ["latency_chart", "throughput_chart"]

WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 22, 24


def _nice(top: float) -> float:
    """A round axis maximum at or above ``top``."""
    if top <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(top))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= top:
            return float(step * power)
    return float(10 * power)


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2f}".rstrip("0")


def _frame(history: History, top: float, unit: str, title: str) -> list[str]:
    """The axes, grid, labels and an accessible title of a chart."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [f'<title>{escape(title)}</title>']
    for i in range(5):
        y = TOP + plot_h * i / 4
        value = top * (4 - i) / 4
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" '
                     f'y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{escape(_number(value))}</text>')
    parts.append(f'<text class="axis" x="{LEFT - 6}" y="{TOP - 10}" '
                 f'text-anchor="end">{escape(unit)}</text>')
    count = max(1, len(history.points))
    every = max(1, count // 6)
    for i in range(0, count + 1, every):
        x = LEFT + plot_w * i / count
        at = history.start + history.step * i
        anchor = "start" if i == 0 else ("end" if i == count else "middle")
        parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}" '
                     f'text-anchor="{anchor}">{at:%H:%M}</text>')
    return parts


def _svg(parts: Sequence[str], label: str) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
                  f'aria-label="{escape(label)}">'
                  + "".join(parts) + "</svg>")


def throughput_chart(history: History) -> Markup:
    """Stacked bars: messages applied per minute in each step, and those dead-lettered (red,
    on top)."""
    minutes = history.step.total_seconds() / 60.0
    rows = [(("applied", p.applied / minutes), ("dead", p.dead_lettered / minutes))
            for p in history.points]
    top = _nice(max((a + d for (_, a), (_, d) in rows), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(history, top, "/min", "Messages applied per minute")
    slot = plot_w / max(1, len(rows))
    for i, row in enumerate(rows):
        x, y = LEFT + slot * i + slot * 0.1, float(TOP + plot_h)
        for name, value in row:
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            start = history.points[i].start
            parts.append(f'<rect class="s-{name}" x="{x:.1f}" y="{y:.1f}" '
                         f'width="{slot * 0.8:.1f}" height="{h:.1f}"><title>{start:%H:%M} '
                         f'{name}: {escape(_number(value))}/min</title></rect>')
    return _svg(parts, "throughput")


def latency_chart(history: History) -> Markup:
    """Lines: median and 95th percentile latency per step, from the source's commit to the
    target's, in seconds."""
    medians = [p.latency.quantile(0.5) for p in history.points]
    p95s = [p.latency.quantile(0.95) for p in history.points]
    top = _nice(max((v for v in p95s if v is not None), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(history, top, "s", "Latency from source commit to target commit, seconds")
    slot = plot_w / max(1, len(history.points))
    for name, values in (("p95", p95s), ("p50", medians)):
        points: list[str] = []
        for i, value in enumerate(values):
            if value is None:
                continue
            x = LEFT + slot * (i + 0.5)
            y = TOP + plot_h - plot_h * min(value, top) / top
            points.append(f"{x:.1f},{y:.1f}")
            parts.append(f'<circle class="s-{name}" cx="{x:.1f}" cy="{y:.1f}" r="2.5">'
                         f'<title>{history.points[i].start:%H:%M} {name}: '
                         f'{value:.2f} s</title></circle>')
        if len(points) > 1:
            parts.append(f'<polyline class="line s-{name}" points="{" ".join(points)}"/>')
    return _svg(parts, "latency")
