"""Issue 17, the console side: remind, the reminders table, the deliveries CSV export, conversations and replies,
and the inbox's server-side acknowledgement filter; Pilot tests against the FakeApi, BotApi over MockTransport."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import msgspec
import pytest
from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, Label, TextArea

from bot import contracts
from console.api import ApiError, BotApi
from console.app import ConsoleApp, make_console
from console.screens import AnnouncementScreen
from console.screens.conversation import ConversationScreen
from console.screens.export_csv import ExportScreen
from console.screens.inbox import InboxScreen
from console.screens.remind import RemindScreen
from console.widgets.table import FittedTable
from tests.console.conftest import SIZES, notices, until
from tests.console.fake_api import NOW, FakeApi


async def sent_announcement(fake: FakeApi, statuses: list[str], acknowledged: int = 0) -> int:
    """An announcement to the three active employees, moved on to `statuses`; the first `acknowledged` acked."""
    a = await fake.create_announcement("Stocktake on Saturday", send_time=None, audience=None, idempotency_key="s")
    fake.set_delivery_statuses(a.id, statuses)
    rows = fake.deliveries[a.id]
    for i in range(acknowledged):
        rows[i] = msgspec.structs.replace(rows[i], acknowledged_at=NOW + timedelta(minutes=5))
    fake.calls.clear()
    return a.id


async def open_detail(app: ConsoleApp, pilot: Pilot[None], announcement_id: int) -> AnnouncementScreen:
    app.open_announcement(announcement_id)
    await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen) and app.screen.announcement is not None)
    assert isinstance(app.screen, AnnouncementScreen)
    return app.screen


def text_of(app: ConsoleApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Label).render())


def table_cell(app: ConsoleApp, selector: str, row: int, column: str) -> object:
    """The value a fitted table was given for a cell (shown or left out by a narrow terminal)."""
    t = app.screen.query_one(selector, FittedTable)
    return t.cell(str(t.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value), column)


# --- remind -----------------------------------------------------------------------------------------------------


class TestRemind:
    @pytest.mark.parametrize("size", SIZES)
    async def test_remind_shows_the_count_and_posts_once_on_yes(self, fake: FakeApi, size: tuple[int, int]) -> None:
        """'r' asks 'Remind 2 employees who were reached and have not acknowledged?' with the text prefilled;
        ctrl+s (twice) makes one reminder to exactly those two, and says so."""
        aid = await sent_announcement(fake, ["read", "delivered", "sent"], acknowledged=1)
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            await open_detail(app, pilot, aid)
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, RemindScreen))
            assert "reminder_audience" in fake.calls
            assert text_of(app, "#remind-title") == "Remind 2 employees who were reached and have not acknowledged?"
            assert app.screen.query_one("#remind-message", TextArea).text == "Reminder: Stocktake on Saturday"
            await pilot.press("ctrl+s", "ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen))
            assert fake.calls.count("remind") == 1
            (reminder,) = [a for a in fake.announcements.values() if a.reminder_of == aid]
            assert reminder.message == "Reminder: Stocktake on Saturday"
            assert reminder.audience.employee_ids == [2, 3]
            await until(pilot, lambda: any(f"Reminder #{reminder.id} scheduled" in n for n in notices(app)))

    @pytest.mark.parametrize("size", SIZES)
    async def test_no_reminds_nobody(self, fake: FakeApi, size: tuple[int, int]) -> None:
        """Esc, the No button and a stray Enter (No has the focus) all close the dialog without a request."""
        aid = await sent_announcement(fake, ["read", "delivered", "sent"])
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            await open_detail(app, pilot, aid)
            for answer in ("escape", "enter"):
                await pilot.press("r")
                await until(pilot, lambda: isinstance(app.screen, RemindScreen))
                await pilot.press(answer)
                await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen))
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, RemindScreen))
            await pilot.click("#remind-no")
            await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen))
            assert fake.calls.count("reminder_audience") == 3
            assert "remind" not in fake.calls
            assert all(a.reminder_of is None for a in fake.announcements.values())

    async def test_nobody_left_to_remind_is_a_notice(self, fake: FakeApi) -> None:
        """When everyone reached acknowledged, 'r' says so instead of asking to remind 0 employees."""
        aid = await sent_announcement(fake, ["read", "read", "failed"], acknowledged=2)
        app = make_console(fake)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_detail(app, pilot, aid)
            await pilot.press("r")
            await until(pilot, lambda: any("Nobody to remind" in n for n in notices(app)))
            assert isinstance(app.screen, AnnouncementScreen)
            assert "remind" not in fake.calls

    async def test_refusals_are_shown_in_the_dialog(self, fake: FakeApi) -> None:
        """A 422 (text too long) and a 409 (not sent after all) appear on the dialog's error line; it stays open."""
        aid = await sent_announcement(fake, ["read", "delivered", "sent"])
        app = make_console(fake)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_detail(app, pilot, aid)
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, RemindScreen))
            screen = app.screen
            screen.query_one("#remind-send-time", Input).value = "tomorrow"
            await pilot.press("ctrl+s")
            assert "YYYY-MM-DD HH:MM" in text_of(app, "#remind-error")
            assert "remind" not in fake.calls  # a bad time is caught before asking the API
            screen.query_one("#remind-send-time", Input).value = ""
            screen.query_one("#remind-message", TextArea).text = "x" * (contracts.MAX_MESSAGE_LENGTH + 1)
            await pilot.press("ctrl+s")
            await until(pilot, lambda: text_of(app, "#remind-error").startswith("Not sent: message: must be"))
            # Meanwhile the original turned out not to be sent (the fake rewound to scheduled): the API says 409.
            fake.announcements[aid] = msgspec.structs.replace(fake.announcements[aid], status="scheduled")
            screen.query_one("#remind-message", TextArea).text = "Please confirm"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "has not been sent yet" in text_of(app, "#remind-error"))
            assert "(409)" in text_of(app, "#remind-error")
            assert app.screen is screen
            assert fake.calls.count("remind") == 2
            assert all(a.reminder_of is None for a in fake.announcements.values())

    @pytest.mark.parametrize("size", SIZES)
    async def test_reminders_table_lists_recipients_acknowledged_and_rate(
        self, fake: FakeApi, size: tuple[int, int]
    ) -> None:
        """The original's detail lists its reminder: 2 recipients, 1 acknowledged, 67% of those reached; enter opens
        the reminder, whose status line says what it reminds of."""
        aid = await sent_announcement(fake, ["read", "delivered", "sent"], acknowledged=1)
        reminder = await fake.remind(aid)
        rows = fake.deliveries[reminder.id]
        rows[0] = msgspec.structs.replace(rows[0], status="read", acknowledged_at=NOW + timedelta(hours=1))
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            screen = await open_detail(app, pilot, aid)
            table = screen.query_one("#reminders", FittedTable)
            await until(pilot, lambda: table.row_count == 1)
            assert table.display
            assert text_of(app, "#reminders-title").startswith("Reminders (1)")
            assert table_cell(app, "#reminders", 0, "id") == f"#{reminder.id}"
            assert table_cell(app, "#reminders", 0, "recipients") == "2"
            assert table_cell(app, "#reminders", 0, "acknowledged") == "1"
            assert table_cell(app, "#reminders", 0, "rate") == "67%"
            assert table.region.bottom <= size[1]
            table.focus()
            await pilot.press("enter")
            await until(pilot, lambda: app.screen is not screen and isinstance(app.screen, AnnouncementScreen))
            await until(pilot, lambda: f"reminder of #{aid}" in text_of(app, "#detail-status"))
            assert not app.screen.query_one("#reminders", FittedTable).display  # a reminder has none of its own


