"""The operator console: `make_console(api)` builds the Textual app over any `Api` (real or fake)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from bot import contracts
from console.api import Api, ApiError, ApiUnreachable
from console.clock import utc_now
from console.messages import (
    AnnouncementSelected,
    CancelRequested,
    ConversationRequested,
    ResendUnknownRequested,
    WorkerFinished,
)
from console.screens import (
    AnnouncementScreen,
    AnnouncementsScreen,
    ComposeScreen,
    ConfirmScreen,
    EmployeesScreen,
    InboxScreen,
)
from console.screens.base import RefreshingScreen, Session
from console.screens.conversation import ConversationScreen
from console.widgets.sender import sender_details

# Worker groups of the periodic loaders; user actions (cancel, resend) always get their own notice.
REFRESH_GROUPS = frozenset(
    {"me", "sender", "announcements", "announcement", "employees", "inbox", "compose-audience", "compose-search"}
    | {"conversation"}
)
# Worker groups whose failures the screen explains where they happened (the compose dialog's error line, which
# the operator is looking at; the template list's status line): the app only follows the connection state, and says
# when it changes.
EXPLAINED_GROUPS = frozenset({"compose-submit", "compose-templates"}) | {
    # The remind and export dialogs' error lines, and the line under a conversation's reply box.
    "remind-submit",
    "export",
    "conversation-send",
}
# How often the sender line is reloaded: as often as the lists, since a back-off often lasts only seconds.
SENDER_REFRESH_SECONDS = 2.0


class ConsoleApp(App[None]):
    """Schedule announcements, watch them go out, act on what went wrong."""

    CSS_PATH = "app.tcss"
    TITLE = "jem-bot console"
    DEFAULT_MODE = "announcements"
    # The footer must fit 80 columns with every screen's own keys: each screen hides the key of where it is
    # (a screen binding of the same key, not shown, shadows the app's), and what does not fit is in the command
    # palette, which the footer offers as "^p More".
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_announcement", "New"),
        Binding("a", "announcements", "Announcements"),
        Binding("e", "switch_mode('employees')", "Employees"),
        Binding("i", "switch_mode('inbox')", "Inbox"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+p", "command_palette", "More", show=False, priority=True, tooltip="Every command and key"),
    ]

    # "connecting" until the first answer, then "ok", "down" (no answer) or "unauthorized" (401).
    connection: reactive[str] = reactive("connecting")
    last_ok: reactive[datetime | None] = reactive(None)
    # GET /sender's last answer, shown by every screen's SenderIndicator; None until then, and for good on a
    # server older than /sender. always_update: the line must be redrawn when the timezone changes under it.
    sender: reactive[contracts.Sender | None] = reactive(None, always_update=True)

    def __init__(
        self,
        api: Api,
        *,
        refresh_scale: float = 1.0,
        owns_api: bool = False,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__()
        self.api = api
        # Close the API client on exit only when the console created it (tests lend theirs).
        self.owns_api = owns_api
        self.session = Session(api, refresh_scale=refresh_scale, clock=clock)
        # Not the MODES class variable: each mode's screen is built with this app's session.
        for mode, screen in (
            ("announcements", AnnouncementsScreen),
            ("employees", EmployeesScreen),
            ("inbox", InboxScreen),
        ):
            self.add_mode(mode, partial(screen, self.session))
        self.employer: contracts.Employer | None = None
        # The last API error shown, so that a periodic refresh failing the same way is not reported again.
        self._last_error: tuple[int, str, str] | None = None

    @property
    def timezone(self) -> str:
        """The employer's timezone, in which every time is shown (UTC until /me answers)."""
        return self.session.timezone

    def now(self) -> datetime:
        """What time it is (UTC), from the session's clock."""
        return self.session.clock()

    def on_mount(self) -> None:
        self.load_me()
        self.set_interval(SENDER_REFRESH_SECONDS * self.session.refresh_scale, self.load_sender)

    async def on_unmount(self) -> None:
        if self.owns_api:
            await self.api.aclose()

    @work(exclusive=True, group="me", exit_on_error=False)
    async def load_me(self) -> None:
        """Learn the employer (name, timezone); times are shown in its timezone."""
        me = await self.api.me()
        self.employer = me.employer
        self.session.timezone = me.employer.timezone
        self.sub_title = f"{me.employer.name} · {me.employer.timezone}"
        self.reload_screen()
        # Now that times can be shown in the employer's timezone; later by the interval.
        self.load_sender()

    @work(exclusive=True, group="sender", exit_on_error=False)
    async def load_sender(self) -> None:
        """Learn the number announcements go out from, its rate, and whether it is paused or backed off."""
        try:
            self.sender = await self.api.sender()
        except ApiError as exc:
            if exc.status != 404:
                raise
            # A server older than GET /sender: nothing to show, and nothing wrong worth a notice every 2 s.
            self.sender = None

    # --- connection state and the one error handler --------------------------------------------------------

    def report_ok(self) -> None:
        """An API call succeeded."""
        if self.connection != "ok" and self.connection != "connecting":
            self.notify("Connected to the API again.", title="Connection", severity="information")
        self.connection = "ok"
        self.last_ok = self.now()

    @on(Worker.StateChanged)
    def _own_worker_changed(self, event: Worker.StateChanged) -> None:
        self.report_worker(event.worker)

    @on(WorkerFinished)
    def _screen_worker_finished(self, event: WorkerFinished) -> None:
        self.report_worker(event.worker)

    def report_worker(self, worker: Worker[Any]) -> None:
        """Every worker runs with exit_on_error=False; its failure becomes a notice here, never a crash.

        The app's own workers and, through WorkerFinished, the screens' end here: the one place that turns
        API answers into the connection state and errors into notices.
        """
        if worker.state == WorkerState.SUCCESS:
            self.report_ok()
        elif worker.state == WorkerState.ERROR:
            self.report_error(
                worker.error, from_refresh=worker.group in REFRESH_GROUPS, explained=worker.group in EXPLAINED_GROUPS
            )

    def report_error(self, error: BaseException | None, *, from_refresh: bool = False, explained: bool = False) -> None:
        """Explain a failed API call; a refresh that keeps failing the same way is reported once, not every 2 s.

        An operator's own action (cancel, resend) is always answered, even when the API was already known to be
        down: otherwise the key press would seem to do nothing. `explained`: the screen has said it already.
        """
        if isinstance(error, ApiUnreachable):
            if self.connection != "down":
                self.notify(f"{error}. Retrying every few seconds.", title="API unreachable", severity="error")
            elif not from_refresh and not explained:
                self.notify(
                    f"{error}. It may not have been done: check once the API answers, then try again.",
                    title="Not done: API unreachable",
                    severity="error",
                    timeout=10,
                )
            self.connection = "down"
        elif isinstance(error, ApiError) and error.status == 401:
            if self.connection != "unauthorized":
                self.notify(
                    "The API rejected the token (401). Start jem-console with a valid --token or JEM_API_TOKEN.",
                    title="Not authorised",
                    severity="error",
                    timeout=30,
                )
            self.connection = "unauthorized"
        elif isinstance(error, ApiError):
            key = (error.status, error.title, error.detail)
            if explained:
                pass
            elif not from_refresh or key != self._last_error:
                self.notify(error.detail, title=f"{error.title} ({error.status})", severity="error", timeout=10)
            self._last_error = key
        else:
            self.notify(f"{type(error).__name__}: {error}", title="Unexpected error", severity="error", timeout=10)

    # --- navigation and actions ----------------------------------------------------------------------------

    def reload_screen(self) -> None:
        """Reload the screen shown, if it shows API data."""
        if isinstance(self.screen, RefreshingScreen):
            self.screen.reload()

    @on(AnnouncementSelected)
    def _announcement_selected(self, event: AnnouncementSelected) -> None:
        self.open_announcement(event.announcement_id)

    @on(ConversationRequested)
    def _conversation_requested(self, event: ConversationRequested) -> None:
        self.push_screen(ConversationScreen(self.session, event.employee_id, event.name))

    def open_announcement(self, announcement_id: int) -> None:
        """Show one announcement's deliveries."""
        self.push_screen(AnnouncementScreen(self.session, announcement_id))

    def action_announcements(self) -> None:
        """The announcements list, from anywhere: another mode, or an announcement's detail (which is pushed on top
        of the list in the same mode, so switching to the mode alone would leave the operator on the detail)."""
        if isinstance(self.screen, ModalScreen):
            return  # a dialog waits for its answer first
        self.switch_mode("announcements")
        while len(self.screen_stack) > 1 and not isinstance(self.screen, AnnouncementsScreen):
            self.pop_screen()

    def action_new_announcement(self) -> None:
        """Open the compose modal."""
        if isinstance(self.screen, ComposeScreen):
            return

        def created(announcement: contracts.Announcement | None) -> None:
            if announcement is not None:
                self.notify(f"Announcement #{announcement.id} {announcement.status}.", title="Created")
                self.reload_screen()

        self.push_screen(ComposeScreen(self.session), created)

    @on(CancelRequested)
    def _confirm_cancel(self, event: CancelRequested) -> None:
        """Ask, then cancel (what was already sent stays sent)."""
        announcement = event.announcement
        if announcement.status in ("completed", "cancelled"):
            self.notify(f"Announcement #{announcement.id} is {announcement.status}; nothing to cancel.")
            return
        if announcement.status == "scheduled":
            consequence = f"Nobody will receive announcement #{announcement.id}. This cannot be undone."
        else:
            pending = announcement.counts.pending
            consequence = (
                f"Announcement #{announcement.id} is being sent: its {pending} pending deliveries will be "
                "cancelled; messages already sent stay sent. This cannot be undone."
            )

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel_announcement(announcement.id)

        self.push_screen(ConfirmScreen("Cancel this announcement?", consequence, "Cancel it"), answered)

    @on(ResendUnknownRequested)
    def _confirm_resend_unknown(self, event: ResendUnknownRequested) -> None:
        """Ask, then resend deliveries whose outcome is unknown (duplicate risk)."""
        announcement = event.announcement
        unknown = announcement.counts.unknown
        if unknown == 0:
            self.notify("No deliveries with an unknown outcome.")
            return
        consequence = (
            f"WhatsApp may already have delivered these. Resending may duplicate the message for {unknown} "
            f"employee{'s' if unknown != 1 else ''}. Your decision is recorded."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.resend_unknown(announcement.id)

        self.push_screen(ConfirmScreen("Resend unknown deliveries?", consequence, "Resend"), answered)

    @work(group="actions", exit_on_error=False)
    async def cancel_announcement(self, announcement_id: int) -> None:
        """POST cancel and say what happened."""
        result = await self.api.cancel_announcement(announcement_id)
        self.notify(f"Announcement #{result.id} is now {result.status}.", title="Cancelled")
        self.reload_screen()

    @work(group="actions", exit_on_error=False)
    async def resend_unknown(self, announcement_id: int) -> None:
        """POST resend-unknown and say how many were queued again."""
        result = await self.api.resend_unknown(announcement_id)
        self.notify(f"{result.resent} deliveries queued again.", title="Resend requested")
        self.reload_screen()

    def action_refresh(self) -> None:
        """Reload the current screen."""
        self.reload_screen()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Command palette entries for everything the keys do."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("New announcement", "Write and schedule an announcement (n)", self.action_new_announcement)
        yield SystemCommand("Announcements", "List announcements (a)", self.action_announcements)
        yield SystemCommand("Employees", "List employees, opt-outs included (e)", lambda: self.switch_mode("employees"))
        yield SystemCommand("Inbox", "Messages from employees (i)", lambda: self.switch_mode("inbox"))
        # The key is the shown screen's own: r on the lists, ctrl+r on an announcement (where r is Remind).
        reload_key = self.key_for(screen, "reload")
        yield SystemCommand(
            "Refresh", f"Reload this screen ({reload_key})" if reload_key else "Reload this screen", self.action_refresh
        )
        yield SystemCommand("Sender", "The number announcements go out from: rate, pause, back-off", self.action_sender)
        # The keys of the screen shown that the footer has no room for (at 80 columns) are offered here too.
        if isinstance(screen, RefreshingScreen):
            yield from screen.commands()

    def key_for(self, screen: Screen[object], action: str) -> str | None:
        """The key `screen` binds to its `action`, as the footer shows it ('r', '^r'); None if it binds none."""
        for active in screen.active_bindings.values():
            if active.node is screen and active.binding.action == action:
                return self.get_key_display(active.binding)
        return None

    def action_sender(self) -> None:
        """Say everything known about the sender in a notice (the line under the header is cut to the width)."""
        sender = self.sender
        if sender is None:
            self.notify(
                "The API has not said which number sends (not connected yet, or a server without GET /sender).",
                title="Sender",
            )
            return
        held = sender.paused_until is not None or sender.backoff_until is not None
        self.notify(
            sender_details(sender, self.timezone),
            title="Sender",
            severity="warning" if held else "information",
            timeout=15 if held else 8,
            # Reasons are Graph's words and may hold "[...]", which markup would eat.
            markup=False,
        )


def make_console(
    api: Api, *, refresh_scale: float = 1.0, owns_api: bool = False, clock: Callable[[], datetime] = utc_now
) -> ConsoleApp:
    """Build the console over `api` (a BotApi, or a fake in tests); `owns_api` closes it on exit; `clock` says
    what time it is (tests fix it)."""
    return ConsoleApp(api, refresh_scale=refresh_scale, owns_api=owns_api, clock=clock)
