"""What every console screen shares: the API, the employer's timezone and a periodic refresh."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, cast
from zoneinfo import ZoneInfo

from textual import on
from textual.screen import Screen
from textual.worker import Worker

if TYPE_CHECKING:
    from console.api import Api
    from console.app import ConsoleApp


class ApiScreen(Screen[None]):
    """A screen that shows API data and reloads it every `REFRESH_SECONDS` while it is active."""

    REFRESH_SECONDS: ClassVar[float] = 2.0

    @property
    def console(self) -> ConsoleApp:
        return cast("ConsoleApp", self.app)

    @property
    def api(self) -> Api:
        return self.console.api

    def local(self, when: datetime | None) -> str:
        """`when` in the employer's timezone, minute precision; '—' for no time."""
        if when is None:
            return "—"
        return when.astimezone(ZoneInfo(self.console.timezone)).strftime("%Y-%m-%d %H:%M")

    @on(Worker.StateChanged)
    def _forward_worker_state(self, event: Worker.StateChanged) -> None:
        # Worker.StateChanged does not bubble: hand it to the app's single error handler.
        self.console.handle_worker_state(event)

    def local_short(self, when: datetime | None) -> str:
        """`when` in the employer's timezone as 'MM-DD HH:MM' (narrow columns); '' for no time."""
        if when is None:
            return ""
        return when.astimezone(ZoneInfo(self.console.timezone)).strftime("%m-%d %H:%M")

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(self.REFRESH_SECONDS * self.console.refresh_scale, self._tick)

    def on_screen_resume(self) -> None:
        self.reload()

    def _tick(self) -> None:
        # Only the screen the operator is looking at polls; a covered screen catches up on resume.
        if self.is_current:
            self.reload()

    def reload(self) -> None:
        """Start loading this screen's data (a worker); subclasses override."""
