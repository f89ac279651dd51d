"""Pilot tests of the console polish of issue 18, each at 120x40 and at 80x24.

Each test drives the console as an operator would (keys, resizes) against the in-memory FakeApi and asserts on
what ends up on the screen, so that a missing or broken item fails here.
"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from rich.console import Console
from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import Footer, Input, Label, OptionList, SelectionList, Sparkline, Static, TextArea
from textual.widgets._footer import FooterKey

from bot import contracts
from console.app import ConsoleApp, make_console
from console.paging import PAGE_SIZE
from console.screens import AnnouncementScreen, AnnouncementsScreen, ComposeScreen, ConfirmScreen
from console.screens.employees import EmployeesScreen
from console.screens.inbox import InboxScreen
from console.widgets.funnel import Funnel
from console.widgets.table import FittedTable
from tests.console.conftest import SIZES, until
from tests.console.fake_api import NOW, FakeApi


def fixed_clock(offset: timedelta = timedelta(0)) -> Any:
    """The console's clock stopped at NOW + offset: what 'in the past' and the header's time mean are known."""
    return lambda: NOW + offset


async def seed(fake: FakeApi, *messages: str, audience: contracts.Audience | None = None) -> list[int]:
    ids = []
    for message in messages:
        a = await fake.create_announcement(
            message, send_time=None, audience=audience, idempotency_key=f"seed-{len(fake.announcements)}"
        )
        ids.append(a.id)
    fake.calls.clear()
    return ids


def screen_text(app: ConsoleApp) -> list[str]:
    """The lines of the terminal as the operator sees them (what export_screenshot draws, as plain text)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False)
    # The same private call App.export_screenshot makes: Textual offers the screen only as SVG.
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False).splitlines()


def text_of(app: ConsoleApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Label).render())


def on_screen(app: ConsoleApp, selector: str) -> bool:
    """The widget is drawn, wholly inside the terminal (not scrolled away, not cut off by the edge)."""
    widget = app.screen.query_one(selector)
    region = widget.region
    return widget.display and region.area > 0 and region.right <= app.size.width and region.bottom <= app.size.height


async def open_compose(app: ConsoleApp, pilot: Pilot[None]) -> ComposeScreen:
    await pilot.press("n")
    await until(pilot, lambda: isinstance(app.screen, ComposeScreen))
    assert isinstance(app.screen, ComposeScreen)
    return app.screen


async def open_detail(app: ConsoleApp, pilot: Pilot[None]) -> AnnouncementScreen:
    await until(pilot, lambda: app.screen.query_one("#announcements", FittedTable).row_count > 0)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen) and app.screen.announcement is not None)
    assert isinstance(app.screen, AnnouncementScreen)
    return app.screen


# --- 1. API down while composing ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_compose_with_api_down_says_so_in_the_dialog_and_keeps_the_text(
    fake: FakeApi, size: tuple[int, int]
) -> None:
    """ctrl+s with the API unreachable: 'Not sent…' in the dialog, on screen; the dialog and the text stay."""
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        screen = await open_compose(app, pilot)
        await pilot.press(*"Fire drill at 10")
        fake.down = True
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))  # to everyone: asked first
        await pilot.press("y")
        await until(pilot, lambda: text_of(app, "#general-error").startswith("Not sent:"))
        assert "unreachable" in text_of(app, "#general-error")
        assert app.screen is screen
        assert screen.query_one("#message", TextArea).text == "Fire drill at 10"
        # Seen where the operator is looking, not only in a notice (at 80x24 too).
        assert on_screen(app, "#general-error")
        assert any("Not sent:" in line for line in screen_text(app))
        assert fake.announcements == {}


# --- 2. columns reflow when the terminal is resized ----------------------------------------------------------


def assert_columns_fit(app: ConsoleApp) -> None:
    """Progress, ack and total are columns of the list, and every column is inside the table (no side scroll)."""
    t = app.screen.query_one("#announcements", FittedTable)
    keys = [key for key, _ in t.column_layout]
    assert {"progress", "ack", "total"} <= set(keys)
    assert [str(c.key.value) for c in t.ordered_columns] == keys
    assert t.virtual_size.width <= t.scrollable_content_region.width
    header = next(line for line in screen_text(app) if "progress" in line)
    assert "ack" in header
    assert header.rstrip().endswith("total")


