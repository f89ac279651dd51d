"""One announcement: its audience, funnel and timeline, its deliveries (filter, search, pages); cancel, resend."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from textual import getters, on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Label, Select, Static

from bot import contracts
from console.api import ApiError
from console.messages import AnnouncementLoaded, AnnouncementSelected, CancelRequested, ResendUnknownRequested
from console.paging import Pager
from console.screens.base import PagedScreen, Session
from console.screens.export_csv import ExportScreen
from console.screens.remind import RemindScreen
from console.widgets import ConnectionIndicator, SenderIndicator
from console.widgets.funnel import Funnel, TimelineView
from console.widgets.header import ConsoleHeader
from console.widgets.progress import acknowledged_pct
from console.widgets.table import Column, FittedTable

UNACKNOWLEDGED = "not acknowledged"
FILTER_OPTIONS = [(s, s) for s in contracts.DELIVERY_STATUSES] + [(UNACKNOWLEDGED, UNACKNOWLEDGED)]
COUNT_FIELDS = ("pending", "sending", "sent", "delivered", "read", "failed", "unknown", "cancelled", "skipped")
# The error comes before the times: on a narrow terminal it is what the operator needs to see, so the phone
# (masked anyway) and the attempts are what a narrow terminal leaves out.
COLUMNS = (
    Column("name", "employee", 20, flex=True, min_width=12),
    Column("phone", "phone", 13, drop=2),
    Column("status", "status", 9),
    Column("error", "error", flex=True, min_width=14),
    Column("attempts", "try", 3, drop=1),
    Column("sent_at", "sent", 11),
    Column("ack", "ack", 11),
)
REMINDER_COLUMNS = (
    Column("id", "reminder", 8),
    Column("status", "status", 11),
    Column("send_time", "send", 16, drop=1),
    Column("recipients", "recipients", 10),
    Column("acknowledged", "acknowledged", 12),
    Column("rate", "ack rate", 8),
)
# Reminders listed without scrolling: at 80×24 the deliveries keep a few rows under them.
REMINDERS_SHOWN = 3
# Older than this, the timeline is asked for by the hour: by the minute it would be a long, mostly flat line.
MINUTES_UNTIL = timedelta(hours=3)
# Named employees of an audience shown by name (each is one GET /employees/{id}, asked once per screen).
NAMES_SHOWN = 5


def counts_line(counts: contracts.Counts) -> str:
    """'total 40 · sent 3 · delivered 30 · …' listing only non-zero statuses."""
    parts = [f"total {counts.total}"]
    parts += [f"{name} {getattr(counts, name)}" for name in COUNT_FIELDS if getattr(counts, name)]
    parts.append(f"acknowledged {counts.acknowledged} ({acknowledged_pct(counts)})")
    return " · ".join(parts)


def audience_text(audience: contracts.Audience, names: dict[int, str]) -> str:
    """Who the announcement is for, in words: everyone, employees with these tags, or these employees by name."""
    if audience.employee_ids is not None:
        ids = audience.employee_ids
        shown = ", ".join(names.get(i, f"#{i}") for i in ids[:NAMES_SHOWN])
        more = f" and {len(ids) - NAMES_SHOWN} more" if len(ids) > NAMES_SHOWN else ""
        return f"To {len(ids)} named employee{'s' if len(ids) != 1 else ''}: {shown}{more}"
    if audience.tags is not None:
        return f"To employees tagged {', '.join(audience.tags)}"
    return "To everyone (every active employee who has not opted out)"


def matching_total(
    counts: contracts.Counts, status: str | None, acknowledged: bool | None, q: str | None
) -> int | None:
    """How many deliveries the filters match, from the counts; None when a search makes that unknown."""
    if q:
        return None
    if acknowledged is False:
        return counts.total - counts.acknowledged
    if status:
        return int(getattr(counts, status))
    return counts.total


class AnnouncementScreen(PagedScreen):
    """Deliveries of one announcement, refreshed live."""

    AUTO_FOCUS = "#deliveries"
    BINDINGS = [  # noqa: RUF012
        Binding("escape", "back", "Back"),
        Binding("c", "cancel", "Cancel"),
        Binding("u", "resend_unknown", "Resend", tooltip="Resend the deliveries whose outcome is unknown"),
        Binding("slash", "search", "Search", key_display="/"),
        # Not in the footer (no room at 80 columns): in the command palette, and the filter is on screen.
        Binding("f", "filter", "Filter", show=False),
        # r reminds here (issue 17); the screen reloads itself every 2 s, and ctrl+r or the palette's Refresh
        # reload it at once.
        Binding("r", "remind", "Remind", show=False),
        Binding("x", "export", "Export CSV", show=False),
        Binding("ctrl+r", "reload", "Refresh", show=False),
        # The list is one step back; esc says so in the footer.
        Binding("a", "app.announcements", "Announcements", show=False),
    ]

    status_label = getters.query_one("#detail-status", Label)
    message_text = getters.query_one("#detail-message", Static)
    audience_label = getters.query_one("#detail-audience", Label)
    funnel = getters.query_one("#funnel", Funnel)
    timeline_view = getters.query_one("#timeline", TimelineView)
    counts_text = getters.query_one("#detail-counts", Static)
    filter_select = getters.query_one("#delivery-filter", Select)
    search_input = getters.query_one("#delivery-search", Input)
    table = getters.query_one("#deliveries", FittedTable)
    empty_label = getters.query_one("#deliveries-empty", Label)
    position_label = getters.query_one("#deliveries-position", Label)
    reminders_title = getters.query_one("#reminders-title", Label)
    reminders_table = getters.query_one("#reminders", FittedTable)

    def __init__(self, session: Session, announcement_id: int) -> None:
        super().__init__(session)
        self.announcement_id = announcement_id
        self.announcement: contracts.Announcement | None = None
        self.pager = Pager()
        # Names of the employees the audience names by id, each asked for once per screen.
        self.names: dict[int, str] = {}

    def compose(self) -> ComposeResult:
        yield ConsoleHeader()
        yield SenderIndicator()
        with Horizontal(classes="toolbar"):
            yield Label(f"Announcement #{self.announcement_id}", classes="screen-title")
            yield Label("", id="detail-status")
            yield Static(classes="spacer")
            yield ConnectionIndicator()
        yield Static("", id="detail-message")
        yield Label("", id="detail-audience")
        with Horizontal(id="detail-stats"):
            yield Funnel(id="funnel")
            with Vertical(id="detail-side"):
                yield Static("loading…", id="detail-counts")
                yield TimelineView(id="timeline")
        # Only shown once the announcement has reminders (the 80×24 layout keeps its deliveries rows otherwise).
        reminders_title, reminders = Label("", id="reminders-title"), FittedTable(REMINDER_COLUMNS, id="reminders")
        reminders_title.display = reminders.display = False
        yield reminders_title
        yield reminders
        with Horizontal(classes="toolbar"):
            yield Select(FILTER_OPTIONS, prompt="all deliveries", id="delivery-filter", allow_blank=True)
            yield Input(placeholder="search name or phone (/)", id="delivery-search")
        yield FittedTable(COLUMNS, id="deliveries")
        yield Label("", id="deliveries-empty", classes="empty")
        yield Label("", id="deliveries-position", classes="position")
        yield Footer(compact=True)

    def _filters(self) -> tuple[str | None, bool | None, str | None]:
        value = self.filter_select.value
        status = value if isinstance(value, str) and value != UNACKNOWLEDGED else None
        acknowledged = False if value == UNACKNOWLEDGED else None
        q = self.search_input.value.strip() or None
        return status, acknowledged, q

    def reload(self) -> None:
        status, acknowledged, q = self._filters()
        self.load(status, acknowledged, q, self.pager.cursor)

    @work(exclusive=True, group="announcement", exit_on_error=False)
    async def load(self, status: str | None, acknowledged: bool | None, q: str | None, cursor: str | None) -> None:
        """Fetch the announcement, the page of its (filtered) deliveries the operator is on, its timeline, and the
        names of the employees its audience names."""
        announcement = await self.api.get_announcement(self.announcement_id)
        deliveries = await self.api.list_deliveries(
            self.announcement_id, status=status, acknowledged=acknowledged, q=q, cursor=cursor, limit=self.pager.size
        )
        bucket = "minute" if self.now() - announcement.send_time <= MINUTES_UNTIL else "hour"
        timeline: contracts.Timeline | None = None
        try:
            timeline = await self.api.timeline(self.announcement_id, bucket=bucket)
        except ApiError as exc:
            # The announcement was just found, so a 404 here is a server older than the timeline endpoint.
            if exc.status != 404:
                raise
        await self._learn_names(announcement.audience)
        self.post_message(AnnouncementLoaded(announcement, deliveries, cursor, timeline, dict(self.names)))

    async def _learn_names(self, audience: contracts.Audience) -> None:
        for employee_id in (audience.employee_ids or [])[:NAMES_SHOWN]:
            if employee_id in self.names:
                continue
            try:
                self.names[employee_id] = (await self.api.get_employee(employee_id)).name
            except ApiError as exc:
                if exc.status != 404:
                    raise
                self.names[employee_id] = f"#{employee_id} (not found)"

    @on(AnnouncementLoaded)
    def _show(self, event: AnnouncementLoaded) -> None:
        if event.cursor != self.pager.cursor:
            return  # an answer for the page the operator just left
        a = self.announcement = event.announcement
        reminds = f" · reminder of #{a.reminder_of}" if a.reminder_of is not None else ""
        self.status_label.update(f"{a.status} · send {self.local(a.send_time)}{reminds}")
        self.show_reminders(a.reminders)
        self.message_text.update(a.message)
        self.audience_label.update(audience_text(a.audience, event.names))
        self.funnel.counts = a.counts
        self.counts_text.update(counts_line(a.counts))
        self.timeline_view.show(event.timeline, self.session.timezone)
        items = event.deliveries.items
        self.pager.loaded(len(items), event.deliveries.next_cursor)
        rows = []
        for d in items:
            error = ""
            if d.error is not None:
                error = f"{d.error.code or ''} {d.error.title or ''}".strip()
            elif d.skip_reason:
                error = d.skip_reason
            rows.append(
                (
                    str(d.id),
                    {
                        "name": d.employee_name,
                        "phone": d.phone,
                        "status": d.status,
                        "error": error,
                        "attempts": str(d.attempts),
                        "sent_at": self.local_short(d.sent_at),
                        "ack": self.local_short(d.acknowledged_at),
                    },
                )
            )
        self.table.show(rows)
        status, acknowledged, q = self._filters()
        self.position_label.update(self.pager.describe(matching_total(a.counts, status, acknowledged, q)))
        self.empty_label.update(self.empty_text(a))
        self.empty_label.display = not items

    def show_reminders(self, reminders: list[contracts.ReminderSummary]) -> None:
        """The reminders section: each reminder with its recipients and acknowledgements; hidden while none."""
        self.reminders_title.display = self.reminders_table.display = bool(reminders)
        if not reminders:
            return
        n = len(reminders)
        self.reminders_title.update(f"Reminders ({n}) · enter opens one · r reminds again · x exports the CSV")
        # The header and up to REMINDERS_SHOWN rows (more scroll): a DataTable does not size itself to its rows.
        self.reminders_table.styles.height = 1 + min(n, REMINDERS_SHOWN)
        self.reminders_table.show(
            [
                (
                    str(r.id),
                    {
                        "id": f"#{r.id}",
                        "status": r.status,
                        "send_time": self.local(r.send_time),
                        "recipients": str(r.recipients),
                        "acknowledged": str(r.acknowledged),
                        "rate": f"{round(r.acknowledgement_rate * 100)}%",
                    },
                )
                for r in reminders
            ]
        )

    @on(DataTable.RowSelected, "#reminders")
    def _open_reminder(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(AnnouncementSelected(int(event.row_key.value)))

    def empty_text(self, a: contracts.Announcement) -> str:
        """Why there are no deliveries to show, and what to do about it."""
        status, acknowledged, q = self._filters()
        if status or acknowledged is not None or q:
            what = " · ".join(x for x in (status, UNACKNOWLEDGED if acknowledged is False else None, q) if x)
            return (
                f"No delivery matches the filter ({what}). Choose “all deliveries” (f) and empty the search (/) "
                "to see them all."
            )
        if self.pager.page > 0:
            return "No more deliveries. Press [ for the previous page."
        if a.status == "scheduled":
            return f"No deliveries yet: they are made when sending starts ({self.local(a.send_time)})."
        return "No deliveries."

    @on(Select.Changed, "#delivery-filter")
    @on(Input.Changed, "#delivery-search")
    def _filter_changed(self) -> None:
        # The cursors kept belong to the list under the old filter.
        self.pager.reset()
        self.reload()

    def action_back(self) -> None:
        """Back to the list."""
        self.dismiss()

    def action_cancel(self) -> None:
        """Cancel this announcement, after confirmation."""
        if self.announcement is not None:
            self.post_message(CancelRequested(self.announcement))

    def action_resend_unknown(self) -> None:
        """Resend the deliveries whose outcome is unknown, after confirmation."""
        if self.announcement is not None:
            self.post_message(ResendUnknownRequested(self.announcement))

    def action_remind(self) -> None:
        """Count who a reminder would reach, then ask (with its text and send time) before reminding them."""
        if self.announcement is not None:
            self.ask_to_remind(self.announcement)

    @work(exclusive=True, group="remind-audience", exit_on_error=False)
    async def ask_to_remind(self, announcement: contracts.Announcement) -> None:
        """GET the reminder audience; open the remind dialog when there is someone to remind."""
        count = await self.api.reminder_audience(announcement.id)
        if count == 0:
            self.notify(
                "Nobody to remind: everyone reached has acknowledged, or nobody has been reached yet.",
                title="Remind",
            )
            return

        def reminded(reminder: contracts.Announcement | None) -> None:
            if reminder is not None:
                self.notify(
                    f"Reminder #{reminder.id} {reminder.status}, send {self.local(reminder.send_time)}.",
                    title="Reminder scheduled",
                )
                self.reload()

        self.app.push_screen(RemindScreen(self.session, announcement, count), reminded)

    def action_export(self) -> None:
        """Save the deliveries as CSV to a file the operator names."""

        def saved(result: tuple[int, Path] | None) -> None:
            if result is not None:
                rows, path = result
                self.notify(f"Saved {rows:,} row{'s' if rows != 1 else ''} to {path}", title="Exported")

        self.app.push_screen(ExportScreen(self.session, self.announcement_id), saved)

    def action_search(self) -> None:
        """Focus the search box."""
        self.search_input.focus()

    def action_filter(self) -> None:
        """Focus the status filter."""
        self.filter_select.focus()

    def action_reload(self) -> None:
        """Reload now."""
        self.reload()

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Resend unknown", "Resend the deliveries whose outcome is unknown (u)", self.action_resend_unknown
        )
        yield SystemCommand("Cancel announcement", "Cancel this announcement (c)", self.action_cancel)
        yield SystemCommand("Remind", "Remind those reached who have not acknowledged (r)", self.action_remind)
        yield SystemCommand("Export CSV", "Save the deliveries to a CSV file (x)", self.action_export)
        yield SystemCommand("Filter deliveries", "By status, or not acknowledged (f)", self.action_filter)
        yield SystemCommand("Search deliveries", "By name or phone (/)", self.action_search)
        yield from self.page_commands("Older deliveries (])", "Newer deliveries ([)")
