"""An announcement at a glance: the funnel from audience to acknowledged, and how reads and acks arrived in time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Label, Sparkline

from bot import contracts
from console.clock import zone_label

_LABEL = 13
_EIGHTHS = " ▏▎▍▌▋▊▉"


def funnel_steps(counts: contracts.Counts) -> list[tuple[str, int]]:
    """(step, deliveries that got at least that far). Statuses only move forward, so a read delivery was also
    sent and delivered; acknowledgements are counted as the API counts them."""
    delivered = counts.delivered + counts.read
    return [
        ("audience", counts.total),
        ("sent", counts.sent + delivered),
        ("delivered", delivered),
        ("read", counts.read),
        ("acknowledged", counts.acknowledged),
    ]


def bar(value: int, total: int, width: int) -> str:
    """`value` of `total` as a bar `width` cells long, in eighths of a cell."""
    if total <= 0 or width <= 0:
        return ""
    eighths = round(8 * width * min(value, total) / total)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


_STYLES = {"audience": "grey62", "sent": "cyan", "delivered": "green3", "read": "green", "acknowledged": "magenta"}


class Funnel(Widget):
    """Five bars, audience → sent → delivered → read → acknowledged, each with its number and share."""

    DEFAULT_CSS = """
    Funnel { height: 5; }
    """

    counts: reactive[contracts.Counts | None] = reactive(None)

    def render(self) -> RenderResult:
        counts = self.counts
        if counts is None:
            return "loading…"
        steps = funnel_steps(counts)
        total = counts.total
        numbers = [f" {n:,} {100 * n // total if total else 0:>3}%" for _, n in steps]
        room = max(1, self.size.width - _LABEL - max(len(s) for s in numbers))
        text = Text(no_wrap=True, overflow="ellipsis")
        for (name, n), number in zip(steps, numbers, strict=True):
            if text:
                text.append("\n")
            text.append(name.ljust(_LABEL), style="bold" if name == "acknowledged" else "")
            drawn = bar(n, total, room)
            text.append(drawn.ljust(room), style=_STYLES[name])
            text.append(number)
        return text


def series(
    points: Sequence[contracts.TimelinePoint], bucket: str, field: str
) -> tuple[list[float], datetime | None, datetime | None]:
    """One number per bucket from the first point to the last, empty buckets as 0 (the API leaves them out),
    with a 0 before the first so a sparkline shows the rise; and the first and last bucket's start."""
    if not points:
        return [], None, None
    step = timedelta(minutes=1) if bucket == "minute" else timedelta(hours=1)
    by_start = {p.at: getattr(p, field) for p in points}
    first, last = points[0].at, points[-1].at
    values: list[float] = [0.0]
    at = first
    # Bounded: hours are asked for once an announcement is older than a few hours (see the detail screen).
    while at <= last and len(values) < 10_000:
        values.append(float(by_start.get(at, 0)))
        at += step
    return values, first, last


class TimelineView(Vertical):
    """Reads and acknowledgements per minute (or hour) as sparklines, with the time span they cover."""

    DEFAULT_CSS = """
    TimelineView { height: auto; }
    TimelineView > Horizontal { height: 1; }
    TimelineView .spark-label { width: 6; }
    TimelineView Sparkline { width: 1fr; }
    TimelineView #timeline-span { color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label("read", classes="spark-label")
            yield Sparkline([], id="reads-spark")
        with Horizontal():
            yield Label("ack", classes="spark-label")
            yield Sparkline([], id="acks-spark")
        yield Label("", id="timeline-span")

    def show(self, timeline: contracts.Timeline | None, timezone: str) -> None:
        """Draw `timeline` (None: the server has no timeline endpoint) with times on the employer's clock."""
        span = self.query_one("#timeline-span", Label)
        reads = self.query_one("#reads-spark", Sparkline)
        acks = self.query_one("#acks-spark", Sparkline)
        if timeline is None:
            reads.data, acks.data = [], []
            span.update("no timeline from this server")
            return
        reads.data, first, last = series(timeline.points, timeline.bucket, "read")
        acks.data, _, _ = series(timeline.points, timeline.bucket, "acknowledged")
        if first is None or last is None:
            span.update("nothing sent yet")
            return
        tz = ZoneInfo(timezone)
        fmt = "%H:%M" if first.astimezone(tz).date() == last.astimezone(tz).date() else "%m-%d %H:%M"
        span.update(
            f"{first.astimezone(tz):{fmt}} → {last.astimezone(tz):{fmt}} {zone_label(timezone, last)}, "
            f"per {timeline.bucket}"
        )