@pytest.mark.parametrize("size", SIZES)
async def test_resizing_keeps_every_column_in_both_directions(fake: FakeApi, size: tuple[int, int]) -> None:
    """From this size to the other and back, the list's columns are laid out again to fit the new width."""
    await seed(fake, "Shift starts at 8 tomorrow, please be on time for the safety briefing")
    other = (80, 24) if size[0] > 80 else (120, 40)
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        t = app.screen.query_one("#announcements", FittedTable)
        await until(pilot, lambda: t.row_count == 1)
        assert_columns_fit(app)
        widths = {size[0]: dict(t.column_layout)["message"]}
        for w, h in (other, size):
            await pilot.resize_terminal(w, h)
            await until(pilot, lambda w=w: app.size.width == w and t.size.width <= w)  # type: ignore[misc]
            assert_columns_fit(app)
            widths[w] = dict(t.column_layout)["message"]
            assert t.row_count == 1
        # The message takes what is left: more at 120 columns than at 80.
        assert widths[120] > widths[80]


# --- 3. the footer fits 80 columns ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_every_footer_hint_fits_on_every_screen(fake: FakeApi, size: tuple[int, int]) -> None:
    """On the list, an announcement, employees, inbox and compose, every key the footer offers is on the bottom
    line, with 'i Inbox' and 'q Quit' among them (the compose dialog has its own keys)."""
    await seed(fake, "Canteen closed today")
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.screen.query_one("#announcements", FittedTable).row_count == 1)

        def check(screen: str) -> None:
            footer = app.screen.query_one(Footer)
            keys = list(footer.query(FooterKey))
            assert keys, screen
            assert footer.virtual_size.width <= footer.size.width, f"{screen}: footer scrolls sideways"
            bottom = screen_text(app)[-1]
            for key in keys:
                assert key.region.right <= app.size.width, f"{screen}: {key.description} cut off"
                assert key.description in bottom, f"{screen}: {key.description} not on {bottom!r}"
            if isinstance(app.screen, ComposeScreen):
                return
            assert "q Quit" in bottom, screen
            if not isinstance(app.screen, InboxScreen):
                assert "i Inbox" in bottom, screen

        check("announcements")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen))
        check("announcement")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EmployeesScreen))
        check("employees")
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, InboxScreen))
        check("inbox")
        await open_compose(app, pilot)
        check("compose")


# --- 4. the header clock ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    ("timezone", "shown"), [("Africa/Johannesburg", "14:00 SAST"), ("America/New_York", "07:00 EST")]
)
async def test_header_clock_is_on_the_employers_clock(
    fake: FakeApi, size: tuple[int, int], timezone: str, shown: str
) -> None:
    """12:00 UTC is shown as the employer's time with its zone, and no UTC time is on screen."""
    fake.employer = msgspec.structs.replace(fake.employer, timezone=timezone)
    await seed(fake, "Payslips are out")
    app = make_console(fake, clock=fixed_clock())
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.timezone == timezone)
        await until(pilot, lambda: shown in screen_text(app)[0])
        lines = screen_text(app)
        assert "12:00" not in lines[0]
        assert not any("UTC" in line for line in lines)


# --- 5. keys that did nothing, and the empty filter -----------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_a_on_a_detail_goes_to_the_list(fake: FakeApi, size: tuple[int, int]) -> None:
    """'a' on the list shows the list; on an announcement's detail it does the same, rather than nothing."""
    await seed(fake, "Payslips are out")
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        await open_detail(app, pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))


@pytest.mark.parametrize("size", SIZES)
async def test_space_toggles_a_tag_before_any_arrow_key(fake: FakeApi, size: tuple[int, int]) -> None:
    """Tab into the tag list and press Space at once: the first tag is picked, and the count follows."""
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        screen = await open_compose(app, pilot)
        tags = screen.query_one("#tags", SelectionList)
        radio = screen.query_one("#audience-kind")
        radio.focus()
        screen.query_one("#kind-tags").value = True  # type: ignore[attr-defined]
        await until(pilot, lambda: tags.display and tags.option_count == 3)
        await pilot.press("tab")
        assert app.focused is tags
        await pilot.press("space")
        assert tags.selected == ["drivers"]  # tags are offered alphabetically
        await until(pilot, lambda: text_of(app, "#recipients") == "Recipients: 1 employee (opted-out excluded)")
        await pilot.press("space")
        assert tags.selected == []


