"""Compose as a template (issue 16): choose one, fill its parameters and header, see the preview, send; the
server's 422s land next to their fields; Sync templates; media uploaded on send. Pilot against the FakeApi."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Label, Select, Static

from bot import contracts
from bot.templates.service import to_contract
from console.api import ApiError
from console.app import ConsoleApp, make_console
from console.screens import AnnouncementsScreen, ComposeScreen, ConfirmScreen
from console.templates import group_templates, template_error_target
from tests.console.conftest import SIZES, until
from tests.console.fake_api import FakeApi, catalogue_template

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def text(app: ConsoleApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Label).render())


def preview(app: ConsoleApp) -> str:
    return str(app.screen.query_one("#preview", Static).render())


async def open_template_compose(app: ConsoleApp, pilot: Pilot[Any]) -> ComposeScreen:
    """Open compose and switch to a template with the keyboard (ctrl+t); wait for the templates."""
    await pilot.press("n")
    await until(pilot, lambda: isinstance(app.screen, ComposeScreen))
    screen = app.screen
    assert isinstance(screen, ComposeScreen)
    await pilot.press("ctrl+t")
    await until(pilot, lambda: text(app, "#templates-status") == "Templates: 4 templates")
    assert screen.query_one("#template-part").display
    assert not screen.query_one("#text-part").display
    return screen


async def choose(app: ConsoleApp, pilot: Pilot[Any], name: str) -> None:
    app.screen.query_one("#template", Select).value = name
    await until(pilot, lambda: app.screen.query_one("#template", Select).value == name)
    await pilot.pause()


async def type_into(pilot: Pilot[Any], app: ConsoleApp, selector: str, value: str) -> None:
    app.screen.query_one(selector, Input).focus()
    await pilot.press(*value)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
async def test_template_with_uploaded_image_is_previewed_and_sent_with_the_media_id(
    fake: FakeApi, size: tuple[int, int], tmp_path: Path
) -> None:
    """Keyboard only: pick shift_notice from the Select, type its two parameters (the preview fills in as typed),
    give a local PNG; Send uploads it (POST /media) and the announcement names its media_id."""
    photo = tmp_path / "roster.png"
    photo.write_bytes(PNG)
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        screen = await open_template_compose(app, pilot)
        select = screen.query_one("#template", Select)
        select.focus()
        # The options: one per name, with its languages, sorted: shift_notice is the third after the blank.
        labels = [str(prompt) for prompt, _ in select._options]  # what the overlay lists
        assert "shift_notice · af, en_US · image header · 2 parameters" in labels
        assert not any("draft_notice" in label for label in labels)  # not approved
        await pilot.press("enter", "down", "down", "down", "enter")
        await until(pilot, lambda: select.value == "shift_notice")
        assert "Hi team, {{1}} starts on {{2}}." in preview(app)
        hints = [str(label.render()) for label in screen.query(".param-label").results(Label)]
        assert hints == ["{{1}} in “Hi team, {{1}} starts on {{2}}.”", "{{2}} in “…i team, {{1}} starts on {{2}}.”"]
        await pilot.press("tab")  # the Sync button, then the header input
        await pilot.press("tab")
        assert app.focused is screen.query_one("#header-value", Input)
        await pilot.press(*str(photo))
        await pilot.press("tab", *"the night shift", "tab", *"Monday")
        await pilot.pause()
        assert preview(app).splitlines()[:2] == ["[image: roster.png]", "Hi team, the night shift starts on Monday."]
        assert "Got it" in preview(app)
        assert "uploaded when you send" in text(app, "#header-info")
        # The Send button stays on screen at 80×24 (the form scrolls, the buttons do not).
        assert screen.query_one("#submit", Button).region.bottom <= size[1]
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))  # everyone: asked first
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
    assert fake.uploads == [("roster.png", PNG)]
    (created,) = fake.announcements.values()
    assert created.template == contracts.TemplateUse(
        name="shift_notice",
        parameters=["the night shift", "Monday"],
        header=contracts.TemplateHeader(media_id="media-1"),
    )
    assert created.preview.startswith("[image: media-1]\nHi team, the night shift starts on Monday.")


@pytest.mark.parametrize("size", SIZES)
async def test_missing_values_are_flagged_at_their_fields_before_anything_is_sent(
    fake: FakeApi, size: tuple[int, int]
) -> None:
    """No template → said at the Select; then an empty parameter and no header value → said at each field."""
    app = make_console(fake)
    async with app.run_test(size=size) as pilot:
        await open_template_compose(app, pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert text(app, "#template-error").startswith("choose a template")
        await choose(app, pilot, "shift_notice")
        await type_into(pilot, app, "#param-1", "x")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert text(app, "#template-error") == ""
        assert text(app, "#param-1-error") == ""
        assert text(app, "#param-2-error") == "must not be empty"
        assert "https:// link" in text(app, "#header-error")
        app.screen.query_one("#header-value", Input).value = "http://example.com/a.png"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert text(app, "#header-error") == "a link must be https://"
    assert "create_announcement" not in fake.calls
    assert "upload_media" not in fake.calls


async def test_server_422s_are_shown_at_the_template_fields(fake: FakeApi) -> None:
    """A 422 naming template.parameters[1] is shown under the second parameter; one naming template.parameters
    (the template changed in WhatsApp since it was listed) under the template; the dialog stays open."""
    app = make_console(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_template_compose(app, pilot)
        await choose(app, pilot, "titled_notice")
        assert text(app, "#header-label") == "Header: Notice: {{1}}"
        await type_into(pilot, app, "#header-value", "Fire drill")
        await type_into(pilot, app, "#param-1", "Leave by the east stairs")
        assert preview(app).splitlines()[:2] == ["Notice: Fire drill", "Leave by the east stairs"]
        original = fake.create_announcement

        async def refuse_second(*args: Any, **kwargs: Any) -> contracts.Announcement:
            raise ApiError(422, "Unprocessable Entity", "Validation failed.", {"template.parameters[1]": "too rude"})

        # The server's rule names the second parameter; the form has only one here: the message is not lost.
        fake.create_announcement = refuse_second  # type: ignore[method-assign]
        screen.query_one("#kind-tags").value = True  # type: ignore[attr-defined]  (no "everyone?" question)
        await until(pilot, lambda: screen.query_one("#tags").option_count == 3)  # type: ignore[attr-defined]
        screen.query_one("#tags").select("warehouse")  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "too rude" in text(app, "#general-error"))
        assert "param-2: too rude" in text(app, "#general-error")
        fake.create_announcement = original  # type: ignore[method-assign]
        # WhatsApp's titled_notice now takes two parameters; the server says so about template.parameters.
        fake.templates = [
            catalogue_template("titled_notice", "{{1}} {{2}}", header="text", header_text="Notice: {{1}}")
            if t.name == "titled_notice"
            else t
            for t in fake.templates
        ]
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "takes 2 body parameter(s), got 1" in text(app, "#template-error"))
        assert isinstance(app.screen, ComposeScreen)
        assert text(app, "#param-1-error") == ""
        assert fake.announcements == {}


async def test_server_422_at_a_parameter_lands_under_that_input(fake: FakeApi) -> None:
    """template.parameters[1] from the server → the error line of the second input ({{2}})."""
    app = make_console(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_template_compose(app, pilot)
        await choose(app, pilot, "shift_notice")
        screen.query_one("#header-value", Input).value = "https://example.com/roster.png"
        screen.query_one("#param-1", Input).value = "Team A"
        screen.query_one("#param-2", Input).value = "Monday"
        await pilot.pause()
        assert preview(app).startswith("[image: https://example.com/roster.png]\nHi team, Team A starts on Monday.")

        async def refuse(*args: Any, **kwargs: Any) -> contracts.Announcement:
            raise ApiError(
                422, "Unprocessable Entity", "Validation failed.", {"template.parameters[1]": "is 1100 characters"}
            )

        fake.create_announcement = refuse  # type: ignore[method-assign]
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: text(app, "#param-2-error") == "is 1100 characters")
        assert text(app, "#param-1-error") == ""
        assert isinstance(app.screen, ComposeScreen)
        assert not screen.query_one("#submit", Button).disabled


async def test_link_header_is_sent_as_a_link_without_upload(fake: FakeApi) -> None:
    """An https:// link for a document header goes in header.link; nothing is uploaded."""
    app = make_console(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_template_compose(app, pilot)
        await choose(app, pilot, "policy_update")
        screen.query_one("#header-value", Input).value = "https://example.com/policy.pdf"
        screen.query_one("#param-1", Input).value = "the leave policy"
        await pilot.pause()
        assert "a link" in text(app, "#header-info")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
    (created,) = fake.announcements.values()
    assert created.template is not None
    assert created.template.header == contracts.TemplateHeader(link="https://example.com/policy.pdf")
    assert fake.uploads == []


async def test_refused_upload_is_shown_at_the_header_and_nothing_is_created(fake: FakeApi, tmp_path: Path) -> None:
    """A file WhatsApp does not take (415) → the server's reason under the header; a retry with a good file
    uploads that one and sends it, once."""
    gif = tmp_path / "logo.gif"
    gif.write_bytes(b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\x01\x00;")
    app = make_console(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_template_compose(app, pilot)
        await choose(app, pilot, "shift_notice")
        screen.query_one("#header-value", Input).value = str(gif)
        screen.query_one("#param-1", Input).value = "Team A"
        screen.query_one("#param-2", Input).value = "Monday"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: "not uploaded" in text(app, "#header-error"))
        assert "(415)" in text(app, "#header-error")
        assert text(app, "#general-error") == "Not sent: the header file was not uploaded."
        assert "create_announcement" not in fake.calls
        photo = tmp_path / "team.png"
        photo.write_bytes(PNG)
        screen.query_one("#header-value", Input).value = str(photo)
        await pilot.press("ctrl+s")  # already confirmed: not asked again
        await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
    assert [name for name, _ in fake.uploads] == ["team.png"]
    assert len(fake.announcements) == 1


async def test_sync_reloads_the_templates_and_says_how_many(fake: FakeApi) -> None:
    """A template approved in WhatsApp Manager after the console listed them appears after Sync templates
    (ctrl+r); a refused sync (409) is one line in the form, not a crash."""
    app = make_console(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_template_compose(app, pilot)
        fake.graph_templates.append(catalogue_template("payday", "Pay lands on {{1}}."))
        await pilot.press("ctrl+r")
        await until(pilot, lambda: text(app, "#templates-status") == "Templates: 5 templates (synced 7 translations)")
        assert "sync_templates" in fake.calls
        await choose(app, pilot, "payday")
        screen.query_one("#param-1", Input).value = "25 November"
        await pilot.pause()
        assert preview(app) == "Pay lands on 25 November."
        fake.sync_refused = True
        await pilot.click("#sync-templates")
        await until(pilot, lambda: "not synced" in text(app, "#templates-status"))
        assert "(409)" in text(app, "#templates-status")
        assert isinstance(app.screen, ComposeScreen)
        assert screen.query_one("#template", Select).value == "payday"  # the choice is kept


async def test_text_preview_and_switching_back_to_text(fake: FakeApi) -> None:
    """For text the preview is the message; switching to a template and back keeps the text and sends text."""
    app = make_console(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ComposeScreen))
        await pilot.press(*"Canteen closed")
        await pilot.pause()
        assert preview(app) == "Canteen closed"
        assert "list_templates" not in fake.calls  # loaded only when a template is wanted
        await pilot.press("ctrl+t")
        await until(pilot, lambda: "list_templates" in fake.calls)
        assert preview(app) == "(choose a template)"
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert preview(app) == "Canteen closed"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, AnnouncementsScreen))
    (created,) = fake.announcements.values()
    assert (created.message, created.template) == ("Canteen closed", None)


async def test_api_down_while_listing_templates_is_one_clear_line(fake: FakeApi) -> None:
    """The API going away while the templates load is one line where they would be, not a crash."""
    fake.down = True
    app = make_console(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        fake.down = False
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, ComposeScreen))
        fake.down = True
        await pilot.press("ctrl+t")
        await until(pilot, lambda: "unreachable" in text(app, "#templates-status"))
        assert isinstance(app.screen, ComposeScreen)


def test_template_choices_and_error_targets() -> None:
    """One choice per approved name; a fixed text header needs no value; API fields map onto form fields."""
    fake = FakeApi()
    items = [t for t in fake.templates if t.approved]
    choices = group_templates([to_contract(t) for t in items])
    assert [c.name for c in choices] == ["fixed_header", "policy_update", "shift_notice", "titled_notice"]
    fixed = choices[0]
    assert (fixed.header_line, fixed.header_has_parameter) == ("Important", False)
    assert fixed.preview(["hello"]) == "Important\nhello"
    assert template_error_target("template.parameters[0]") == "param-1"
    assert template_error_target("template.header.link") == "header"
    assert template_error_target("template.parameters") == "template"
    assert template_error_target("template.name") == "template"
    assert template_error_target("audience.tags[0]") is None
