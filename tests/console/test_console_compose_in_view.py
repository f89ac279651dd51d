"""Compose at 80x24 as the keyboard drives it: the focused field is never behind the Send/Close bar, a refused
send shows why where the operator looks (the first bad field is focused, its error line in view), and keys typed
in one burst (a fast typist on a busy machine, tmux send-keys) land in the fields they were typed into."""

from __future__ import annotations

from typing import Any

import pytest
from textual import events
from textual.keys import key_to_character
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, Label, Select, TextArea

from bot import contracts
from console.api import ApiError
from console.app import ConsoleApp, make_console
from console.screens import AnnouncementsScreen, ComposeScreen, ConfirmScreen
from tests.console.conftest import SIZES, until
from tests.console.fake_api import FakeApi


def burst(app: ConsoleApp, *keys: str) -> None:
    """Post keys the way a terminal delivers a burst: all of them read before the first is handled (Pilot.press
    waits for each key to be handled, so it never shows what happens when keys queue up)."""
    names = {" ": "space", "-": "minus", ":": "colon", ".": "full_stop", "/": "slash"}
    for key in keys:
        if len(key) == 1:
            app.post_message(events.Key(names.get(key, key), key))
        else:
            app.post_message(events.Key(key, key_to_character(key)))


def in_view(screen: ComposeScreen, widget: Widget) -> bool:
    """Wholly inside the scrolling fields' window, so above the docked recipients, error line and buttons."""
    window = screen.query_one("#compose-fields").region
    bottom_bar = screen.query_one("#compose-bottom").region
    region = widget.region
    return (
        region.height > 0 and region.y >= window.y and region.bottom <= window.bottom and region.bottom <= bottom_bar.y
    )


def label(screen: ComposeScreen, selector: str) -> Label:
    return screen.query_one(selector, Label)


async def open_compose(app: ConsoleApp, pilot: Pilot[Any]) -> ComposeScreen:
    await pilot.press("n")
    await until(pilot, lambda: isinstance(app.screen, ComposeScreen))
    assert isinstance(app.screen, ComposeScreen)
    return app.screen


async def open_template(app: ConsoleApp, pilot: Pilot[Any], name: str) -> ComposeScreen:
    """Compose switched to a template (ctrl+t) with `name` chosen and its inputs mounted."""
    screen = await open_compose(app, pilot)
    await pilot.press("ctrl+t")
    await until(pilot, lambda: str(label(screen, "#templates-status").render()).startswith("Templates: 4"))
    screen.query_one("#template", Select).value = name
    await until(pilot, lambda: bool(screen.query("#param-1")))
    return screen


async def tab_to(pilot: Pilot[Any], screen: ComposeScreen, selector: str) -> Widget:
    """Press tab until `selector` has the focus, as the operator would."""
    target = screen.query_one(selector)
    for _ in range(20):
        if screen.focused is target:
            await pilot.pause()
            return target
        await pilot.press("tab")
    raise AssertionError(f"tab never reached {selector}")


class TestFocusedFieldInView:
    @pytest.mark.parametrize("size", SIZES)
    async def test_tabbing_to_each_field_scrolls_it_above_the_button_bar(
        self, fake: FakeApi, size: tuple[int, int]
    ) -> None:
        """Text, then template: every field tab reaches, the last (send time) included, is wholly on screen above
        Recipients and the Send/Close buttons."""
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            screen = await open_compose(app, pilot)
            field = await tab_to(pilot, screen, "#send-time")
            assert in_view(screen, field)
            await pilot.press("ctrl+t")
            await until(pilot, lambda: str(label(screen, "#templates-status").render()).startswith("Templates: 4"))
            screen.query_one("#template", Select).value = "shift_notice"
            await until(pilot, lambda: bool(screen.query("#param-2")))
            screen.query_one("#template").focus()
            for selector in ("#header-value", "#param-1", "#param-2", "#send-time"):
                field = await tab_to(pilot, screen, selector)
                assert in_view(screen, field), selector


