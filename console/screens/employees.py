"""Employees: who the announcements reach, with tags and opt-outs visible."""

from __future__ import annotations

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from console.messages import EmployeesLoaded
from console.screens.base import RefreshingScreen
from console.widgets import ConnectionIndicator, SenderIndicator


class EmployeesScreen(RefreshingScreen):
    """The employee directory (first 500 matches) and the total."""

    REFRESH_SECONDS = 10.0
    AUTO_FOCUS = "#employees"
    BINDINGS = [  # noqa: RUF012
        Binding("slash", "search", "Search", key_display="/"),
        Binding("r", "reload", "Refresh"),
        # Operators reach this screen from the announcements list and expect esc to take them back there.
        Binding("escape", "app.switch_mode('announcements')", "Back", show=False),
    ]

    total_label = getters.query_one("#employees-total", Label)
    search_input = getters.query_one("#employee-search", Input)
    table = getters.query_one("#employees", DataTable)

    def compose(self) -> ComposeResult:
        yield Header()
        yield SenderIndicator()
        with Horizontal(classes="toolbar"):
            yield Label("Employees", classes="screen-title")
            yield Label("", id="employees-total")
            yield Static(classes="spacer")
            yield ConnectionIndicator()
        yield Input(placeholder="search name or phone (/)", id="employee-search")
        table: DataTable[object] = DataTable(id="employees", cursor_type="row", zebra_stripes=True)
        table.add_column("#", key="id", width=4)
        table.add_column("name", key="name", width=20)
        table.add_column("phone", key="phone", width=14)
        table.add_column("tags", key="tags", width=16)
        table.add_column("status", key="status", width=9)
        yield table
        yield Footer()

    def reload(self) -> None:
        self.load(self.search_input.value.strip() or None)

    @work(exclusive=True, group="employees", exit_on_error=False)
    async def load(self, q: str | None) -> None:
        """Fetch employees matching the search."""
        page = await self.api.list_employees(q=q, limit=500)
        self.post_message(EmployeesLoaded(page))

    @on(EmployeesLoaded)
    def _show(self, event: EmployeesLoaded) -> None:
        self.total_label.update(f"{event.page.total} total")
        table = self.table
        cursor = table.cursor_row
        table.clear()
        for e in event.page.items:
            if e.opted_out:
                status = Text("opted out", style="bold red")
            elif not e.active:
                status = Text("inactive", style="grey50")
            else:
                status = Text("active", style="green")
            table.add_row(str(e.id), e.name, e.phone, ", ".join(e.tags), status, key=str(e.id))
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))

    @on(Input.Changed, "#employee-search")
    def _search_changed(self) -> None:
        self.reload()

    def action_search(self) -> None:
        """Focus the search box."""
        self.search_input.focus()

    def action_reload(self) -> None:
        """Reload now."""
        self.reload()