@pytest.mark.parametrize("size", SIZES)
async def test_status_filter_without_matches_names_the_status(fake: FakeApi, size: tuple[int, int]) -> None:
    """No completed announcement: the list says so, not 'No announcements yet. Press n to write one.'"""
    await seed(fake, "Canteen closed today")
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        t = app.screen.query_one("#announcements", FittedTable)
        await until(pilot, lambda: t.row_count == 1)
        app.screen.query_one("#status-filter").value = "completed"  # type: ignore[attr-defined]
        await until(pilot, lambda: t.row_count == 0 and text_of(app, "#announcements-empty") != "")
        empty = text_of(app, "#announcements-empty")
        assert "completed" in empty
        assert "No announcements yet" not in empty
        assert on_screen(app, "#announcements-empty")


# --- 6. audience: shown on the detail, picked by name ----------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_detail_shows_who_a_scheduled_announcement_is_for(fake: FakeApi, size: tuple[int, int]) -> None:
    """Tags, everyone, or employees by name (not ids) on the detail of each scheduled announcement."""
    await seed(fake, "To everyone")
    await seed(fake, "To the warehouse", audience=contracts.Audience(tags=["warehouse"]))
    await seed(fake, "To two people", audience=contracts.Audience(employee_ids=[1, 3]))
    expected = {
        1: "To everyone",
        2: "To employees tagged warehouse",
        3: "To 2 named employees: Thandi Mokoena, Aisha Patel",
    }
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.screen.query_one("#announcements", FittedTable).row_count == 3)
        for aid, audience in expected.items():
            assert fake.announcements[aid].status == "scheduled"
            app.open_announcement(aid)
            await until(pilot, lambda: isinstance(app.screen, AnnouncementScreen) and app.screen.announcement_id == aid)  # noqa: B023
            await until(pilot, lambda: text_of(app, "#detail-audience").startswith(audience))  # noqa: B023
            assert on_screen(app, "#detail-audience")
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))


@pytest.mark.parametrize("size", SIZES)
async def test_audience_picker_finds_employees_by_name_as_you_type(fake: FakeApi, size: tuple[int, int]) -> None:
    """'by name': typing part of a name lists the matches (no Enter needed); Enter adds; they are sent as ids."""
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        screen = await open_compose(app, pilot)
        await pilot.press(*"Overtime on Sunday")
        screen.query_one("#kind-ids").value = True  # type: ignore[attr-defined]
        search = screen.query_one("#people-search", Input)
        matches = screen.query_one("#people-matches", OptionList)
        await until(pilot, lambda: search.display)
        search.focus()
        await pilot.press(*"pie")
        await until(pilot, lambda: matches.option_count == 1)
        assert "Pieter van Wyk" in str(matches.get_option_at_index(0).prompt)
        await pilot.press("enter")
        await until(pilot, lambda: text_of(app, "#recipients") == "Recipients: 1 employee (opted-out excluded)")
        search.value = ""
        await pilot.press(*"ais")
        await until(pilot, lambda: matches.option_count == 1 and "Aisha" in str(matches.get_option_at_index(0).prompt))
        await pilot.press("enter")
        chosen = screen.query_one("#people-chosen", OptionList)
        await until(pilot, lambda: chosen.option_count == 2)
        assert [str(chosen.get_option_at_index(i).prompt) for i in range(2)] == ["− Pieter van Wyk", "− Aisha Patel"]
        await pilot.press("ctrl+s")  # named people, now: nothing to ask
        await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
        (created,) = fake.announcements.values()
        assert created.audience == contracts.Audience(employee_ids=[2, 3])


