"""Pilot tests of the operator console against the in-memory FakeApi (same methods and semantics as BotApi)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import (
    Button,
    DataTable,
    Input,
    Label,
    OptionList,
    RadioSet,
    Select,
    SelectionList,
    Static,
    TextArea,
)
from textual.widgets._footer import FooterKey

from bot import contracts
from console.app import ConsoleApp, make_console
from console.screens import AnnouncementScreen, AnnouncementsScreen, ComposeScreen, ConfirmScreen
from console.screens.employees import EmployeesScreen
from console.screens.inbox import InboxScreen
from console.widgets import SenderIndicator
from console.widgets.sender import local_until
from console.widgets.table import FittedTable
from tests.console.conftest import SIZES, notices, until
from tests.console.fake_api import NOW, FakeApi


async def seed(fake: FakeApi, *messages: str, audience: contracts.Audience | None = None) -> list[int]:
    ids = []
    for i, message in enumerate(messages):
        a = await fake.create_announcement(message, send_time=None, audience=audience, idempotency_key=f"seed-{i}")
        ids.append(a.id)
    fake.calls.clear()
    return ids


def table(app: ConsoleApp, selector: str) -> DataTable[object]:
    return app.screen.query_one(selector, DataTable)


def cell(t: DataTable[object], row: int, column: str) -> object:
    """A shown cell by row number and column key (columns a narrow terminal leaves out have no cells).

    A fitted table shortens long text to its column ('…'): the value it was given is what the row holds.
    """
    index = t.get_column_index(column)  # raises when a narrow terminal left the column out
    if isinstance(t, FittedTable):
        return t.cell(str(t.coordinate_to_cell_key(Coordinate(row, index)).row_key.value), column)
    return t.get_cell_at(Coordinate(row, index))


def label_text(app: ConsoleApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Label).render())


def sender_text(app: ConsoleApp) -> str:
    """The sender line of the screen shown; '' while it is hidden."""
    line = app.screen.query_one(SenderIndicator)
    return str(line.render()) if line.display else ""


def johannesburg(when: datetime) -> str:
    return when.astimezone(ZoneInfo("Africa/Johannesburg")).strftime("%H:%M:%S")


class TestAnnouncements:
    @pytest.mark.parametrize("size", SIZES)
    async def test_list_shows_announcements_newest_first_in_employer_time(
        self, fake: FakeApi, size: tuple[int, int]
    ) -> None:
        """The list shows every announcement, newest on top, send time in Africa/Johannesburg (UTC+2)."""
        first, second = await seed(fake, "Shift starts at 8", "Canteen closed today")
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            t = table(app, "#announcements")
            await until(pilot, lambda: t.row_count == 2 and app.timezone == "Africa/Johannesburg")
            assert isinstance(app.screen, AnnouncementsScreen)
            assert [t.coordinate_to_cell_key((r, 0)).row_key.value for r in range(2)] == [str(second), str(first)]
            row = t.get_row(str(first))
            assert row[1] == NOW.strftime("%Y-%m-%d ") + "14:00"  # 12:00 UTC is 14:00 in Johannesburg
            assert row[2] == "scheduled"
            # The preview takes the width the terminal leaves; at 80 columns it is shortened with an ellipsis.
            assert row[3] == ("Shift starts at 8" if size[0] >= 100 else "Shift start…")
            assert row[5] == "0%"
            assert row[6] == "3"  # the opted-out employee is not in the audience
            assert app.connection == "ok"

    async def test_status_filter_shows_only_that_status(self, fake: FakeApi) -> None:
        """Choosing 'cancelled' in the filter leaves only cancelled announcements."""
        keep, gone = await seed(fake, "stays", "withdrawn")
        await fake.cancel_announcement(gone)
        app = make_console(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            t = table(app, "#announcements")
            await until(pilot, lambda: t.row_count == 2)
            await pilot.press("slash")
            assert app.focused is app.screen.query_one("#status-filter", Select)
            app.screen.query_one("#status-filter", Select).value = "cancelled"
            await until(pilot, lambda: t.row_count == 1)
            assert str(gone) in t.rows
            assert str(keep) not in t.rows

    async def test_live_refresh_picks_up_progress(self, fake: FakeApi) -> None:
        """Without a key press, the list shows new progress within a refresh period."""
        (aid,) = await seed(fake, "hello")
        app = make_console(fake, refresh_scale=0.05)  # refresh every 0.1 s instead of 2 s
        async with app.run_test(size=(120, 40)) as pilot:
            t = table(app, "#announcements")
            await until(pilot, lambda: t.row_count == 1 and t.get_row(str(aid))[2] == "scheduled")
            fake.set_delivery_statuses(aid, ["sent", "sent"])
            await until(pilot, lambda: t.get_row(str(aid))[2] == "dispatching")


class TestDetail:
    @pytest.mark.parametrize("size", SIZES)
    async def test_enter_opens_deliveries_with_errors_and_filters(self, fake: FakeApi, size: tuple[int, int]) -> None:
        """Enter on a row opens its deliveries: counts, error code and title of failures, status filter, search."""
        (aid,) = await seed(fake, "Payslips are out")
        fake.set_delivery_statuses(aid, ["failed", "unknown", "delivered"])
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: table(app, "#announcements").row_count == 1)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen))
            d = table(app, "#deliveries")
            await until(pilot, lambda: d.row_count == 3)
            counts = str(app.screen.query_one("#detail-counts", Static).render())
            assert "total 3" in counts
            assert "failed 1" in counts
            assert "unknown 1" in counts
            (failed,) = [r for r in range(3) if cell(d, r, "status") == "failed"]
            assert cell(d, failed, "error") == "131026 Message undeliverable"
            app.screen.query_one("#delivery-filter", Select).value = "failed"
            await until(pilot, lambda: d.row_count == 1)
            app.screen.query_one("#delivery-filter", Select).value = "not acknowledged"
            await until(pilot, lambda: d.row_count == 3)
            await pilot.press("slash")
            await pilot.press(*"aisha")
            await until(pilot, lambda: d.row_count == 1)
            assert cell(d, 0, "name") == "Aisha Patel"
            await pilot.press("escape")  # leaves the search box
            await pilot.press("escape")  # back to the list
            await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))

    async def test_resend_unknown_states_duplicate_risk_and_acts_on_yes(self, fake: FakeApi) -> None:
        """'u' asks 'may duplicate … for 2 employees'; yes resends exactly those."""
        (aid,) = await seed(fake, "Safety briefing")
        fake.set_delivery_statuses(aid, ["unknown", "unknown", "sent"])
        app = make_console(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            app.open_announcement(aid)
            await until(pilot, lambda: table(app, "#deliveries").row_count == 3)
            await pilot.press("u")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            text = str(app.screen.query_one("#confirm-consequence", Static).render())
            assert "may duplicate the message for 2 employees" in text
            await pilot.press("y")
            await until(pilot, lambda: "resend_unknown" in fake.calls and isinstance(app.screen, AnnouncementScreen))
            assert [d.status for d in fake.deliveries[aid]] == ["pending", "pending", "sent"]


class TestCancel:
    async def test_cancel_asks_first_and_no_does_nothing(self, fake: FakeApi) -> None:
        """'c' shows the consequence; 'n' leaves the announcement scheduled; 'c' then 'y' cancels it."""
        (aid,) = await seed(fake, "Party on Friday")
        app = make_console(fake)
        async with app.run_test(size=(80, 24)) as pilot:
            t = table(app, "#announcements")
            await until(pilot, lambda: t.row_count == 1)
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "Nobody will receive" in str(app.screen.query_one("#confirm-consequence", Static).render())
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
            assert "cancel_announcement" not in fake.calls
            assert fake.announcements[aid].status == "scheduled"
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("enter")  # the focused button is "No": a stray Enter must not cancel
            await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
            assert "cancel_announcement" not in fake.calls
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: t.row_count == 1 and t.get_row(str(aid))[2] == "cancelled")
            assert fake.calls.count("cancel_announcement") == 1

    async def test_cancel_of_completed_announcement_becomes_a_notice(self, fake: FakeApi) -> None:
        """A 409 from the API (announcement completed meanwhile) is shown as a notice; the app keeps running."""
        (aid,) = await seed(fake, "Old news")
        app = make_console(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: table(app, "#announcements").row_count == 1)
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            fake.announcements[aid] = fake.announcements[aid].__class__(
                **{**{f: getattr(fake.announcements[aid], f) for f in fake.announcements[aid].__struct_fields__},
                   "status": "completed"}
            )  # fmt: skip
            await pilot.press("y")
            await until(pilot, lambda: any("Conflict (409)" in n for n in notices(app)))
            assert app.is_running


class TestCompose:
    async def open_compose(self, app: ConsoleApp, pilot: object) -> ComposeScreen:
        await pilot.press("n")  # type: ignore[attr-defined]
        await until(pilot, lambda: isinstance(app.screen, ComposeScreen))  # type: ignore[arg-type]
        assert isinstance(app.screen, ComposeScreen)
        return app.screen

    async def pick(self, app: ConsoleApp, pilot: Pilot[None], typed: str) -> None:
        """Type into the employee search, wait for the matches, and press enter to add the first."""
        search = app.screen.query_one("#people-search", Input)
        search.focus()
        search.value = ""
        await pilot.press(*typed)
        matches = app.screen.query_one("#people-matches", OptionList)
        await until(
            pilot, lambda: matches.option_count > 0 and typed in str(matches.get_option_at_index(0).prompt).lower()
        )
        await pilot.press("enter")
        await pilot.pause()

    @pytest.mark.parametrize("size", SIZES)
    async def test_compose_validates_before_sending(self, fake: FakeApi, size: tuple[int, int]) -> None:
        """An empty message, a bad time and an over-long text are flagged next to their fields; nothing is sent."""
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            screen = await self.open_compose(app, pilot)
            assert "(Africa/Johannesburg)" in str(screen.query(".field-label")[1].render())
            screen.query_one("#send-time", Input).value = "tomorrow 9am"
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert label_text(app, "#message-error") == "write a message"
            assert "YYYY-MM-DD HH:MM" in label_text(app, "#send_time-error")
            screen.query_one("#message", TextArea).text = "x" * 4097
            await pilot.pause()
            assert label_text(app, "#message-count") == "4097/4096"
            assert screen.query_one("#message-count", Label).has_class("over")
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert "at most 4096" in label_text(app, "#message-error")
            assert "create_announcement" not in fake.calls
            # The submit button is on screen (the dialog scrolls rather than overflowing at 80×24).
            screen.query_one("#submit", Button).scroll_visible(animate=False)
            await pilot.pause()
            assert screen.query_one("#submit", Button).region.bottom <= size[1]

    async def test_double_submit_creates_exactly_one_announcement(self, fake: FakeApi) -> None:
        """Pressing send twice fast sends one request with one Idempotency-Key and creates one announcement."""
        gate = asyncio.Event()
        original = fake.create_announcement

        async def slow_create(*args: object, **kwargs: object) -> contracts.Announcement:
            await gate.wait()  # keep the first request in flight while the operator presses again
            return await original(*args, **kwargs)  # type: ignore[arg-type]

        fake.create_announcement = slow_create  # type: ignore[method-assign]
        app = make_console(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await self.open_compose(app, pilot)
            screen.query_one("#message", TextArea).text = "Shift swap requests close at 5pm"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))  # it goes to everyone: asked first
            await pilot.press("y")
            # Not `until`: it waits for every worker, and the create is held at the gate on purpose.
            await pilot.pause()
            assert app.screen is screen
            await pilot.press("ctrl+s", "ctrl+s")
            await pilot.click("#submit")
            assert screen.query_one("#submit", Button).disabled
            gate.set()
            await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
            assert fake.calls.count("create_announcement") == 1
            assert len(fake.announcements) == 1
            await until(pilot, lambda: table(app, "#announcements").row_count == 1)

    async def test_retry_after_network_error_reuses_the_key(self, fake: FakeApi) -> None:
        """The server stored it but the answer was lost: the notice shows, and Send again creates nothing new."""
        fake.lose_next_create_response = True
        app = make_console(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await self.open_compose(app, pilot)
            screen.query_one("#message", TextArea).text = "Fire drill at 10"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: any("API unreachable" in n for n in notices(app)))
            assert isinstance(app.screen, ComposeScreen)  # the form is kept for a retry
            assert label_text(app, "#general-error").startswith("Not sent: http://fake.test is unreachable")
            assert not screen.query_one("#submit", Button).disabled
            await pilot.press("ctrl+s")  # already confirmed for this audience and time: not asked again
            await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
            assert fake.calls.count("create_announcement") == 2
            assert len(fake.announcements) == 1
            assert list(fake.idempotency) == [screen.idempotency_key]

    async def test_each_compose_has_its_own_key(self, fake: FakeApi) -> None:
        """Two separate composes of the same text are two announcements (the key is per compose, not per text)."""
        app = make_console(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(2):
                screen = await self.open_compose(app, pilot)
                screen.query_one("#message", TextArea).text = "Same words"
                await pilot.press("ctrl+s")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
                await pilot.press("y")
                await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
            assert len(fake.announcements) == 2

    async def test_api_validation_error_is_shown_next_to_the_field(self, fake: FakeApi) -> None:
        """A 422 naming audience.employee_ids (an employee removed after being picked) appears under the audience,
        and the modal stays open."""
        app = make_console(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await self.open_compose(app, pilot)
            screen.query_one("#message", TextArea).text = "Hello"
            screen.query_one("#kind-ids").value = True  # type: ignore[attr-defined]
            await pilot.pause()
            for name in ("thandi", "pieter"):
                await self.pick(app, pilot, name)
            await until(pilot, lambda: "2 employees" in label_text(app, "#recipients"))
            fake.employees = [e for e in fake.employees if e.name != "Pieter van Wyk"]
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "unknown employees" in label_text(app, "#audience-error"))
            assert isinstance(app.screen, ComposeScreen)
            assert label_text(app, "#message-error") == ""
            assert fake.announcements == {}

    async def test_tag_audience_previews_recipients_and_schedules_in_local_time(self, fake: FakeApi) -> None:
        """Picking 'warehouse' previews 2 recipients (opted-out excluded); 09:00 local is sent as +02:00."""
        app = make_console(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await self.open_compose(app, pilot)
            await until(pilot, lambda: "4 employees" not in label_text(app, "#recipients") and
                        "3 employees" in label_text(app, "#recipients"))  # fmt: skip
            screen.query_one("#message", TextArea).text = "Stocktake on Saturday"
            screen.query_one("#kind-tags").value = True  # type: ignore[attr-defined]
            tags = screen.query_one("#tags", SelectionList)
            await until(pilot, lambda: tags.option_count == 3)
            tags.select("warehouse")
            await until(pilot, lambda: label_text(app, "#recipients") == "Recipients: 2 employees (opted-out excluded)")
            assert screen.query_one("#audience-kind", RadioSet).pressed_button is not None
            screen.query_one("#send-time", Input).value = "2026-12-01 09:00"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
            (created,) = fake.announcements.values()
            assert created.audience == contracts.Audience(tags=["warehouse"])
            assert created.send_time.isoformat() == "2026-12-01T09:00:00+02:00"
            assert len(fake.deliveries[created.id]) == 2


class TestOtherScreens:
    @pytest.mark.parametrize("size", SIZES)
    async def test_employees_screen_shows_opted_out(self, fake: FakeApi, size: tuple[int, int]) -> None:
        """'e' lists employees with their tags; the opted-out one is marked."""
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            await pilot.press("e")
            await until(pilot, lambda: isinstance(app.screen, EmployeesScreen))
            t = table(app, "#employees")
            await until(pilot, lambda: t.row_count == 4)
            statuses = {t.get_row_at(r)[1]: str(t.get_row_at(r)[4]) for r in range(4)}
            assert statuses["Sipho Dlamini"] == "opted out"
            assert statuses["Thandi Mokoena"] == "active"
            assert label_text(app, "#employees-total") == "4 total"

    @pytest.mark.parametrize("size", SIZES)
    async def test_inbox_shows_messages_newest_first(self, fake: FakeApi, size: tuple[int, int]) -> None:
        """'i' lists what employees wrote, newest first."""
        for i, text in enumerate(["OK thanks", "STOP"]):
            fake.messages.append(
                contracts.InboundMessage(
                    id=i + 1, employee_id=1, employee_name="Thandi Mokoena", type="text", text=text,
                    announcement_id=None, received_at=NOW,
                )
            )  # fmt: skip
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            await pilot.press("i")
            await until(pilot, lambda: isinstance(app.screen, InboxScreen))
            t = table(app, "#inbox")
            await until(pilot, lambda: t.row_count == 2)
            assert t.get_row_at(0)[3] == "STOP"

    @pytest.mark.parametrize("key", ["e", "i"])
    async def test_escape_goes_back_to_announcements(self, fake: FakeApi, key: str) -> None:
        """From the employees or inbox screen, esc returns to the announcements list."""
        app = make_console(fake)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(key)
            await until(pilot, lambda: not isinstance(app.screen, AnnouncementsScreen))
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))


class TestFailures:
    async def test_api_down_is_a_notice_not_a_crash_and_recovers(self, fake: FakeApi) -> None:
        """With the API unreachable the operator sees one notice and a red indicator; it recovers by itself."""
        fake.down = True
        app = make_console(fake, refresh_scale=0.05)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.connection == "down")
            await until(pilot, lambda: fake.calls.count("list_announcements") >= 3)  # it keeps retrying
            assert app.is_running
            assert sum("API unreachable" in n for n in notices(app)) == 1
            fake.down = False
            await until(pilot, lambda: app.connection == "ok")
            assert app.timezone == "UTC"  # /me failed earlier; the list still works

    async def test_rejected_token_is_explained(self, fake: FakeApi) -> None:
        """A 401 says to fix the token, and the app keeps running."""
        fake.unauthorized = True
        app = make_console(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.connection == "unauthorized")
            assert any("valid --token" in n for n in notices(app))
            assert app.is_running

    async def test_quit_closes_the_client(self, fake: FakeApi) -> None:
        """'q' quits and closes the HTTP client the console owns."""
        app = make_console(fake, owns_api=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("q")
        assert fake.closed


async def test_command_palette_offers_the_console_actions(fake: FakeApi) -> None:
    """The command palette lists New announcement, Announcements, Employees, Inbox and Refresh."""
    app = make_console(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "ok")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"New announcement", "Announcements", "Employees", "Inbox", "Refresh", "Sender"} <= titles
        (new,) = [c for c in app.get_system_commands(app.screen) if c.title == "New announcement"]
        new.callback()
        await until(pilot, lambda: isinstance(app.screen, ComposeScreen))


async def test_palette_refresh_names_the_key_of_the_screen_shown(fake: FakeApi) -> None:
    """Refresh says (r) on the list, (^r) on an announcement, where r is Remind; and the palette's Remind says (r)."""
    await seed(fake, "Payslips are out")
    app = make_console(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: table(app, "#announcements").row_count == 1)

        def help_of(title: str) -> str:
            (command,) = [c for c in app.get_system_commands(app.screen) if c.title == title]
            return command.help

        assert help_of("Refresh") == "Reload this screen (r)"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen))
        await pilot.pause()
        assert help_of("Refresh") == "Reload this screen (^r)"
        assert help_of("Remind").endswith("(r)")


