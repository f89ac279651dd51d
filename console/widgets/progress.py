"""A one-line stacked bar of delivery outcomes, for DataTable cells."""

from __future__ import annotations

from rich.text import Text

from bot import contracts

# Order matters: the bar reads left to right from best to worst outcome, with what is still to come last.
_SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("read", "█", "green"),
    ("delivered", "█", "green3"),
    ("sent", "█", "cyan"),
    ("failed", "█", "red"),
    ("unknown", "█", "yellow"),
    ("skipped", "░", "grey50"),
    ("cancelled", "░", "grey50"),
    ("sending", "▒", "blue"),
    ("pending", "·", "grey50"),
)


def delivery_bar(counts: contracts.Counts, width: int = 12) -> Text:
    """Render `counts` as a bar `width` cells wide; every non-zero status gets at least one cell."""
    total = counts.total
    if total <= 0:
        return Text("—".ljust(width), style="grey50")
    values = [(getattr(counts, name), char, style) for name, char, style in _SEGMENTS]
    cells = [max(1, round(v * width / total)) if v else 0 for v, _, _ in values]
    # Rounding (and the one-cell minimum) can overshoot: take the excess from the widest segments.
    while sum(cells) > width:
        widest = max(range(len(cells)), key=lambda i: cells[i])
        cells[widest] -= 1
    if sum(cells) < width:
        widest = max(range(len(cells)), key=lambda i: cells[i])
        cells[widest] += width - sum(cells)
    bar = Text()
    for n, (_, char, style) in zip(cells, values, strict=True):
        if n:
            bar.append(char * n, style=style)
    return bar


def acknowledged_pct(counts: contracts.Counts) -> str:
    """Acknowledged share of the audience, e.g. '42%'; '—' before there is an audience."""
    if counts.total <= 0:
        return "—"
    return f"{100 * counts.acknowledged // counts.total}%"