# --- 7. paging ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_lists_page_past_the_first_page_and_say_where_they_are(fake: FakeApi, size: tuple[int, int]) -> None:
    """More announcements and employees than one page: ']' shows the rest, '[' goes back; the position is shown."""
    extra = 5
    await seed(fake, *(f"Notice {i}" for i in range(PAGE_SIZE + extra)))
    for i in range(PAGE_SIZE + extra - len(fake.employees)):
        fake.add_employee(f"Worker {i:03d}")
    total = PAGE_SIZE + extra
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        t = app.screen.query_one("#announcements", FittedTable)
        await until(pilot, lambda: t.row_count == PAGE_SIZE)
        assert text_of(app, "#announcements-position").startswith(f"rows 1–{PAGE_SIZE}")
        assert "] next page" in text_of(app, "#announcements-position")
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: t.row_count == extra)
        assert text_of(app, "#announcements-position").startswith(f"rows {PAGE_SIZE + 1}–{total}")
        assert t.get_row_at(0)[0] == str(extra)  # the oldest ones: ids 5 down to 1
        assert on_screen(app, "#announcements-position")
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: t.row_count == PAGE_SIZE)
        assert t.get_row_at(0)[0] == str(total)

        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, EmployeesScreen))
        e = app.screen.query_one("#employees", FittedTable)
        await until(pilot, lambda: e.row_count == PAGE_SIZE)
        assert text_of(app, "#employees-position").startswith(f"rows 1–{PAGE_SIZE} of {total}")
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: e.row_count == extra)
        assert text_of(app, "#employees-position").startswith(f"rows {PAGE_SIZE + 1}–{total} of {total}")


# --- 8. compose: audience size and confirmation ---------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_compose_shows_audience_size_and_asks_for_everyone_or_a_past_time(
    fake: FakeApi, size: tuple[int, int]
) -> None:
    """The recipient count is on screen; everyone, or a time already past, is asked about with that count;
    a tag audience at a future time is sent without a question."""
    app = make_console(fake, clock=fixed_clock())  # 14:00 in Johannesburg
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.timezone == "Africa/Johannesburg")
        screen = await open_compose(app, pilot)
        await until(
            pilot, lambda: text_of(app, "#recipients") == "Recipients: everyone: 3 employees (opted-out excluded)"
        )
        assert on_screen(app, "#recipients")
        await pilot.press(*"Stocktake on Saturday")
        when = screen.query_one("#send-time", Input)

        # Everyone, at a future time: asked, with how many that is.
        when.value = "2026-12-01 09:00"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        consequence = str(app.screen.query_one("#confirm-consequence", Static).render())
        assert "everyone: 3 employees" in consequence
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen)

        # A tag audience, at a time already past: asked too, and 'no' sends nothing.
        screen.query_one("#kind-tags").value = True  # type: ignore[attr-defined]
        tags = screen.query_one("#tags", SelectionList)
        await until(pilot, lambda: tags.option_count == 3)
        tags.select("warehouse")
        await until(pilot, lambda: text_of(app, "#recipients") == "Recipients: 2 employees (opted-out excluded)")
        when.value = "2026-11-28 13:30"  # 11:30 UTC, half an hour ago
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        consequence = str(app.screen.query_one("#confirm-consequence", Static).render())
        assert "2026-11-28 13:30 SAST has passed" in consequence
        assert "2 employees" in consequence
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen)
        assert app.focused is when
        assert fake.announcements == {}

        # The same tag audience, later today: no question.
        when.value = "2026-11-28 16:00"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
        (created,) = fake.announcements.values()
        assert created.audience == contracts.Audience(tags=["warehouse"])


# --- 9. inbox -----------------------------------------------------------------------------------------------


def inbound(mid: int, employee_id: int, name: str, text: str, *, kind: str = "text") -> contracts.InboundMessage:
    return contracts.InboundMessage(
        id=mid,
        employee_id=employee_id,
        employee_name=name,
        type=kind,
        text=text,
        announcement_id=1,
        received_at=NOW + timedelta(minutes=mid),
    )


