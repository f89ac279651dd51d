"""Screens talk to the app only through messages; they get the API from the session they are built with."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from textual.app import App
from textual.message import Message
from textual.widgets import DataTable

from console import screens
from console.app import make_console
from console.messages import AnnouncementSelected, CancelRequested, ResendUnknownRequested, WorkerFinished
from console.screens import AnnouncementScreen, ComposeScreen, ConfirmScreen, EmployeesScreen
from console.screens.base import Session
from tests.console.conftest import until
from tests.console.fake_api import FakeApi


def test_screens_do_not_import_the_app() -> None:
    """No screen module imports console.app: screens post messages, the app handles them."""
    for path in Path(screens.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "console.app" not in imported, path.name


async def test_a_screen_works_in_any_app_given_a_session(fake: FakeApi) -> None:
    """The employees screen needs only its session: in a bare App it lists employees and reports its worker."""
    seen: list[Message] = []
    host: App[None] = App()
    async with host.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await host.push_screen(EmployeesScreen(Session(fake)))
        table = host.screen.query_one("#employees", DataTable)
        await until(pilot, lambda: table.row_count == 4)
        await until(pilot, lambda: any(isinstance(m, WorkerFinished) for m in seen))
        finished = next(m for m in seen if isinstance(m, WorkerFinished))
        assert finished.worker.group == "employees"


async def test_enter_posts_announcement_selected_and_the_app_opens_it(fake: FakeApi) -> None:
    """Enter on a row posts AnnouncementSelected; the app answers by showing that announcement."""
    created = await fake.create_announcement("Hello", send_time=None, audience=None, idempotency_key="k")
    seen: list[Message] = []
    app = make_console(fake)
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await until(pilot, lambda: app.screen.query_one("#announcements", DataTable).row_count == 1)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen))
        # The hook sees a message at every node it reaches (screen, then app), so count distinct messages.
        selected = {id(m): m for m in seen if isinstance(m, AnnouncementSelected)}
        assert [m.announcement_id for m in selected.values()] == [created.id]
        assert [type(s) for s in app.screen_stack[1:]] == [AnnouncementScreen]
        assert isinstance(app.screen, AnnouncementScreen)
        assert app.screen.announcement_id == created.id


@pytest.mark.parametrize(("key", "message"), [("c", CancelRequested), ("u", ResendUnknownRequested)])
async def test_detail_requests_go_to_the_app_which_asks_first(
    fake: FakeApi, key: str, message: type[CancelRequested | ResendUnknownRequested]
) -> None:
    """'c' and 'u' on the detail screen post a request; the app asks for confirmation before acting."""
    created = await fake.create_announcement("Hello", send_time=None, audience=None, idempotency_key="k")
    fake.set_delivery_statuses(created.id, ["unknown", "sent"])
    seen: list[Message] = []
    app = make_console(fake)
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        app.open_announcement(created.id)
        await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen) and app.screen.announcement is not None)
        await pilot.press(key)
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        (request,) = {id(m): m for m in seen if isinstance(m, message)}.values()
        assert request.announcement.id == created.id
        assert "cancel_announcement" not in fake.calls
        assert "resend_unknown" not in fake.calls


async def test_compose_is_a_modal_over_the_list(fake: FakeApi) -> None:
    """The compose screen dims the list behind it, and the app's keys (e: employees) do nothing while it is open."""
    app = make_console(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ComposeScreen))
        assert app.screen.is_modal
        assert app.screen.styles.background.a < 1
        await pilot.press("tab")  # from the message box to the audience choice, which ignores 'e'
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, ComposeScreen)
