"""The console against the REAL service, served in-process (Litestar AsyncTestClient over the test database)."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import respx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from textual.widgets import DataTable, Input, Select, TextArea

from bot import contracts
from bot.ledger.fanout import fan_out_due
from console.api import ApiError, BotApi
from console.app import make_console
from console.screens import AnnouncementScreen, AnnouncementsScreen, ComposeScreen, ConfirmScreen
from console.screens.employees import EmployeesScreen
from console.screens.export_csv import ExportScreen
from console.widgets import SenderIndicator
from tests.conftest import PHONE_NUMBER_ID, Tenant
from tests.console.conftest import until
from tests.integration.test_templates import APPROVED, MEDIA, catalogue, graph_api, png, settings, uploaded

# Fixtures of the template tests: Graph's catalogue and media mocked (`graph_api`), the installation's WABA id set
# (`settings`); re-exported so pytest finds them here.
__all__ = ["graph_api", "settings"]


class ServerSideRequests(httpx.AsyncBaseTransport):
    """Runs each request in a task of its own, as a real server does.

    The test client runs the app inside the caller's task, so a console worker cancelled when the console
    exits would cancel the handler mid-query and leak its PostgreSQL connection. Here the caller may give up
    on the answer; the request still finishes, and `drain()` waits for it before the app shuts down.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self._pending: set[asyncio.Task[httpx.Response]] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        task = asyncio.create_task(self._inner.handle_async_request(request))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return await asyncio.shield(task)

    async def drain(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending))


@pytest.fixture
async def real_api(app: Litestar, tenant: Tenant) -> AsyncIterator[BotApi]:
    async with AsyncTestClient(app=app) as client:
        client.headers.update(tenant.headers)
        for phone, name, tags in [
            ("+27821110001", "Thandi Mokoena", ["warehouse"]),
            ("+27821110002", "Pieter van Wyk", ["drivers"]),
            ("+27821110003", "Aisha Patel", ["warehouse", "office"]),
        ]:
            response = await client.post("/employees", json={"phone": phone, "name": name, "tags": tags})
            assert response.status_code == 201, response.text
        transport = ServerSideRequests(client._transport)
        async with httpx.AsyncClient(transport=transport, base_url=client.base_url, headers=client.headers) as http:
            yield BotApi(http)
            await transport.drain()


def has_route(app: Litestar, path: str) -> bool:
    return any(route.path == path for route in app.routes)


async def test_bot_api_decodes_real_responses(real_api: BotApi) -> None:
    """BotApi returns contracts Structs from the real API, counts audiences with `total`, and maps errors."""
    me = await real_api.me()
    assert me.employer.slug == "acme"
    assert me.employer.timezone == "Africa/Johannesburg"
    page = await real_api.list_employees(tags=["warehouse"], opted_out=False, limit=1)
    assert page.total == 2
    assert len(page.items) == 1
    with pytest.raises(ApiError) as info:
        await real_api.list_employees(limit=100_000)
    assert info.value.status in (400, 422)
    sender = await real_api.sender()
    assert (sender.own, sender.phone_number_id, sender.paused_until) == (False, PHONE_NUMBER_ID, None)


async def test_console_shows_real_employees_and_employer_timezone(real_api: BotApi) -> None:
    """Against the real API the console learns the employer from /me and lists its employees."""
    app = make_console(real_api)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.timezone == "Africa/Johannesburg", within=10)
        assert app.sub_title == "Acme Ltd · Africa/Johannesburg"
        line = app.screen.query_one(SenderIndicator)
        # The test server sends from the shared number at the settings' send_rate (1000/s).
        await until(pilot, lambda: line.display, within=10)
        assert str(line.render()) == f"From the shared number {PHONE_NUMBER_ID} · 1000 msg/s"
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EmployeesScreen))
        table = app.screen.query_one("#employees", DataTable)
        await until(pilot, lambda: table.row_count == 3, within=10)
        names = {table.get_row_at(r)[1] for r in range(3)}
        assert names == {"Thandi Mokoena", "Pieter van Wyk", "Aisha Patel"}
        assert app.connection == "ok"