# --- export -----------------------------------------------------------------------------------------------------


class TestExport:
    @pytest.mark.parametrize("size", SIZES)
    async def test_export_writes_the_rows_to_the_file_named(
        self, fake: FakeApi, size: tuple[int, int], tmp_path: Path
    ) -> None:
        """'x' offers ./announcement-<id>-deliveries.csv; saved elsewhere with full phones, the file holds a header
        and one row per delivery, and the notice says how many went where."""
        aid = await sent_announcement(fake, ["read", "failed", "sent"])
        target = tmp_path / "out.csv"
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            await open_detail(app, pilot, aid)
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ExportScreen))
            path = app.screen.query_one("#export-path", Input)
            assert path.value == f"./announcement-{aid}-deliveries.csv"
            path.value = str(target)
            app.screen.query_one("#export-full-phones", Checkbox).value = True
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen))
            await until(pilot, lambda: any(f"Saved 3 rows to {target}" in n for n in notices(app)))
        with target.open(newline="") as f:
            header, *rows = list(csv.reader(f))
        assert header == list(fake.export_columns)
        assert [r[0] for r in rows] == ["Thandi Mokoena", "Pieter van Wyk", "Aisha Patel"]
        assert rows[0][1] == "+27820000001"  # full phone, as asked
        assert rows[1][5] == "Message undeliverable"
        assert not (tmp_path / "out.csv.part").exists()

    async def test_unwritable_path_is_an_error_line_and_nothing_is_left(self, fake: FakeApi, tmp_path: Path) -> None:
        """A folder that does not exist is named on the dialog's error line; the dialog stays for another path."""
        aid = await sent_announcement(fake, ["sent"])
        app = make_console(fake)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_detail(app, pilot, aid)
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ExportScreen))
            app.screen.query_one("#export-path", Input).value = str(tmp_path / "missing" / "out.csv")
            await pilot.press("enter")
            await until(pilot, lambda: "does not exist" in text_of(app, "#export-error"))
            assert text_of(app, "#export-error").startswith(f"Cannot write {tmp_path / 'missing' / 'out.csv'}")
            assert isinstance(app.screen, ExportScreen)
            assert os.listdir(tmp_path) == []
            # Given a folder, the file goes into it under the default name.
            app.screen.query_one("#export-path", Input).value = str(tmp_path)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen))
            assert (tmp_path / f"announcement-{aid}-deliveries.csv").read_text().count("\n") == 4  # header + 3