@pytest.mark.parametrize("size", SIZES)
async def test_inbox_hides_acknowledgements_and_groups_by_employee(fake: FakeApi, size: tuple[int, int]) -> None:
    """Acknowledgements (quoting replies, quick-reply taps) start hidden, left out by the server ('h' shows them);
    'g' puts each employee's messages together."""
    # The questions quote no announcement: the server files only what acknowledged one as an acknowledgement.
    fake.messages = [
        inbound(1, 1, "Thandi Mokoena", "Got it, thanks 👍"),
        msgspec.structs.replace(inbound(2, 2, "Pieter van Wyk", "Is Saturday paid overtime?"), announcement_id=None),
        inbound(3, 3, "Aisha Patel", "OK", kind="button"),
        msgspec.structs.replace(inbound(4, 1, "Thandi Mokoena", "Can I swap with Pieter?"), announcement_id=None),
        inbound(5, 2, "Pieter van Wyk", "ok"),
    ]
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, InboxScreen))
        t = app.screen.query_one("#inbox", FittedTable)

        def texts() -> list[object]:
            return [
                t.cell(str(t.coordinate_to_cell_key(Coordinate(r, 0)).row_key.value), "text")
                for r in range(t.row_count)
            ]

        await until(pilot, lambda: t.row_count == 2)
        assert texts() == ["Can I swap with Pieter?", "Is Saturday paid overtime?"]
        assert "acknowledgements hidden" in text_of(app, "#inbox-position")
        assert fake.message_filters[-1]["acknowledgements"] is False
        await pilot.press("h")
        await until(pilot, lambda: t.row_count == 5)
        assert texts()[0] == "ok"
        await pilot.press("g")
        await pilot.pause()
        # Alphabetically by employee, newest first within; the name heads its group only.
        assert texts() == ["OK", "ok", "Is Saturday paid overtime?", "Can I swap with Pieter?", "Got it, thanks 👍"]
        names = [t.cell(str(t.coordinate_to_cell_key(Coordinate(r, 0)).row_key.value), "from") for r in range(5)]
        assert names == ["Aisha Patel (1)", "Pieter van Wyk (2)", "", "Thandi Mokoena (2)", ""]
        assert "grouped by employee (3)" in text_of(app, "#inbox-view")


# --- 10. funnel and timeline on the detail --------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_detail_shows_the_funnel_and_the_reads_and_acks_over_time(fake: FakeApi, size: tuple[int, int]) -> None:
    """audience 3 → sent 3 → delivered 3 → read 2 → acknowledged 1, and per-minute sparklines of reads and acks."""
    (aid,) = await seed(fake, "Payslips are out")
    fake.set_delivery_statuses(aid, ["read", "read", "delivered"])
    rows = fake.deliveries[aid]
    minute = timedelta(minutes=1)
    rows[0] = msgspec.structs.replace(rows[0], delivered_at=NOW, read_at=NOW + minute, acknowledged_at=NOW + 3 * minute)
    rows[1] = msgspec.structs.replace(rows[1], delivered_at=NOW, read_at=NOW + 3 * minute)
    rows[2] = msgspec.structs.replace(rows[2], delivered_at=NOW)
    app = make_console(fake, clock=fixed_clock(timedelta(minutes=10)))
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.timezone == "Africa/Johannesburg")
        screen = await open_detail(app, pilot)
        funnel = screen.query_one("#funnel", Funnel)
        await until(pilot, lambda: funnel.counts is not None and funnel.counts.total == 3)
        drawn = [" ".join(line.split()) for line in str(funnel.render()).splitlines()]
        assert [line.split()[0] for line in drawn] == ["audience", "sent", "delivered", "read", "acknowledged"]
        assert [line.split()[-2:] for line in drawn] == [
            ["3", "100%"], ["3", "100%"], ["3", "100%"], ["2", "66%"], ["1", "33%"],
        ]  # fmt: skip
        assert "timeline" in fake.calls
        # Minutes 14:00 … 14:03 SAST, empty ones as 0, after a leading 0.
        await until(pilot, lambda: list(screen.query_one("#reads-spark", Sparkline).data or []) == [0, 0, 1, 0, 1])
        assert list(screen.query_one("#acks-spark", Sparkline).data or []) == [0, 0, 0, 0, 1]
        assert text_of(app, "#timeline-span") == "14:00 → 14:03 SAST, per minute"
        for selector in ("#funnel", "#reads-spark", "#acks-spark", "#timeline-span"):
            assert on_screen(app, selector), selector
        lines = screen_text(app)
        assert any("acknowledged" in line and "33%" in line for line in lines)
        assert any("14:00 → 14:03 SAST" in line for line in lines)