@pytest.mark.parametrize("size", SIZES)
async def test_list_footer_shows_enter_opens(fake: FakeApi, size: tuple[int, int]) -> None:
    """With the list focused, the footer offers Enter to open the announcement (the table's own Enter hid it),
    and Enter opens it."""
    await seed(fake, "Payslips are out")
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: table(app, "#announcements").row_count == 1)
        await pilot.pause()
        shown = {(b.binding.description, b.binding.show) for b in app.screen.active_bindings.values()}
        assert ("Open", True) in shown
        descriptions = [str(key.description) for key in app.screen.query(FooterKey)]
        assert "Open" in descriptions
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen))


class TestSender:
    @pytest.mark.parametrize("size", SIZES)
    async def test_sender_line_shows_shared_or_own_number_and_rate(self, fake: FakeApi, size: tuple[int, int]) -> None:
        """Under the header: the shared number and its rate; an employer's own number says so, on every screen."""
        app = make_console(fake, refresh_scale=0.05)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: sender_text(app) == "From the shared number 100000000000001 · 80 msg/s")
            assert app.screen.query_one(SenderIndicator).has_class("sender-ok")
            assert fake.current_sender is not None
            fake.current_sender = msgspec.structs.replace(
                fake.current_sender, own=True, phone_number_id="100000000000002", waba_id="200000000000002", rate=20.0
            )
            await until(pilot, lambda: sender_text(app) == "From own number 100000000000002 · 20 msg/s")
            await pilot.press("e")
            await until(pilot, lambda: isinstance(app.screen, EmployeesScreen))
            assert sender_text(app) == "From own number 100000000000002 · 20 msg/s"

    async def test_paused_sender_shows_paused_until_and_why(self, fake: FakeApi) -> None:
        """A paused number leads the line with PAUSED, until when in the employer's time, and Graph's reason."""
        until_utc = datetime.now(UTC) + timedelta(seconds=60)
        assert fake.current_sender is not None
        fake.current_sender = msgspec.structs.replace(
            fake.current_sender,
            own=True,
            phone_number_id="100000000000002",
            paused_until=until_utc,
            pause_reason="Error validating access token [190]",
        )
        app = make_console(fake)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: sender_text(app).startswith("PAUSED until"))
            text = sender_text(app)
            assert johannesburg(until_utc) in text  # employer time, not UTC
            assert "— Error validating access token [190]" in text  # "[190]" is text, not markup
            assert "own number 100000000000002" in text
            assert app.screen.query_one(SenderIndicator).has_class("sender-paused")
            assert not app.screen.query_one(SenderIndicator).has_class("sender-ok")

    async def test_sender_line_follows_refreshes(self, fake: FakeApi) -> None:
        """Without a key press the line turns to 'backed off' (warning colour) when the number is, and back."""
        app = make_console(fake, refresh_scale=0.05)  # the sender reloads every 0.1 s instead of 2 s
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: sender_text(app).startswith("From the shared number"))
            healthy = fake.current_sender
            assert healthy is not None
            backoff_until = datetime.now(UTC) + timedelta(seconds=30)
            fake.current_sender = msgspec.structs.replace(
                healthy, backoff_until=backoff_until, backoff_reason="Graph unreachable (ConnectTimeout)"
            )
            await until(pilot, lambda: sender_text(app).startswith("backed off until"))
            assert f"{johannesburg(backoff_until)} — Graph unreachable (ConnectTimeout)" in sender_text(app)
            assert app.screen.query_one(SenderIndicator).has_class("sender-backoff")
            fake.current_sender = healthy
            await until(pilot, lambda: sender_text(app) == "From the shared number 100000000000001 · 80 msg/s")
            assert app.screen.query_one(SenderIndicator).has_class("sender-ok")

    async def test_server_without_sender_shows_nothing_and_says_nothing(self, fake: FakeApi) -> None:
        """An older server answers GET /sender with 404: no line, no notice, however often it is asked."""
        fake.current_sender = None
        app = make_console(fake, refresh_scale=0.05)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: fake.calls.count("sender") >= 4)
            assert not app.screen.query_one(SenderIndicator).display
            assert notices(app) == []
            assert app.connection == "ok"

    async def test_sender_command_tells_the_details(self, fake: FakeApi) -> None:
        """The palette's Sender command names the number, account, token hint, and what holds it back."""
        assert fake.current_sender is not None
        fake.current_sender = msgspec.structs.replace(
            fake.current_sender,
            own=True,
            phone_number_id="100000000000002",
            waba_id="200000000000002",
            backoff_until=datetime.now(UTC) + timedelta(seconds=30),
            backoff_reason="(#130429) Rate limit hit",
        )
        app = make_console(fake)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.sender is not None)
            (command,) = [c for c in app.get_system_commands(app.screen) if c.title == "Sender"]
            command.callback()
            await pilot.pause()
            (notice,) = notices(app)
            assert notice.startswith("Sender: From own number 100000000000002 at 80 msg/s.")
            assert "WhatsApp Business Account 200000000000002" in notice
            assert "Access token …abcd" in notice
            assert "Backed off until" in notice
            assert "(#130429) Rate limit hit" in notice


def test_sender_times_carry_the_date_only_when_not_today() -> None:
    """'14:05:00' today in the employer's timezone; with the date when the hold ends another day there."""
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    tz = "Africa/Johannesburg"
    assert local_until(now + timedelta(minutes=5), tz, now) == "14:05:00"
    # 22:30 UTC is already tomorrow in Johannesburg.
    assert local_until(datetime(2026, 11, 28, 22, 30, tzinfo=UTC), tz, now) == "2026-11-29 00:30:00"