# --- conversations ----------------------------------------------------------------------------------------------


def wrote(fake: FakeApi, mid: int, employee_id: int, text: str, ago: timedelta) -> None:
    name = next(e.name for e in fake.employees if e.id == employee_id)
    fake.messages.append(
        contracts.InboundMessage(
            id=mid, employee_id=employee_id, employee_name=name, type="text", text=text, announcement_id=None,
            received_at=NOW - ago,
        )
    )  # fmt: skip


async def open_conversation(app: ConsoleApp, pilot: Pilot[None], rows: int) -> ConversationScreen:
    """Inbox ('i'), then enter on its first message."""
    await pilot.press("i")
    await until(pilot, lambda: isinstance(app.screen, InboxScreen))
    await until(pilot, lambda: app.screen.query_one("#inbox", FittedTable).row_count == rows)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, ConversationScreen))
    assert isinstance(app.screen, ConversationScreen)
    screen = app.screen
    await until(pilot, lambda: screen.window_open is not None)
    return screen


class TestConversation:
    @pytest.mark.parametrize("size", SIZES)
    async def test_enter_in_the_inbox_opens_the_conversation_oldest_first(
        self, fake: FakeApi, size: tuple[int, int]
    ) -> None:
        """The announcement Thandi got, then her question: ours → with its status, hers ←; the window is open until
        24 h after her message, on the employer's clock (SAST)."""
        aid = await sent_announcement(fake, ["read"])
        fake.deliveries[aid][0] = msgspec.structs.replace(fake.deliveries[aid][0], sent_at=NOW - timedelta(hours=3))
        wrote(fake, 1, 1, "Is Saturday paid overtime?", timedelta(hours=1))
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.timezone == "Africa/Johannesburg")
            await open_conversation(app, pilot, rows=1)
            t = app.screen.query_one("#conversation", FittedTable)
            await until(pilot, lambda: t.row_count == 2)
            assert table_cell(app, "#conversation", 0, "who") == f"→ announcement #{aid}"
            assert table_cell(app, "#conversation", 0, "status") == "read"
            assert table_cell(app, "#conversation", 1, "who") == "← Thandi Mokoena"
            assert table_cell(app, "#conversation", 1, "text") == "Is Saturday paid overtime?"
            assert table_cell(app, "#conversation", 1, "status") == ""
            assert t.cursor_row == 1  # on the newest
            # 11:00 UTC + 24 h is 13:00 the next day in Johannesburg.
            assert text_of(app, "#conversation-window") == "Window open until 2026-11-29 13:00 SAST: you can reply."
            assert app.focused is app.screen.query_one("#reply", Input)
            assert app.screen.query_one("#reply-status", Label).region.bottom <= size[1]  # all on screen at 80×24
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, InboxScreen))

    async def test_reply_posts_once_with_a_key_and_follows_its_status(self, fake: FakeApi) -> None:
        """Enter sends the reply once (one Idempotency-Key), it appears as pending and moves on to delivered; the
        next reply gets a key of its own; the inbox then marks the message answered."""
        wrote(fake, 1, 1, "Can I swap my shift?", timedelta(hours=2))
        app = make_console(fake, refresh_scale=0.05)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_conversation(app, pilot, rows=1)
            screen.reply_input.value = "Yes, with Pieter"
            await pilot.press("enter", "enter")
            await until(pilot, lambda: screen.reply_input.value == "")
            assert fake.calls.count("send_message") == 1
            (reply,) = fake.replies[1]
            assert reply.text == "Yes, with Pieter"
            t = screen.query_one("#conversation", FittedTable)
            await until(pilot, lambda: t.row_count == 2 and table_cell(app, "#conversation", 1, "status") == "pending")
            assert table_cell(app, "#conversation", 1, "who") == "→ reply"
            assert "Reply queued (pending)" in text_of(app, "#reply-status")
            fake.set_reply_status(1, "delivered")
            await until(pilot, lambda: table_cell(app, "#conversation", 1, "status") == "delivered")
            await pilot.press(*"Thanks")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: len(fake.replies[1]) == 2)
            assert len(set(fake.sent_keys)) == 2
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, InboxScreen))
            await until(pilot, lambda: table_cell(app, "#inbox", 0, "answered") == "✓")

    async def test_retry_after_a_network_error_reuses_the_key(self, fake: FakeApi) -> None:
        """The reply was queued but the answer lost: the line says so, the text stays, and sending again reuses the
        key, so the employee gets it once."""
        wrote(fake, 1, 1, "Where do I park?", timedelta(hours=2))
        fake.lose_next_send_response = True
        app = make_console(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_conversation(app, pilot, rows=1)
            screen.reply_input.value = "Behind the warehouse"
            await pilot.press("enter")
            await until(pilot, lambda: text_of(app, "#reply-status").startswith("Not sent: http://fake.test"))
            assert screen.reply_input.value == "Behind the warehouse"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: screen.reply_input.value == "")
            assert fake.calls.count("send_message") == 2
            assert len(set(fake.sent_keys)) == 1
            assert len(fake.replies[1]) == 1

    @pytest.mark.parametrize("size", SIZES)
    async def test_outside_the_window_the_reply_is_refused_and_kept(self, fake: FakeApi, size: tuple[int, int]) -> None:
        """Her last message is 25 h old: the window is shown closed, and the 409 is a clear line; the text stays."""
        wrote(fake, 1, 1, "Thanks for the info", timedelta(hours=25))
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            screen = await open_conversation(app, pilot, rows=1)
            assert text_of(app, "#conversation-window").startswith("Window closed: Thandi Mokoena has not written")
            assert screen.query_one("#conversation-window", Label).has_class("closed")
            screen.reply_input.value = "Hello?"
            await pilot.press("enter")
            await until(pilot, lambda: "outside the 24-hour window" in text_of(app, "#reply-status"))
            assert text_of(app, "#reply-status").endswith("Your text is kept.")
            assert screen.reply_input.value == "Hello?"
            assert fake.replies == {}
            assert app.is_running

    async def test_acknowledgement_filter_is_asked_of_the_server(self, fake: FakeApi) -> None:
        """Hidden acknowledgements are left out by the server (acknowledgements=false); 'h' asks for everything."""
        wrote(fake, 1, 1, "When is payday?", timedelta(hours=2))
        fake.messages.append(
            contracts.InboundMessage(
                id=2, employee_id=2, employee_name="Pieter van Wyk", type="button", text="OK", announcement_id=1,
                received_at=NOW,
            )
        )  # fmt: skip
        app = make_console(fake)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("i")
            await until(pilot, lambda: isinstance(app.screen, InboxScreen))
            t = app.screen.query_one("#inbox", FittedTable)
            await until(pilot, lambda: t.row_count == 1)
            assert fake.message_filters[-1] == {"employee_id": None, "acknowledgements": False}
            await pilot.press("h")
            await until(pilot, lambda: t.row_count == 2)
            assert fake.message_filters[-1] == {"employee_id": None, "acknowledgements": None}
            assert table_cell(app, "#inbox", 0, "text") == "OK"


