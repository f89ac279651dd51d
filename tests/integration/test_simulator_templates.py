"""The simulator's template catalogue, template sends checked like Meta's, media uploads, the 24-hour window and
the check of every send against Meta's OpenAPI description (docs/whatsapp.md#the-simulator)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from bot.graph.messages import choice_list, interactive_message, template_message, text_message
from bot.settings import Settings, Template
from bot.simulator.app import create_simulator_app
from bot.simulator.catalogue import parse_catalogue
from bot.simulator.numbers import SimulatedNumber
from bot.simulator.phone import SimulatorConfig, bsuid_for
from tests.integration.test_simulator import Receiver, poll, simulator

URL = "/v23.0/100000000000001/messages"
TEMPLATES = "/v23.0/200000000000001/message_templates"
MEDIA = "/v23.0/100000000000001/media"
AUTH = {"Authorization": "Bearer test-token"}
PHONE = "27820000001"
PDF = b"%PDF-1.4 the policy"
PNG = b"\x89PNG\r\n\x1a\n a roster"


@asynccontextmanager
async def client(**options: Any) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_simulator_app(SimulatorConfig(seed=7, step_delay_s=0, **options))
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


def template_send(name: str, language: str, *components: dict[str, Any], to: str = "+" + PHONE) -> dict[str, Any]:
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        template["components"] = list(components)
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template",
            "template": template, "biz_opaque_callback_data": "jem:1:abc"}  # fmt: skip


def body(*texts: str) -> dict[str, Any]:
    return {"type": "body", "parameters": [{"type": "text", "text": text} for text in texts]}


def header(kind: str, value: dict[str, Any] | str) -> dict[str, Any]:
    parameter = {"type": "text", "text": value} if kind == "text" else {"type": kind, kind: value}
    return {"type": "header", "parameters": [parameter]}


def quick_reply(index: Any = "0", payload: str = "ack:1") -> dict[str, Any]:
    return {"type": "button", "sub_type": "quick_reply", "index": index,
            "parameters": [{"type": "payload", "payload": payload}]}  # fmt: skip


def error_of(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    return error


# --- the catalogue ------------------------------------------------------------------------------------------


async def test_the_default_catalogue_is_listed_in_graphs_shape() -> None:
    async with client() as c:
        answer = (await c.get(TEMPLATES, headers=AUTH)).json()
    listed = {(t["name"], t["language"]): t for t in answer["data"]}
    assert set(listed) == {
        ("staff_announcement", "en"), ("staff_announcement", "af"), ("staff_announcement", "zu"),
        ("policy_update", "en"), ("policy_update", "af"), ("policy_update", "zu"),
        ("roster_notice", "en"), ("roster_notice", "af"), ("shift_reminder", "en"), ("draft_notice", "en"),
    }  # fmt: skip
    assert listed[("draft_notice", "en")]["status"] == "PENDING"
    roster = listed[("roster_notice", "en")]
    assert set(roster) == {"name", "language", "status", "category", "id", "components"}
    assert roster["components"][0] == {"type": "HEADER", "format": "IMAGE"}
    assert roster["components"][1]["text"] == "Hi {{1}}, your roster for {{2}} is attached."
    # Ten templates fit one default page (25): cursors, and no `next` or `previous`.
    assert set(answer["paging"]) == {"cursors"}


async def test_paging_follows_after_cursors_and_next_urls_to_the_end() -> None:
    seen: list[str] = []
    async with client() as c:
        first = (await c.get(TEMPLATES, params={"limit": "4"}, headers=AUTH)).json()
        page = first
        while True:
            seen += [t["id"] for t in page["data"]]
            assert len(page["data"]) <= 4
            if "next" not in page["paging"]:
                break
            assert page["paging"]["next"].startswith("http://testserver.local/v23.0/200000000000001/message_templates?")
            assert "after=" + page["paging"]["cursors"]["after"] in page["paging"]["next"]
            page = (await c.get(page["paging"]["next"], headers=AUTH)).json()
        last = page
        back = (await c.get(TEMPLATES, params={"limit": "4", "before": last["paging"]["cursors"]["before"]},
                            headers=AUTH)).json()  # fmt: skip
    assert len(seen) == len(set(seen)) == 10
    assert "previous" not in first["paging"]
    assert "previous" in last["paging"]
    assert [t["id"] for t in back["data"]] == seen[4:8]


async def test_fields_and_status_filter() -> None:
    async with client() as c:
        approved = (await c.get(TEMPLATES, params={"status": "APPROVED", "fields": "name,language"},
                                headers=AUTH)).json()  # fmt: skip
        bad = await c.get(TEMPLATES, params={"fields": "name,colour"}, headers=AUTH)
        bad_cursor = await c.get(TEMPLATES, params={"after": "not-a-cursor"}, headers=AUTH)
    assert len(approved["data"]) == 9
    assert all(set(t) == {"name", "language", "id"} for t in approved["data"])
    assert bad.status_code == 400
    assert error_of(bad)["code"] == 100
    assert "colour" in error_of(bad)["message"]
    assert error_of(bad_cursor)["code"] == 100


async def test_catalogue_needs_a_token_of_the_account() -> None:
    number = SimulatedNumber("100000000000002", "acme-token")
    async with client(numbers=(number,)) as c:
        missing = await c.get(TEMPLATES)
        wrong = await c.get(TEMPLATES, headers={"Authorization": "Bearer someone-else"})
        right = await c.get(TEMPLATES, headers={"Authorization": "Bearer acme-token"})
    assert (missing.status_code, error_of(missing)["code"]) == (401, 190)
    assert (wrong.status_code, error_of(wrong)["code"]) == (401, 190)
    assert right.status_code == 200


# --- template sends -----------------------------------------------------------------------------------------


async def test_a_template_send_is_accepted_and_listed_rendered() -> None:
    send = template_send("roster_notice", "af", header("image", {"link": "https://example.com/roster.png"}),
                         body("Thandi", "Maart"), quick_reply())  # fmt: skip
    async with client() as c:
        response = await c.post(URL, json=send, headers=AUTH)
        listing = (await c.get("/_simulator/sends")).json()
    assert response.status_code == 200
    [message] = listing["recipients"][0]["messages"]
    assert message["template"] == "roster_notice"
    assert message["language"] == "af"
    header_line = "[image: https://example.com/roster.png]"
    assert message["text"] == f"{header_line}\nHallo Thandi, jou rooster vir Maart is aangeheg."


@pytest.mark.parametrize(
    ("send", "status", "code", "words"),
    [
        (template_send("no_such_template", "en", body("x")), 404, 132001, "(no_such_template) does not exist in en"),
        (template_send("roster_notice", "zu", header("image", {"link": "https://x/y.png"}), body("a", "b")),
         404, 132001, "does not exist in zu"),
        (template_send("draft_notice", "en", body("x")), 404, 132001, "draft_notice"),
        (template_send("staff_announcement", "en", body("a", "b")), 400, 132000, "localizable_params (2)"),
        (template_send("staff_announcement", "en"), 400, 132000, "expected number of params (1)"),
        (template_send("policy_update", "en", body("x")), 400, 132012, "expected DOCUMENT, received UNKNOWN"),
        (template_send("policy_update", "en", header("image", {"link": "https://x/y.png"}), body("x")),
         400, 132012, "expected DOCUMENT, received IMAGE"),
        (template_send("roster_notice", "en", header("text", "hello"), body("a", "b")),
         400, 132012, "expected IMAGE, received TEXT"),
        (template_send("staff_announcement", "en", header("image", {"link": "https://x/y.png"}), body("x")),
         400, 132012, "expected NONE, received IMAGE"),
        (template_send("staff_announcement", "en", body("line one\nline two")), 400, 132018, "new-line"),
        (template_send("staff_announcement", "en", body("tab\there")), 400, 132018, "new-line/tab"),
        (template_send("staff_announcement", "en", body("five     spaces")), 400, 132018, "4 consecutive spaces"),
        (template_send("staff_announcement", "en", body("x" * 1025)), 400, 132018, "1024"),
        (template_send("policy_update", "en", header("document", {"link": "https://x/p.pdf"}), body("x" * 1000)),
         400, 132005, "at most 1024"),
        (template_send("staff_announcement", "en", body("x"), quick_reply("1")), 400, 132000, "index 1"),
        (template_send("shift_reminder", "en", body("x"), quick_reply("0")), 400, 132000, "index 0"),
        (template_send("shift_reminder", "en", header("text", "x"), body("x")), 400, 132000, "header"),
        (template_send("policy_update", "en", header("document", {"id": "4490709327384033"}), body("x")),
         400, 131053, "4490709327384033"),
    ],
)  # fmt: skip
async def test_template_errors_are_metas(send: dict[str, Any], status: int, code: int, words: str) -> None:
    async with client() as c:
        response = await c.post(URL, json=send, headers=AUTH)
        stats = (await c.get("/_simulator/stats")).json()
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    assert error["message"].startswith(f"(#{code}) ")
    assert words in error["error_data"]["details"]
    assert stats["messages_accepted"] == 0
    assert stats["rejections"] == {str(code): 1}


async def test_the_tap_on_a_translated_template_is_its_label_with_the_payload_set() -> None:
    receiver = Receiver()
    send = template_send("staff_announcement", "zu", body("Umhlangano ngo-14:00"), quick_reply(payload="ack:9"))
    async with simulator(receiver, ack_rate=1.0) as c:
        assert (await c.post(URL, json=send, headers=AUTH)).status_code == 200
        await poll(lambda: len(receiver.messages()) == 1)
    [tap] = receiver.messages()
    assert tap["button"] == {"payload": "ack:9", "text": "Ngiyabonga"}


async def test_a_template_without_quick_reply_is_acknowledged_with_text() -> None:
    receiver = Receiver()
    send = template_send("shift_reminder", "en", body("Your shift starts at 06:00"))
    async with simulator(receiver, ack_rate=1.0) as c:
        assert (await c.post(URL, json=send, headers=AUTH)).status_code == 200
        await poll(lambda: len(receiver.messages()) == 1)
    [reply] = receiver.messages()
    assert reply["type"] == "text"


# --- media ---------------------------------------------------------------------------------------------------


async def test_an_uploaded_document_heads_a_template_send() -> None:
    async with client() as c:
        upload = await c.post(MEDIA, headers=AUTH, data={"messaging_product": "whatsapp", "type": "application/pdf"},
                              files={"file": ("policy.pdf", PDF, "application/pdf")})  # fmt: skip
        media_id = upload.json()["id"]
        described = (await c.get(f"/v23.0/{media_id}", headers=AUTH)).json()
        downloaded = await c.get(described["url"], headers=AUTH)
        send = template_send("policy_update", "en", header("document", {"id": media_id, "filename": "policy.pdf"}),
                             body("leave rules"), quick_reply())  # fmt: skip
        sent = await c.post(URL, json=send, headers=AUTH)
        as_image = await c.post(URL, headers=AUTH, json=template_send(
            "roster_notice", "en", header("image", {"id": media_id}), body("a", "b")))  # fmt: skip
        listing = (await c.get("/_simulator/sends")).json()
    assert upload.status_code == 200
    assert media_id.isdigit()
    assert described == {
        "messaging_product": "whatsapp",
        "url": described["url"],
        "mime_type": "application/pdf",
        "sha256": hashlib.sha256(PDF).hexdigest(),
        "file_size": str(len(PDF)),
        "id": media_id,
    }
    assert downloaded.content == PDF
    assert sent.status_code == 200
    assert listing["recipients"][0]["messages"][0]["text"] == (
        "[document: policy.pdf]\nPlease read the updated policy: leave rules"
    )
    assert (as_image.status_code, error_of(as_image)["code"]) == (400, 131053)


async def test_uploads_over_the_limit_or_of_other_types_are_refused() -> None:
    async with client() as c:
        big = await c.post(MEDIA, headers=AUTH, data={"messaging_product": "whatsapp", "type": "image/png"},
                           files={"file": ("big.png", PNG + b"\0" * (5 * 1024 * 1024), "image/png")})  # fmt: skip
        exe = await c.post(MEDIA, headers=AUTH, data={"messaging_product": "whatsapp", "type": "application/x-sh"},
                           files={"file": ("a.sh", b"#!/bin/sh", "application/x-sh")})  # fmt: skip
        no_token = await c.post(MEDIA, data={"messaging_product": "whatsapp", "type": "image/png"},
                                files={"file": ("r.png", PNG, "image/png")})  # fmt: skip
        unknown = await c.get("/v23.0/1234567890123456", headers=AUTH)
    assert (big.status_code, error_of(big)["code"]) == (400, 100)
    assert "File Too Large" in error_of(big)["error_data"]["details"]
    assert (exe.status_code, error_of(exe)["code"]) == (400, 100)
    assert "image/jpeg" in error_of(exe)["message"]
    assert (no_token.status_code, error_of(no_token)["code"]) == (401, 190)
    assert (unknown.status_code, error_of(unknown)["code"]) == (400, 100)


# --- the 24-hour window ---------------------------------------------------------------------------------------


async def test_enforce_window_refuses_text_until_the_employee_writes() -> None:
    receiver = Receiver()
    text = text_message(to="+" + PHONE, text="Fire drill at 14:00", callback_data="jem:1:abc")
    async with simulator(receiver, enforce_window=True, ack_rate=0.0, reply_rate=0.0) as c:
        closed = await c.post(URL, json=text, headers=AUTH)
        # A template always passes: it is how a business starts a conversation.
        opened_by = await c.post(URL, json=template_send("staff_announcement", "en", body("Hi")), headers=AUTH)
        posted = await c.post("/_simulator/inbound", json={"phone": "+" + PHONE, "text": "Hello?"})
        inside = await c.post(URL, json=text, headers=AUTH)
        other_number = await c.post("/v23.0/100000000000002/messages", json=text, headers=AUTH)
    assert closed.status_code == 400
    error = error_of(closed)
    assert (error["code"], error["message"]) == (131047, "(#131047) Re-engagement message")
    assert "24 hours" in error["error_data"]["details"]
    assert opened_by.status_code == 200
    assert posted.json()["posted"] is True
    assert inside.status_code == 200
    # The window is per business number: writing to one number opens nothing on another.
    assert error_of(other_number)["code"] == 131047


async def test_an_employees_reply_opens_the_window_and_it_closes_again() -> None:
    receiver = Receiver()
    async with simulator(receiver, enforce_window=True, ack_rate=1.0, window_s=0.5) as c:
        await c.post(URL, json=template_send("staff_announcement", "en", body("Hi")), headers=AUTH)
        await poll(lambda: len(receiver.messages()) == 1)  # the tap on "Got it"
        inside = await c.post(URL, json=text_message(to="+" + PHONE, text="Thanks!", callback_data="r1"),
                              headers=AUTH)  # fmt: skip
        await poll(lambda: len(receiver.messages()) == 2)  # the reply to that text, quoting it
        await asyncio.sleep(0.6)
        closed = await c.post(URL, json=text_message(to="+" + PHONE, text="Later", callback_data="r2"), headers=AUTH)
    assert inside.status_code == 200
    assert error_of(closed)["code"] == 131047


async def test_window_is_off_by_default() -> None:
    async with client() as c:
        response = await c.post(URL, json=text_message(to="+" + PHONE, text="hi", callback_data="c"), headers=AUTH)
    assert response.status_code == 200


# --- Meta's OpenAPI description ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"text": {"body": "hi", "colour": "red"}}, "colour"),
        ({"priority": "high"}, "priority"),
        ({"recipient_type": "everyone"}, "recipient_type"),
        ({"context": {"message_id": 7}}, "message_id"),
        ({"text": {"body": "hi", "preview_url": "yes"}}, "preview_url"),
    ],
)
async def test_a_body_the_description_refuses_is_100(change: dict[str, Any], words: str) -> None:
    send = {**text_message(to="+" + PHONE, text="hi", callback_data="c"), **change}
    async with client() as c:
        response = await c.post(URL, json=send, headers=AUTH)
    error = error_of(response)
    assert (response.status_code, error["code"], error["message"]) == (400, 100, "(#100) Invalid parameter")
    assert words in error["error_data"]["details"]


async def test_a_bad_button_index_is_refused_by_the_description() -> None:
    send = template_send("staff_announcement", "en", body("x"), quick_reply("first"))
    async with client() as c:
        response = await c.post(URL, json=send, headers=AUTH)
    assert error_of(response)["code"] == 100
    assert "index" in error_of(response)["error_data"]["details"]


async def test_every_shape_the_service_sends_is_accepted() -> None:
    """What bot/graph/messages.py and bot/templates build today, sent as the dispatcher sends them."""
    async with client() as c:
        await c.post(URL, json=text_message(to="+" + PHONE, text="warm up", callback_data="w"), headers=AUTH)
        bsuid = bsuid_for(PHONE)
        image = await c.post(MEDIA, headers=AUTH, data={"messaging_product": "whatsapp", "type": "image/png"},
                             files={"file": ("r.png", PNG, "image/png")})  # fmt: skip
        # The service's upload: the kind read from the content, no `type` field but the part's own.
        document = await c.post(MEDIA, headers=AUTH, data={"messaging_product": "whatsapp"},
                                files={"file": ("beleid.pdf", PDF, "application/pdf")})  # fmt: skip
        bodies = [
            text_message(to=PHONE, text="Fire drill at 14:00.", callback_data="jem:1:a"),
            text_message(to=PHONE, text="You are unsubscribed.", callback_data="jem:2:b", recipient_user_id=bsuid),
            template_message(to=PHONE, template=Template("staff_announcement", "en"), text="Fire drill",
                             callback_data="jem:3:c", ack_payload="ack:3"),
            interactive_message(to=PHONE, callback_data="jem:4:d", recipient_user_id=bsuid, interactive=choice_list(
                body="Which employer is your message for?", button="Choose employer",
                rows=[("employer:1", "Demo Ltd"), ("employer:2", "Acme Retail")])),
            interactive_message(to=PHONE, callback_data="jem:5:e", interactive={
                "type": "button", "body": {"text": "Is this about your shift?"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                                       {"type": "reply", "reply": {"id": "no", "title": "No"}}]}}),
            template_send("policy_update", "af", header("document", {"id": document.json()["id"],
                          "filename": "beleid.pdf"}), body("verlof"), quick_reply("0", "ack:6")),
            template_send("roster_notice", "en", header("image", {"link": "https://example.com/r.png"}),
                          body("Thandi", "March"), quick_reply(0, "ack:7")),
            template_send("roster_notice", "af", header("image", {"id": image.json()["id"]}), body("Thandi", "Maart")),
            template_send("shift_reminder", "en", body("Your shift starts at 06:00")),
        ]  # fmt: skip
        answers = [await c.post(URL, json=sent, headers=AUTH) for sent in bodies]
    for sent, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 200, (sent, answer.json())


# --- the command ----------------------------------------------------------------------------------------------


def test_templates_file_is_loaded_and_served(tmp_path: Path) -> None:
    from bot.commands.simulator import config_from_args
    from tests.unit.test_simulator_validation import parse

    catalogue = [{"name": "leave_notice", "language": "en_GB", "status": "APPROVED", "category": "UTILITY",
                  "components": [{"type": "BODY", "text": "Leave starts {{1}}"}]}]  # fmt: skip
    path = tmp_path / "templates.json"
    path.write_text(json.dumps(catalogue))
    config = config_from_args(Settings(), parse("--templates", str(path)))
    assert config.templates == parse_catalogue(catalogue)
    assert config.templates is not None
    assert config.templates[0].id.isdigit()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("not json", "is not JSON"),
        ("{}", "a JSON list of templates"),
        ('[{"name": "x", "language": "en", "status": "APPROVED", "category": "UTILITY", "components": []}]',
         "components"),
        ('[{"name": "x", "language": "en", "status": "APPROVED", "category": "UTILITY",'
         ' "components": [{"type": "BODY", "text": "{{2}}"}]}]', "without gaps"),
        ('[{"name": "Bad Name", "language": "en", "status": "APPROVED", "category": "UTILITY",'
         ' "components": [{"type": "BODY", "text": "x"}]}]', "name"),
    ],
)  # fmt: skip
def test_a_bad_templates_file_exits_2_with_one_line(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "templates.json"
    path.write_text(content)
    done = subprocess.run([sys.executable, "-m", "bot", "simulator", "--templates", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"--templates {path}" in lines[0]
    assert words in lines[0]
