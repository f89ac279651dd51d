"""The console against the REAL service, served in-process (Litestar AsyncTestClient over the test database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from textual.widgets import DataTable, TextArea

from bot.ledger.fanout import fan_out_due
from console.api import ApiError, BotApi
from console.app import make_console
from console.screens import AnnouncementsScreen, ComposeScreen, ConfirmScreen
from console.screens.employees import EmployeesScreen
from console.widgets import SenderIndicator
from tests.conftest import PHONE_NUMBER_ID, Tenant
from tests.console.conftest import until


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
