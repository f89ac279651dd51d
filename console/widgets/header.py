"""The header: title, and a clock on the employer's clock (Textual's own clock shows the machine's local time)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from textual.app import ComposeResult, RenderResult
from textual.widgets import Header
from textual.widgets._header import HeaderClockSpace, HeaderIcon, HeaderTitle

from console.clock import clock_text, utc_now


class EmployerClock(HeaderClockSpace):
    """'14:05 SAST': the time where the employer is, as every time in the tables is shown."""

    DEFAULT_CSS = """
    EmployerClock {
        width: auto;
        background: $foreground-darken-1 5%;
        color: $foreground;
        text-opacity: 85%;
    }
    """

    def on_mount(self) -> None:
        # Minutes are shown; a refresh a second keeps the change of minute within a second of the real one.
        self._shown = self.text()
        self.set_interval(1, self._tick)

    def _tick(self) -> None:
        # `width: auto` is measured at layout only: when the text changes length ('12:00 UTC' until /me answers,
        # then '14:00 SAST'; a DST change), lay out again, or the zone is cut off.
        text = self.text()
        self.refresh(layout=len(text) != len(self._shown))
        self._shown = text

    def text(self) -> str:
        app = self.app
        now: Callable[[], datetime] = getattr(app, "now", utc_now)
        return clock_text(now(), str(getattr(app, "timezone", "UTC")))

    def render(self) -> RenderResult:
        return self.text()


class ConsoleHeader(Header):
    """Textual's Header with EmployerClock in place of its clock."""

    def compose(self) -> ComposeResult:
        yield HeaderIcon().data_bind(Header.icon)
        yield HeaderTitle()
        yield EmployerClock()