async def test_console_creates_one_announcement_on_the_real_api(
    app: Litestar, real_api: BotApi, db: async_sessionmaker[AsyncSession]
) -> None:
    """Compose → Send twice against the real API: one announcement which, once fanned out, reaches all 3."""
    if not has_route(app, "/announcements"):
        pytest.skip("the announcements API is not in the tree yet")
    console = make_console(real_api)
    async with console.run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(console.screen, ComposeScreen))
        console.screen.query_one("#message", TextArea).text = "Stocktake on Saturday"
        await pilot.press("ctrl+s")
        # It goes to everyone, so the console asks first; then a second Send while the first is in flight.
        await until(pilot, lambda: isinstance(console.screen, ConfirmScreen), within=10)
        await pilot.press("y", "ctrl+s")
        await until(pilot, lambda: isinstance(console.screen, AnnouncementsScreen), within=10)
        table = console.screen.query_one("#announcements", DataTable)
        await until(pilot, lambda: table.row_count == 1, within=10)
    page = await real_api.list_announcements()
    assert len(page.items) == 1
    # The ledger is written at fan-out (the dispatcher's job, not running in this app), so do that step here.
    assert await fan_out_due(db) == 1
    page = await real_api.list_announcements()
    assert page.items[0].counts.total == 3


async def test_after_send_endpoints_on_the_real_api(
    app: Litestar, real_api: BotApi, db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Issue 17 through BotApi and the console against the real service: the CSV streamed to a file from the
    export dialog, the reminder audience and the 409 of an unsent original, the inbox filter, and a conversation
    whose window never opened (its reply refused with 409)."""
    if not has_route(app, "/announcements/{announcement_id:int}/remind"):
        pytest.skip("the reminder endpoints are not in the tree yet")
    created = await real_api.create_announcement(
        "Stocktake on Saturday", send_time=None, audience=None, idempotency_key="after-send-1"
    )
    # Still scheduled (not fanned out): nobody to remind, and a reminder is refused.
    assert await real_api.reminder_audience(created.id) == 0
    with pytest.raises(ApiError) as refused:
        await real_api.remind(created.id)
    assert refused.value.status == 409
    assert await fan_out_due(db) == 1
    detail = await real_api.get_announcement(created.id)
    assert detail.reminders == []
    page = await real_api.list_messages(acknowledgements=False)
    assert page.items == []
    employee = (await real_api.list_employees(q="Thandi")).items[0]
    conversation = await real_api.conversation(employee.id)
    assert not conversation.window_open
    with pytest.raises(ApiError) as outside:
        await real_api.send_message(employee.id, "Hello", idempotency_key="after-send-2")
    assert outside.value.status == 409
    assert "24-hour window" in outside.value.detail
    target = tmp_path / "deliveries.csv"
    console = make_console(real_api)
    async with console.run_test(size=(80, 24)) as pilot:
        console.open_announcement(created.id)
        await until(pilot, lambda: isinstance(console.screen, AnnouncementScreen), within=10)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(console.screen, ExportScreen), within=10)
        console.screen.query_one("#export-path", Input).value = str(target)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(console.screen, AnnouncementScreen), within=10)
    with target.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 4  # the header and one row per employee


async def test_console_sends_a_template_announcement_on_the_real_api(
    app: Litestar, real_api: BotApi, graph_api: respx.MockRouter, tmp_path: Path
) -> None:
    """Against the real API (its catalogue synced from a fake Graph): choose shift_notice, upload a PNG for its
    header, fill both parameters; the server stores the template with Graph's media id and previews it."""
    catalogue(graph_api, APPROVED)
    graph_api.post(MEDIA).mock(return_value=uploaded("555"))
    photo = tmp_path / "roster.png"
    photo.write_bytes(png())
    console = make_console(real_api)
    async with console.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(console.screen, ComposeScreen))
        screen = console.screen
        await pilot.press("ctrl+t")
        select = screen.query_one("#template", Select)
        await until(pilot, lambda: len(select._options) > 1, within=10)
        select.value = "shift_notice"
        await until(pilot, lambda: bool(screen.query("#param-2")), within=10)
        screen.query_one("#header-value", Input).value = str(photo)
        screen.query_one("#param-1", Input).value = "the night shift"
        screen.query_one("#param-2", Input).value = "Monday"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(console.screen, ConfirmScreen), within=10)
        await pilot.press("y")
        await until(pilot, lambda: isinstance(console.screen, AnnouncementsScreen), within=15)
    (created,) = (await real_api.list_announcements()).items
    assert created.template is not None
    assert created.template.name == "shift_notice"
    assert created.template.parameters == ["the night shift", "Monday"]
    assert created.template.header == contracts.TemplateHeader(media_id="555")
    # Previewed in the translation the server picks without an employer language (the first approved: af).
    assert created.preview.startswith("[image: 555]\nHallo span, the night shift begin op Monday.")
