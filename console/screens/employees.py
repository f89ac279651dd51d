"""Employees: who the announcements reach, with tags and opt-outs visible."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Input, Label, Static

from console.messages import EmployeesLoaded
from console.paging import Pager
from console.screens.base import PagedScreen, Session
from console.widgets import ConnectionIndicator, SenderIndicator
from console.widgets.header import ConsoleHeader
from console.widgets.table import Column, FittedTable

COLUMNS = (
    Column("id", "#", 6),
    Column("name", "name", 28, flex=True, min_width=14),
    Column("phone", "phone", 14),
    Column("tags", "tags", flex=True, min_width=8),
    Column("status", "status", 9),
)


class EmployeesScreen(PagedScreen):
    """The employee directory, a page at a time, and the total."""

    REFRESH_SECONDS = 10.0
    AUTO_FOCUS = "#employees"
    BINDINGS = [  # noqa: RUF012
        Binding("slash", "search", "Search", key_display="/"),
        Binding("r", "reload", "Refresh", show=False),
        # Operators reach this screen from the announcements list and expect esc to take them back there.
        Binding("escape", "app.announcements", "Back", show=False),
        # The operator is here already: the key still works, without a footer hint.
        Binding("e", "app.switch_mode('employees')", "Employees", show=False),
    ]

    total_label = getters.query_one("#employees-total", Label)
    search_input = getters.query_one("#employee-search", Input)
    table = getters.query_one("#employees", FittedTable)
    empty_label = getters.query_one("#employees-empty", Label)
    position_label = getters.query_one("#employees-position", Label)

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.pager = Pager()

    def compose(self) -> ComposeResult:
        yield ConsoleHeader()
        yield SenderIndicator()
        with Horizontal(classes="toolbar"):
            yield Label("Employees", classes="screen-title")
            yield Label("", id="employees-total")
            yield Static(classes="spacer")
            yield ConnectionIndicator()
        yield Input(placeholder="search name or phone (/)", id="employee-search")
        yield FittedTable(COLUMNS, id="employees")
        yield Label("", id="employees-empty", classes="empty")
        yield Label("", id="employees-position", classes="position")
        yield Footer(compact=True)

    def reload(self) -> None:
        self.load(self.search_input.value.strip() or None, self.pager.cursor)

    @work(exclusive=True, group="employees", exit_on_error=False)
    async def load(self, q: str | None, cursor: str | None) -> None:
        """Fetch the page of employees matching the search that the operator is on."""
        page = await self.api.list_employees(q=q, cursor=cursor, limit=self.pager.size)
        self.post_message(EmployeesLoaded(page, cursor))

    @on(EmployeesLoaded)
    def _show(self, event: EmployeesLoaded) -> None:
        if event.cursor != self.pager.cursor:
            return  # an answer for the page the operator just left
        self.total_label.update(f"{event.page.total:,} total")
        rows = []
        for e in event.page.items:
            if e.opted_out:
                status = Text("opted out", style="bold red")
            elif not e.active:
                status = Text("inactive", style="grey50")
            else:
                status = Text("active", style="green")
            cells = {"id": str(e.id), "name": e.name, "phone": e.phone, "tags": ", ".join(e.tags), "status": status}
            rows.append((str(e.id), cells))
        self.table.show(rows)
        self.pager.loaded(len(rows), event.page.next_cursor)
        self.position_label.update(self.pager.describe(event.page.total))
        q = self.search_input.value.strip()
        if rows:
            self.empty_label.display = False
        else:
            self.empty_label.update(
                f"No employee matches “{q}”. Empty the search (/) to see everyone."
                if q
                else "No employees yet: add them with POST /employees or POST /employees/import."
            )
            self.empty_label.display = True

    @on(Input.Changed, "#employee-search")
    def _search_changed(self) -> None:
        # The cursors kept belong to the list under the old search.
        self.pager.reset()
        self.reload()

    def commands(self) -> Iterable[SystemCommand]:
        yield from self.page_commands("More employees (])", "Back a page ([)")

    def action_search(self) -> None:
        """Focus the search box."""
        self.search_input.focus()

    def action_reload(self) -> None:
        """Reload now."""
        self.reload()
