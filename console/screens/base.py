"""What the console's screens share: the session the app lends them, local times, a periodic refresh, paging."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar
from zoneinfo import ZoneInfo

from textual import on
from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen, ScreenResultType
from textual.worker import Worker, WorkerState

from console.api import Api
from console.clock import utc_now
from console.messages import WorkerFinished
from console.paging import Pager


@dataclass
class Session:
    """What the app lends every screen: the API, the employer's timezone, the refresh pace."""

    api: Api
    # UTC until /me answers; the app then sets the employer's timezone and reloads the current screen.
    timezone: str = "UTC"
    # Tests shrink every screen's refresh period with this; 1.0 is the real cadence (~2 s for lists).
    refresh_scale: float = 1.0
    # What time it is (UTC): the header's clock, "is this send time in the past?". Tests fix it.
    clock: Callable[[], datetime] = utc_now


class ApiScreen(Screen[ScreenResultType]):
    """A screen that talks to the API of its session; its workers' outcomes go up to the app as messages."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    @property
    def api(self) -> Api:
        return self.session.api

    def now(self) -> datetime:
        """What time it is (UTC), from the session's clock."""
        return self.session.clock()

    def local(self, when: datetime | None) -> str:
        """`when` in the employer's timezone, minute precision; '—' for no time."""
        if when is None:
            return "—"
        return when.astimezone(ZoneInfo(self.session.timezone)).strftime("%Y-%m-%d %H:%M")

    def local_short(self, when: datetime | None) -> str:
        """`when` in the employer's timezone as 'MM-DD HH:MM' (narrow columns); '' for no time."""
        if when is None:
            return ""
        return when.astimezone(ZoneInfo(self.session.timezone)).strftime("%m-%d %H:%M")

    @on(Worker.StateChanged)
    def _report_worker(self, event: Worker.StateChanged) -> None:
        # Worker.StateChanged does not bubble: restate the outcome as a message that reaches the app.
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self.post_message(WorkerFinished(event.worker))


class RefreshingScreen(ApiScreen[None]):
    """A screen of API data that reloads every `REFRESH_SECONDS` while it is the one shown."""

    REFRESH_SECONDS: ClassVar[float] = 2.0

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(self.REFRESH_SECONDS * self.session.refresh_scale, self._tick)

    def on_screen_resume(self) -> None:
        self.reload()

    def _tick(self) -> None:
        # Only the screen the operator is looking at polls; a covered screen catches up on resume.
        if self.is_current:
            self.reload()

    def reload(self) -> None:
        """Start loading this screen's data (a worker); subclasses override."""

    def commands(self) -> Iterable[SystemCommand]:
        """This screen's entries for the command palette (its keys, some of which the footer has no room for)."""
        return ()


class PagedScreen(RefreshingScreen):
    """A refreshing screen of one keyset-paginated list: `]` and `[` move through its pages (`pager`)."""

    # Not in the footer (no room at 80 columns): the command palette names them (`page_commands`).
    BINDINGS = [  # noqa: RUF012
        Binding("right_square_bracket", "next_page", "Next page", show=False, key_display="]"),
        Binding("left_square_bracket", "previous_page", "Previous page", show=False, key_display="["),
    ]

    pager: Pager

    def action_next_page(self) -> None:
        """The next (older) page."""
        if self.pager.forward():
            self.reload()
        else:
            self.notify("This is the last page.", timeout=3)

    def action_previous_page(self) -> None:
        """The previous (newer) page."""
        if self.pager.back():
            self.reload()

    def page_commands(self, next_help: str, previous_help: str) -> Iterable[SystemCommand]:
        """The command palette's entries for `]` and `[`, described in this list's words."""
        yield SystemCommand("Next page", next_help, self.action_next_page)
        yield SystemCommand("Previous page", previous_help, self.action_previous_page)