# --- BotApi: the requests it makes ------------------------------------------------------------------------------


def api_with(handler: httpx.MockTransport) -> BotApi:
    return BotApi(httpx.AsyncClient(base_url="http://bot.test", transport=handler))


async def test_bot_api_after_send_requests() -> None:
    """remind, reminder-audience, conversation, reply and the inbox filters: paths, bodies, keys, decoding."""
    seen: list[httpx.Request] = []
    reply = {"direction": "out", "id": 9, "kind": "reply", "type": None, "text": "hi", "announcement_id": None,
             "status": "pending", "at": "2026-11-28T12:00:00Z", "delivery_id": 9}  # fmt: skip
    announcement = {"id": 8, "message": "Reminder: hi", "send_time": "2026-11-28T12:00:00Z", "status": "scheduled",
                    "audience": {"employee_ids": [1]}, "created_at": "2026-11-28T12:00:00Z", "dispatched_at": None,
                    "completed_at": None, "counts": {"total": 0}, "reminder_of": 7}  # fmt: skip

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        routes: dict[tuple[str, str], httpx.Response] = {
            ("GET", "/announcements/7/reminder-audience"): httpx.Response(200, json={"count": 4}),
            ("POST", "/announcements/7/remind"): httpx.Response(201, json=announcement),
            ("GET", "/employees/3/messages"): httpx.Response(
                200, json={"items": [reply], "window_open": False, "window_closes_at": None, "next_cursor": None}
            ),
            ("POST", "/employees/3/messages"): httpx.Response(202, json=reply),
            ("GET", "/messages"): httpx.Response(200, json={"items": [], "next_cursor": None}),
        }
        return routes[(request.method, request.url.path)]

    api = api_with(httpx.MockTransport(handle))
    assert await api.reminder_audience(7) == 4
    created = await api.remind(7, message="Reminder: hi")
    assert created.reminder_of == 7
    conversation = await api.conversation(3, limit=50)
    assert conversation.items[0].kind == "reply"
    assert not conversation.window_open
    queued = await api.send_message(3, "hi", idempotency_key="k-1")
    assert queued.delivery_id == 9
    await api.list_messages(acknowledgements=False, employee_id=3)
    remind, send, messages = seen[1], seen[3], seen[4]
    assert json.loads(remind.content) == {"message": "Reminder: hi"}
    assert seen[2].url.params["limit"] == "50"
    assert send.headers["Idempotency-Key"] == "k-1"
    assert json.loads(send.content) == {"text": "hi"}
    assert dict(messages.url.params) == {"limit": "50", "employee_id": "3", "acknowledgements": "false"}


async def test_bot_api_streams_the_csv_to_the_file(tmp_path: Path) -> None:
    """The CSV arrives in chunks and is written as it comes (phones=full when asked); a problem answer is ApiError
    and leaves no file."""
    seen: list[httpx.Request] = []
    body = [b"employee,phone\r\n", b'"Mokoena, Thandi",+27821110001\r\n', b"Pieter,+27821110002\r\n"]

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in body:
            yield chunk

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/announcements/5/deliveries.csv":
            return httpx.Response(200, headers={"Content-Type": "text/csv"}, content=chunks())
        return httpx.Response(404, json={"title": "Not Found", "status": 404, "detail": "No announcement 6."})

    api = api_with(httpx.MockTransport(handle))
    target = tmp_path / "d.csv"
    assert await api.export_deliveries(5, target, full_phones=True) == 2
    assert target.read_bytes() == b"".join(body)
    assert seen[0].url.params["phones"] == "full"
    with pytest.raises(ApiError) as info:
        await api.export_deliveries(6, tmp_path / "e.csv")
    assert info.value.status == 404
    assert "phones" not in seen[1].url.params
    assert os.listdir(tmp_path) == ["d.csv"]
