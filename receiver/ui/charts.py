"""Charts as SVG markup, rendered on the server (no chart library in the browser). Pure.

Every number and label goes through ``markupsafe.escape``; the result is ``Markup`` so that
the templates embed it as is while their autoescape stays on for everything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

_WIDTH, _HEIGHT = 600, 220
_PAD_LEFT, _PAD_BOTTOM, _PAD_TOP = 36, 28, 12
_MAX_SINGLE_BARS = 21
_BINS = 10


def score_bins(counts: Mapping[int, int]) -> list[tuple[str, int]]:
    """Histogram bars: one per score over a short range, else ``_BINS`` equal ranges."""
    if not counts:
        return []
    low, high = min(counts), max(counts)
    if high - low + 1 <= _MAX_SINGLE_BARS:
        return [(str(score), counts.get(score, 0)) for score in range(low, high + 1)]
    step = -(-(high - low + 1) // _BINS)
    bins: list[tuple[str, int]] = []
    for start in range(low, high + 1, step):
        end = min(start + step - 1, high)
        total = sum(n for score, n in counts.items() if start <= score <= end)
        bins.append((f"{start}\u2013{end}", total))
    return bins


def histogram_svg(counts: Mapping[int, int], *, title: str) -> Markup:
    """Vertical bars of how many results got each score."""
    bins = score_bins(counts)
    if not bins:
        return Markup('<p class="empty">No completed results with a score yet.</p>')
    peak = max(n for _, n in bins) or 1
    plot_w = _WIDTH - _PAD_LEFT
    plot_h = _HEIGHT - _PAD_BOTTOM - _PAD_TOP
    slot = plot_w / len(bins)
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
        f'<text class="axis" x="0" y="{_PAD_TOP + 8}">{peak}</text>',
        f'<line class="base" x1="{_PAD_LEFT}" y1="{_PAD_TOP + plot_h}" '
        f'x2="{_WIDTH}" y2="{_PAD_TOP + plot_h}"/>',
    ]
    for index, (label, n) in enumerate(bins):
        height = plot_h * n / peak
        x = _PAD_LEFT + index * slot + slot * 0.1
        y = _PAD_TOP + plot_h - height
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{height:.1f}"><title>score {escape(label)}: {n}</title></rect>'
        )
        if n:
            parts.append(
                f'<text class="count" x="{x + slot * 0.4:.1f}" y="{y - 3:.1f}" '
                f'text-anchor="middle">{n}</text>'
            )
        parts.append(
            f'<text class="axis" x="{x + slot * 0.4:.1f}" y="{_HEIGHT - 8}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it is a number or escaped


def bars_svg(items: Sequence[tuple[str, int]], *, title: str) -> Markup:
    """Horizontal bars with a label and a count each (deliveries by outcome)."""
    if not items:
        return Markup('<p class="empty">Nothing in this window.</p>')
    peak = max(n for _, n in items) or 1
    # Narrower than the histogram: the text stays legible in a third of a laptop screen.
    width, row, label_w = 360, 26, 120
    height = row * len(items) + 4
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for index, (label, n) in enumerate(items):
        y = index * row + 4
        bar = (width - label_w - 50) * n / peak
        css = "bar warn" if label == "stored-unparsed" else "bar"
        parts.append(f'<text class="axis" x="0" y="{y + 15}">{escape(label)}</text>')
        parts.append(
            f'<rect class="{css}" x="{label_w}" y="{y}" width="{bar:.1f}" height="{row - 8}"/>'
        )
        parts.append(f'<text class="count" x="{label_w + bar + 6:.1f}" y="{y + 15}">{n}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it is a number or escaped