class TestErrorsInView:
    async def test_empty_message_refused_below_the_fold_focuses_the_message(self, fake: FakeApi) -> None:
        """At 80x24, scrolled down to the send time, ctrl+s with no message: the message box gets the focus and
        scrolls back into view with "write a message" under it (before, nothing visible happened)."""
        app = make_console(fake)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_compose(app, pilot)
            await tab_to(pilot, screen, "#send-time")
            assert not in_view(screen, screen.query_one("#message-error"))
            await pilot.press("ctrl+s")
            await until(pilot, lambda: in_view(screen, label(screen, "#message-error")))
            assert str(label(screen, "#message-error").render()) == "write a message"
            assert app.focused is screen.query_one("#message", TextArea)
            assert in_view(screen, screen.query_one("#message"))
            assert "create_announcement" not in fake.calls

    async def test_empty_parameter_refused_while_at_the_top_focuses_that_parameter(self, fake: FakeApi) -> None:
        """A template with its second value missing, ctrl+s from the template choice at the top: the focus moves
        down to {{2}}, its "must not be empty" in view."""
        app = make_console(fake)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_template(app, pilot, "shift_notice")
            screen.query_one("#header-value", Input).value = "https://example.com/roster.png"
            screen.query_one("#param-1", Input).value = "the night shift"
            screen.query_one("#template").focus()
            await pilot.pause()
            assert not in_view(screen, screen.query_one("#param-2"))
            await pilot.press("ctrl+s")
            await until(pilot, lambda: in_view(screen, label(screen, "#param-2-error")))
            assert str(label(screen, "#param-2-error").render()) == "must not be empty"
            assert app.focused is screen.query_one("#param-2", Input)
            assert in_view(screen, screen.query_one("#param-2"))
            assert not isinstance(app.screen, ConfirmScreen)

    async def test_server_422_on_a_field_out_of_view_focuses_it(self, fake: FakeApi) -> None:
        """The server refuses the send time (422) while the operator is at the message: the send time gets the
        focus, its error line in view; the dialog stays open."""

        async def refuse(*args: Any, **kwargs: Any) -> contracts.Announcement:
            raise ApiError(422, "Unprocessable Entity", "Validation failed.", {"body.send_time": "too far ahead"})

        fake.create_announcement = refuse  # type: ignore[method-assign]
        app = make_console(fake)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_compose(app, pilot)
            screen.query_one("#message", TextArea).text = "Stocktake on Saturday"
            screen.query_one("#message").focus()
            await pilot.pause()
            assert not in_view(screen, screen.query_one("#send-time"))
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: str(label(screen, "#send_time-error").render()) == "too far ahead")
            await until(pilot, lambda: in_view(screen, label(screen, "#send_time-error")))
            assert app.screen is screen
            assert app.focused is screen.query_one("#send-time", Input)
            assert in_view(screen, screen.query_one("#send-time"))


class TestKeysInOneBurst:
    @pytest.mark.parametrize("size", SIZES)
    async def test_text_compose_typed_in_one_burst_reaches_the_confirmation(
        self, fake: FakeApi, size: tuple[int, int]
    ) -> None:
        """Message, tab, tab, send time, ctrl+s in one burst: the message and the time land in their own fields,
        ctrl+s sees both (it no longer runs ahead of the keys before it), asks, and creates the announcement."""
        app = make_console(fake)
        async with app.run_test(size=size) as pilot:
            screen = await open_compose(app, pilot)
            burst(app, *"Fire drill at 10", "tab", "tab", *"2030-01-01 09:00", "ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert screen.query_one("#message", TextArea).text == "Fire drill at 10"
            assert screen.query_one("#send-time", Input).value == "2030-01-01 09:00"
            await pilot.press("y")
            await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
        (created,) = fake.announcements.values()
        assert created.message == "Fire drill at 10"
        assert created.send_time.isoformat() == "2030-01-01T09:00:00+02:00"

    async def test_template_compose_typed_in_one_burst_reaches_the_confirmation(self, fake: FakeApi) -> None:
        """Header link, tab, {{1}}, tab, {{2}}, ctrl+s in one burst at 80x24: each value in its own input, the
        confirmation shows, and the announcement is created with both parameters."""
        app = make_console(fake)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_template(app, pilot, "shift_notice")
            await tab_to(pilot, screen, "#header-value")
            burst(app, *"https://example.com/r.png", "tab", *"the night shift", "tab", *"Monday", "ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            values = [screen.query_one(s, Input).value for s in ("#header-value", "#param-1", "#param-2")]
            assert values == ["https://example.com/r.png", "the night shift", "Monday"]
            await pilot.press("y")
            await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
        (created,) = fake.announcements.values()
        assert created.template == contracts.TemplateUse(
            name="shift_notice",
            parameters=["the night shift", "Monday"],
            header=contracts.TemplateHeader(link="https://example.com/r.png"),
        )
