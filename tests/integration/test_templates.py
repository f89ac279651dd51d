"""Templates, languages and media (issue 16): the catalogue read from Graph (`/templates`), template announcements
validated against it, the dispatcher sending each employee the right translation, `POST /media`, and languages on
employees and employers.

Two Graph mocks: the API's own calls (catalogue, media upload) go through `state.graph_http`, a plain httpx client
intercepted by respx's default mocker (`graph_api`); the dispatcher's sends go through the production transport,
intercepted by `graph_respx` (tests/graph_respx.py).
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import create_app
from bot.auth import generate_token, hash_token
from bot.dispatch.dispatcher import Dispatcher
from bot.graph.client import make_http_client
from bot.graph.errors import OUTSIDE_WINDOW_TITLE
from bot.settings import Settings, Template
from bot.templates import service as templates
from tests.conftest import GRAPH_URL, PHONE_NUMBER_ID, MakeTenant, Tenant
from tests.integration.test_dispatch_outcomes import accepted, graph_error
from tests.integration.test_own_numbers import (
    OWN,
    OWN_TOKEN,
    OWN_WABA,
    SECRET,
    cli_env,
    jem,
    make_dispatcher,
    one_line_error,
    put_sender,
    rows,
    scalar,
    settle,
)

Db = async_sessionmaker[AsyncSession]
Client = AsyncTestClient[Litestar]
Raw = dict[str, Any]

SHARED_WABA = "400000000000004"
SHARED_TOKEN = "test-graph-token"
CATALOGUE = f"/{SHARED_WABA}/message_templates"
OWN_CATALOGUE = f"/{OWN_WABA}/message_templates"
SENDS = f"/{PHONE_NUMBER_ID}/messages"
MB = 1024 * 1024


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with the installation's WABA id (templates) and JEM_SECRET_KEY (own numbers)."""
    return settings.replace(whatsapp_waba_id=SHARED_WABA, secret_key=SECRET)


@pytest.fixture
def graph_api() -> Iterator[respx.MockRouter]:
    """The API's own Graph calls (`state.graph_http`: catalogue reads, media uploads)."""
    with respx.mock(base_url=GRAPH_URL, assert_all_called=False) as router:
        yield router


# --- Graph's catalogue ------------------------------------------------------------------------------------------


def raw(
    name: str,
    language: str,
    body: str,
    *,
    status: str = "APPROVED",
    header: str | None = None,
    header_text: str | None = None,
    buttons: tuple[tuple[str, str], ...] = (),
    footer: str | None = None,
) -> Raw:
    """A template as `GET /{waba_id}/message_templates` lists it."""
    components: list[Raw] = []
    if header is not None:
        components.append({"type": "HEADER", "format": header, **({"text": header_text} if header_text else {})})
    components.append({"type": "BODY", "text": body})
    if footer is not None:
        components.append({"type": "FOOTER", "text": footer})
    if buttons:
        components.append({"type": "BUTTONS", "buttons": [{"type": t, "text": s} for t, s in buttons]})
    return {
        "name": name,
        "language": language,
        "status": status,
        "category": "UTILITY",
        "components": components,
        "id": str(zlib.crc32(f"{name}:{language}".encode())),
    }


SHIFT_BODY = "Hi team, {{1}} starts on {{2}}."
GOT_IT = (("QUICK_REPLY", "Got it"),)
# The announcement template: an image header, two body parameters, a quick reply; in Afrikaans, US English and
# Brazilian Portuguese (no Zulu).
SHIFT = [
    raw(
        "shift_notice", "af", "Hallo span, {{1}} begin op {{2}}.", header="IMAGE", buttons=(("QUICK_REPLY", "Reg so"),)
    ),
    raw("shift_notice", "en_US", SHIFT_BODY, header="IMAGE", buttons=GOT_IT, footer="Reply STOP to opt out"),
    raw("shift_notice", "pt_BR", "Oi equipe, {{1}} começa em {{2}}.", header="IMAGE", buttons=(("QUICK_REPLY", "Ok"),)),
]
POLICY = raw("policy_update", "en_US", "Please read: {{1}}", header="DOCUMENT")  # no buttons
# The quick reply is the second button: the acknowledgement goes on index 1.
LINKED = raw("linked_notice", "en_US", "{{1}}", buttons=(("URL", "Open roster"), ("QUICK_REPLY", "Got it")))
TITLED = raw("titled_notice", "en_US", "{{1}}", header="TEXT", header_text="Notice: {{1}}", buttons=GOT_IT)
FIXED = raw("fixed_header", "en_US", "{{1}}", header="TEXT", header_text="Important")
DRAFT = raw("draft_notice", "en_US", "{{1}}", status="PENDING")
REJECTED = raw("rejected_notice", "en_US", "Buy now {{1}}", status="REJECTED")
# Translations that take different parameters: unusable until they are made alike.
MIXED = [raw("mixed_notice", "en_US", "{{1}}"), raw("mixed_notice", "af", "{{1}} en {{2}}")]
EVERYTHING = [*SHIFT, POLICY, LINKED, TITLED, FIXED, DRAFT, REJECTED, *MIXED]
APPROVED = [t for t in EVERYTHING if t["status"] == "APPROVED"]


def pages(*chunks: list[Raw]) -> Callable[[httpx.Request], httpx.Response]:
    """Graph's paging: page i+1 is reached with `after=c<i>`; every page but the last has `paging.next` (the last
    still carries its cursors, as Graph's does)."""

    def answer(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        i = 0 if after is None else int(after.removeprefix("c")) + 1
        paging: Raw = {"cursors": {"before": f"b{i}", "after": f"c{i}"}}
        if i < len(chunks) - 1:
            paging["next"] = f"{GRAPH_URL}{CATALOGUE}?limit=100&after=c{i}"
        return httpx.Response(200, json={"data": chunks[i], "paging": paging})

    return answer


def catalogue(router: respx.MockRouter, items: list[Raw], path: str = CATALOGUE) -> respx.Route:
    """The account's catalogue on one page (a later call replaces the route's answer)."""
    return router.get(path).mock(side_effect=pages(items))


def refused(code: int = 190, message: str = "Error validating access token") -> httpx.Response:
    return httpx.Response(400, json={"error": {"message": message, "type": "OAuthException", "code": code}})


# --- helpers ----------------------------------------------------------------------------------------------------


async def employee(db: Db, tenant: Tenant, phone: str, language: str | None = None, name: str = "Thandi") -> int:
    async with db() as s, s.begin():
        q = text("INSERT INTO employee (employer_id, phone, name, language) VALUES (:e, :p, :n, :l) RETURNING id")
        return int((await s.execute(q, {"e": tenant.employer_id, "p": phone, "n": name, "l": language})).scalar_one())


async def set_employer_language(db: Db, tenant: Tenant, language: str | None) -> None:
    async with db() as s, s.begin():
        await s.execute(
            text("UPDATE employer SET language = :l WHERE id = :e"), {"l": language, "e": tenant.employer_id}
        )


async def full_budget(db: Db, number: str = PHONE_NUMBER_ID) -> None:
    async with db() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO send_budget (phone_number_id, tokens, refilled_at) VALUES (:p, 1e9, clock_timestamp()) "
                "ON CONFLICT (phone_number_id) DO UPDATE SET tokens = 1e9"
            ),
            {"p": number},
        )


async def create(client: Client, tenant: Tenant, body: Raw) -> Raw:
    r = await client.post("/announcements", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    created: Raw = r.json()
    return created


async def sync(client: Client, tenant: Tenant) -> int:
    r = await client.post("/templates/sync", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return int(r.json()["synced"])


async def listed(client: Client, tenant: Tenant, query: str = "") -> list[Raw]:
    r = await client.get(f"/templates{query}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    items: list[Raw] = r.json()["items"]
    return items


def names(items: list[Raw]) -> list[tuple[str, str]]:
    return [(t["name"], t["language"]) for t in items]


def fields(problem: Raw) -> list[str]:
    return [e["field"] for e in problem.get("errors") or []]


def sent_bodies(route: respx.Route) -> dict[str, Raw]:
    """Each send POSTed to Graph, by recipient."""
    bodies = [json.loads(call.request.content) for call in route.calls]
    return {b["to"]: b for b in bodies}


async def deliveries(client: Client, tenant: Tenant, announcement_id: int) -> dict[int, Raw]:
    """The announcement's deliveries by employee id."""
    r = await client.get(f"/announcements/{announcement_id}/deliveries", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return {d["employee_id"]: d for d in r.json()["items"]}


async def delivery_ids(db: Db, announcement_id: int) -> dict[int, int]:
    """employee id → delivery id."""
    found = await rows(db, "SELECT employee_id, id FROM delivery WHERE announcement_id = :a", a=announcement_id)
    return {int(e): int(d) for e, d in found}


async def finish(d: Dispatcher, db: Db, deadline_s: float = 15.0) -> None:
    """Dispatcher passes until nothing is left to send and every announcement due is completed."""
    await settle(d, db, deadline_s)
    deadline = time.monotonic() + deadline_s
    while await scalar(db, "SELECT count(*) FROM announcement WHERE status IN ('scheduled', 'dispatching')"):
        if time.monotonic() > deadline:
            raise AssertionError(f"announcements still open after {deadline_s} s")
        await d.run_once()
        await d.drain()


@pytest.fixture
async def http(graph_respx: respx.MockRouter, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The dispatcher's production HTTP client (its transport intercepted by `graph_respx`)."""
    async with make_http_client(settings) as client:
        yield client


@pytest.fixture
def dispatcher(settings: Settings, db: Db, http: httpx.AsyncClient) -> Dispatcher:
    return make_dispatcher(settings, db, http, "templates-test")


# --- the catalogue ----------------------------------------------------------------------------------------------


async def test_sync_follows_graphs_paging_and_lists_approved_templates_unless_status_all(
    client: Client, db: Db, tenant: Tenant, graph_api: respx.MockRouter
) -> None:
    route = graph_api.get(CATALOGUE).mock(side_effect=pages(EVERYTHING[:4], EVERYTHING[4:8], EVERYTHING[8:]))

    assert await sync(client, tenant) == len(EVERYTHING)
    # Three pages, each asked for with the previous page's cursor, with the installation's token.
    assert [call.request.url.params.get("after") for call in route.calls] == [None, "c0", "c1"]
    assert {call.request.url.params["limit"] for call in route.calls} == {"100"}
    assert {call.request.headers["authorization"] for call in route.calls} == {f"Bearer {SHARED_TOKEN}"}

    approved = await listed(client, tenant)
    assert names(approved) == sorted(names(APPROVED))
    assert ("draft_notice", "en_US") not in names(approved)
    everything = await listed(client, tenant, "?status=all")
    assert names(everything) == sorted(names(EVERYTHING))
    assert {t["name"]: t["status"] for t in everything}["rejected_notice"] == "REJECTED"
    assert len(route.calls) == 3  # listing reads what was stored; it does not call Graph again

    shift = next(t for t in approved if (t["name"], t["language"]) == ("shift_notice", "en_US"))
    assert shift == {
        "name": "shift_notice",
        "language": "en_US",
        "status": "APPROVED",
        "category": "UTILITY",
        "header": "image",
        "body_parameters": 2,
        "buttons": [{"type": "QUICK_REPLY", "text": "Got it"}],
        "preview": "[image]\nHi team, {{1}} starts on {{2}}.\nReply STOP to opt out\n[Got it]",
    }
    titled = next(t for t in approved if t["name"] == "titled_notice")
    assert (titled["header"], titled["preview"].splitlines()[0]) == ("text", "Notice: {{1}}")


async def test_a_resync_forgets_translations_graph_no_longer_lists(
    client: Client, tenant: Tenant, graph_api: respx.MockRouter
) -> None:
    route = catalogue(graph_api, EVERYTHING)
    assert await sync(client, tenant) == len(EVERYTHING)

    # The Portuguese translation and the policy template were deleted in WhatsApp Manager; the draft got approved.
    gone = {("shift_notice", "pt_BR"), ("policy_update", "en_US")}
    now = [t for t in EVERYTHING if (t["name"], t["language"]) not in gone]
    now = [{**t, "status": "APPROVED"} if t["name"] == "draft_notice" else t for t in now]
    route.mock(side_effect=pages(now))
    assert await sync(client, tenant) == len(EVERYTHING) - 2

    everything = names(await listed(client, tenant, "?status=all"))
    assert not gone & set(everything)
    assert ("shift_notice", "af") in everything
    assert ("draft_notice", "en_US") in names(await listed(client, tenant))


async def test_the_catalogue_is_read_when_first_listed_and_then_kept(
    client: Client, db: Db, tenant: Tenant, graph_api: respx.MockRouter
) -> None:
    route = catalogue(graph_api, EVERYTHING)
    assert await scalar(db, "SELECT count(*) FROM template") == 0
    assert names(await listed(client, tenant)) == sorted(names(APPROVED))
    assert route.call_count == 1
    assert names(await listed(client, tenant)) == sorted(names(APPROVED))
    assert route.call_count == 1
    assert await rows(db, "SELECT waba_id, templates, error FROM template_sync") == [
        (SHARED_WABA, len(EVERYTHING), None)
    ]


async def test_the_catalogue_is_read_when_a_template_announcement_first_needs_it(
    client: Client, db: Db, tenant: Tenant, graph_api: respx.MockRouter
) -> None:
    route = catalogue(graph_api, EVERYTHING)
    created = await create(client, tenant, {"template": {"name": "linked_notice", "parameters": ["Roster is out"]}})
    assert route.call_count == 1
    assert created["template"] == {"name": "linked_notice", "parameters": ["Roster is out"]}
    await create(client, tenant, {"template": {"name": "linked_notice", "parameters": ["Again"]}})
    assert route.call_count == 1
    assert await scalar(db, "SELECT count(*) FROM template WHERE waba_id = :w", w=SHARED_WABA) == len(EVERYTHING)


async def test_without_a_waba_id_templates_are_a_conflict_and_graph_is_not_called(
    settings: Settings, db: Db, tenant: Tenant, graph_api: respx.MockRouter
) -> None:
    route = catalogue(graph_api, EVERYTHING)
    async with AsyncTestClient(app=create_app(settings.replace(whatsapp_waba_id=""))) as client:
        for method, path in (("GET", "/templates"), ("POST", "/templates/sync")):
            r = await client.request(method, path, headers=tenant.headers)
            assert r.status_code == 409, r.text
            assert "WHATSAPP_WABA_ID" in r.json()["detail"]
        r = await client.post(
            "/announcements", json={"template": {"name": "linked_notice", "parameters": ["x"]}}, headers=tenant.headers
        )
        assert r.status_code == 409, r.text
        # A text announcement needs no catalogue.
        assert (await client.post("/announcements", json={"message": "Hi"}, headers=tenant.headers)).status_code == 201
    assert route.call_count == 0
    assert await scalar(db, "SELECT count(*) FROM announcement WHERE template IS NOT NULL") == 0


async def test_graph_refusing_the_catalogue_is_a_conflict_that_names_its_reason(
    client: Client, db: Db, tenant: Tenant, graph_api: respx.MockRouter
) -> None:
    route = graph_api.get(CATALOGUE).mock(return_value=refused())
    r = await client.post("/templates/sync", headers=tenant.headers)
    assert r.status_code == 409, r.text
    assert "Error validating access token" in r.json()["detail"]
    assert SHARED_TOKEN not in r.text
    assert (await client.get("/templates", headers=tenant.headers)).status_code == 409
    r = await client.post(
        "/announcements", json={"template": {"name": "linked_notice", "parameters": ["x"]}}, headers=tenant.headers
    )
    assert r.status_code == 409, r.text
    assert await scalar(db, "SELECT count(*) FROM announcement") == 0
    assert await scalar(db, "SELECT count(*) FROM template") == 0

    # Graph unreachable: likewise.
    route.mock(side_effect=httpx.ConnectError("refused"))
    r = await client.post("/templates/sync", headers=tenant.headers)
    assert r.status_code == 409, r.text
    assert "could not be reached" in r.json()["detail"]

    # Once Graph answers, the catalogue is read.
    route.mock(side_effect=pages(EVERYTHING))
    assert await sync(client, tenant) == len(EVERYTHING)


async def test_an_employer_with_its_own_number_reads_its_own_accounts_catalogue_with_its_token(
    client: Client, db: Db, make_tenant: MakeTenant, graph_api: respx.MockRouter
) -> None:
    own = await make_tenant(slug="acme", name="Acme Ltd")
    shared = await make_tenant(slug="beta", name="Beta Foods")
    await put_sender(client, own)
    own_route = catalogue(graph_api, [LINKED], path=OWN_CATALOGUE)
    shared_route = catalogue(graph_api, [POLICY])

    assert names(await listed(client, own)) == [("linked_notice", "en_US")]
    assert {call.request.headers["authorization"] for call in own_route.calls} == {f"Bearer {OWN_TOKEN}"}
    assert shared_route.call_count == 0
    assert names(await listed(client, shared)) == [("policy_update", "en_US")]
    assert {call.request.headers["authorization"] for call in shared_route.calls} == {f"Bearer {SHARED_TOKEN}"}

    # Each account's templates are its own: the shared one's is unknown to the own number's employer.
    r = await client.post(
        "/announcements", json={"template": {"name": "policy_update", "parameters": ["x"]}}, headers=own.headers
    )
    assert r.status_code == 422, r.text
    assert fields(r.json()) == ["template.name"]
    assert await rows(db, "SELECT DISTINCT waba_id FROM template ORDER BY 1") == [(OWN_WABA,), (SHARED_WABA,)]


async def test_the_hourly_refresh_reads_every_account_in_use_once_its_hour_is_up(
    client: Client, db: Db, settings: Settings, tenant: Tenant, graph_api: respx.MockRouter
) -> None:
    await put_sender(client, tenant)
    own_route = catalogue(graph_api, [LINKED], path=OWN_CATALOGUE)
    shared_route = catalogue(graph_api, EVERYTHING)
    async with httpx.AsyncClient() as http:
        assert await templates.sync_due(db, http, settings) == 2
        assert (own_route.call_count, shared_route.call_count) == (1, 1)
        assert own_route.calls.last.request.headers["authorization"] == f"Bearer {OWN_TOKEN}"
        assert await templates.sync_due(db, http, settings) == 0  # read less than an hour ago
        async with db() as s, s.begin():
            await s.execute(
                text("UPDATE template_sync SET attempted_at = now() - interval '61 minutes' WHERE waba_id = :w"),
                {"w": SHARED_WABA},
            )
        shared_route.mock(side_effect=pages(SHIFT))
        assert await templates.sync_due(db, http, settings) == 1
        assert (own_route.call_count, shared_route.call_count) == (1, 2)
    assert await scalar(db, "SELECT count(*) FROM template WHERE waba_id = :w", w=SHARED_WABA) == len(SHIFT)


# --- template announcements: validation -------------------------------------------------------------------------


@pytest.fixture
async def synced(client: Client, tenant: Tenant, graph_api: respx.MockRouter) -> respx.Route:
    """The installation's catalogue, read."""
    route = catalogue(graph_api, EVERYTHING)
    assert await sync(client, tenant) == len(EVERYTHING)
    return route


IMAGE = {"link": "https://example.com/roster.png"}
GOOD_SHIFT: Raw = {"name": "shift_notice", "parameters": ["the night shift", "Monday"], "header": IMAGE}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template": {"name": "no_such_template", "parameters": ["x"]}}, "template.name"),
        ({"template": {"name": "draft_notice", "parameters": ["x"]}}, "template.name"),
        ({"template": {"name": "rejected_notice", "parameters": ["x"]}}, "template.name"),
        ({"template": {**GOOD_SHIFT, "parameters": ["only one"]}}, "template.parameters"),
        ({"template": {**GOOD_SHIFT, "parameters": ["a", "b", "c"]}}, "template.parameters"),
        ({"template": {**GOOD_SHIFT, "parameters": ["the night shift", " \n\t "]}}, "template.parameters[1]"),
        ({"template": {**GOOD_SHIFT, "parameters": ["word " * 206, "Monday"]}}, "template.parameters[0]"),
        ({"template": {"name": "shift_notice", "parameters": ["a", "b"]}}, "template.header"),
        ({"template": {**GOOD_SHIFT, "header": {"text": "Roster"}}}, "template.header"),
        ({"template": {**GOOD_SHIFT, "header": {**IMAGE, "media_id": "123"}}}, "template.header"),
        ({"template": {**GOOD_SHIFT, "header": {"link": "http://example.com/roster.png"}}}, "template.header.link"),
        ({"template": {**GOOD_SHIFT, "header": {**IMAGE, "filename": "roster.png"}}}, "template.header.filename"),
        ({"template": {"name": "linked_notice", "parameters": ["x"], "header": IMAGE}}, "template.header"),
        ({"template": {"name": "fixed_header", "parameters": ["x"], "header": {"text": "Hi"}}}, "template.header"),
        ({"template": {"name": "titled_notice", "parameters": ["x"]}}, "template.header"),
        ({"template": {"name": "titled_notice", "parameters": ["x"], "header": {"text": "  "}}}, "template.header"),
        (
            {"template": {"name": "policy_update", "parameters": ["x"], "header": {"link": "ftp://x/y.pdf"}}},
            "template.header.link",
        ),
        ({"template": {"name": "mixed_notice", "parameters": ["x"]}}, "template.name"),
        ({"template": {"name": "linked_notice", "parameters": ["x"]}, "message": "Hello"}, "message"),
        ({"send_time": None}, "message"),
    ],
    ids=[
        "unknown",
        "pending",
        "rejected",
        "too-few-parameters",
        "too-many-parameters",
        "blank-parameter",
        "parameter-over-1024-after-flattening",
        "media-header-missing",
        "text-for-an-image-header",
        "link-and-media-id",
        "link-not-https",
        "filename-on-an-image",
        "header-on-a-template-without-one",
        "header-on-a-fixed-text-header",
        "text-header-variable-missing",
        "text-header-variable-blank",
        "document-link-not-https",
        "translations-differ",
        "message-and-template",
        "neither-message-nor-template",
    ],
)
async def test_an_invalid_template_announcement_is_refused_naming_the_field_and_stores_nothing(
    client: Client, db: Db, tenant: Tenant, synced: respx.Route, body: Raw, field: str
) -> None:
    r = await client.post("/announcements", json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert field in fields(r.json()), r.json()
    assert await scalar(db, "SELECT count(*) FROM announcement") == 0


async def test_every_invalid_field_is_named_at_once(
    client: Client, db: Db, tenant: Tenant, synced: respx.Route
) -> None:
    body = {"template": {"name": "shift_notice", "parameters": ["", "x" * 1025], "header": {"link": "http://x/y"}}}
    r = await client.post("/announcements", json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert sorted(fields(r.json())) == ["template.header.link", "template.parameters[0]", "template.parameters[1]"]
    assert await scalar(db, "SELECT count(*) FROM announcement") == 0


async def test_a_multi_paragraph_parameter_is_stored_as_sent_and_previewed_so(
    client: Client, db: Db, tenant: Tenant, synced: respx.Route
) -> None:
    written = "The night shift\n\nwill start at 22:00.\tBring   your     badge."
    # Longer than 1,024 characters as written, well under once its whitespace is collapsed: accepted.
    roomy = "Monday" + " " * 2000 + "morning"
    body = {"template": {"name": "shift_notice", "parameters": [written, roomy], "header": IMAGE}}
    created = await create(client, tenant, body)

    flat = "The night shift will start at 22:00. Bring your badge."
    assert created["template"] == {"name": "shift_notice", "parameters": [flat, "Monday morning"], "header": IMAGE}
    # The employer has no default language: previewed in the first approved translation (as sent to anyone
    # without one), its header shown as a line.
    preview = (
        "[image: https://example.com/roster.png]\nHallo span, The night shift will start at 22:00. Bring your badge. "
        "begin op Monday morning.\n[Reg so]"
    )
    assert (created["preview"], created["message"]) == (preview, preview)
    shown = (await client.get(f"/announcements/{created['id']}", headers=tenant.headers)).json()
    assert (shown["template"], shown["preview"]) == (created["template"], preview)
    stored = await rows(db, "SELECT template, message FROM announcement WHERE id = :i", i=created["id"])
    assert stored == [({"name": "shift_notice", "parameters": [flat, "Monday morning"], "header": IMAGE}, preview)]


async def test_the_preview_is_in_the_employers_language(
    client: Client, db: Db, tenant: Tenant, synced: respx.Route
) -> None:
    await set_employer_language(db, tenant, "en")
    created = await create(client, tenant, {"template": GOOD_SHIFT})
    assert created["preview"].splitlines()[1] == "Hi team, the night shift starts on Monday."


async def test_patch_switches_between_text_and_a_template(
    client: Client, db: Db, tenant: Tenant, synced: respx.Route
) -> None:
    later = "2099-01-01T09:00:00+00:00"
    created = await create(client, tenant, {"message": "Fire drill at 14:00", "send_time": later})
    assert created["template"] is None
    url = f"/announcements/{created['id']}"

    r = await client.patch(
        url, json={"template": {"name": "linked_notice", "parameters": ["Line 1\nLine 2"]}}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["template"] == {"name": "linked_notice", "parameters": ["Line 1 Line 2"]}
    assert r.json()["message"] == r.json()["preview"] == "Line 1 Line 2\n[Open roster] [Got it]"
    assert await rows(db, "SELECT message, template->>'name' FROM announcement") == [
        ("Line 1 Line 2\n[Open roster] [Got it]", "linked_notice")
    ]

    # An invalid template changes nothing.
    bad = await client.patch(
        url, json={"template": {"name": "linked_notice", "parameters": []}}, headers=tenant.headers
    )
    assert bad.status_code == 422, bad.text
    assert fields(bad.json()) == ["template.parameters"]
    assert await scalar(db, "SELECT template->'parameters'->>0 FROM announcement") == "Line 1 Line 2"

    # Changing only the time keeps the template.
    r = await client.patch(url, json={"send_time": "2099-01-02T09:00:00+00:00"}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["template"]["name"] == "linked_notice"

    r = await client.patch(url, json={"message": "Fire drill moved to 15:00"}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["template"], r.json()["message"]) == (None, "Fire drill moved to 15:00")
    assert await rows(db, "SELECT message, template FROM announcement") == [("Fire drill moved to 15:00", None)]

    both = {"message": "x", "template": {"name": "linked_notice", "parameters": ["y"]}}
    r = await client.patch(url, json=both, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert fields(r.json()) == ["message"]


# --- the dispatcher ---------------------------------------------------------------------------------------------


AF, ZU, NONE = "+27820000001", "+27820000002", "+27820000003"


async def test_each_employee_gets_their_translation_else_the_employers_and_deliveries_show_it(
    client: Client,
    db: Db,
    tenant: Tenant,
    synced: respx.Route,
    graph_respx: respx.MockRouter,
    dispatcher: Dispatcher,
) -> None:
    await set_employer_language(db, tenant, "en")
    af = await employee(db, tenant, AF, "af", "Annelie")
    zu = await employee(db, tenant, ZU, "zu", "Sipho")
    none = await employee(db, tenant, NONE, None, "Pat")
    await full_budget(db)

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent = accepted(body)
        if body["to"] == ZU:  # Meta paces this one: accepted, but held while it judges the template's quality
            payload = json.loads(sent.content)
            payload["messages"][0]["message_status"] = "held_for_quality_assessment"
            return httpx.Response(200, json=payload)
        return sent

    route = graph_respx.post(SENDS).mock(side_effect=answer)
    created = await create(client, tenant, {"template": GOOD_SHIFT})
    await finish(dispatcher, db)

    ids = await delivery_ids(db, created["id"])
    bodies = sent_bodies(route)
    assert sorted(bodies) == [AF, ZU, NONE]
    # af has Afrikaans; the template has no Zulu, so zu gets the employer's English (en → en_US), not merely the
    # first approved translation (af); no language at all, likewise.
    assert {to: b["template"]["language"]["code"] for to, b in bodies.items()} == {
        AF: "af",
        ZU: "en_US",
        NONE: "en_US",
    }
    for to, who in ((AF, af), (ZU, zu), (NONE, none)):
        b = bodies[to]
        assert (b["type"], b["template"]["name"]) == ("template", "shift_notice")
        assert b["template"]["components"] == [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": IMAGE["link"]}}]},
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "the night shift"}, {"type": "text", "text": "Monday"}],
            },
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "0",
                "parameters": [{"type": "payload", "payload": f"ack:{ids[who]}"}],
            },
        ]

    shown = await deliveries(client, tenant, created["id"])
    assert {e: (d["status"], d["language"], d["message_status"]) for e, d in shown.items()} == {
        af: ("sent", "af", None),
        zu: ("sent", "en_US", "held_for_quality_assessment"),
        none: ("sent", "en_US", None),
    }
    detail = (await client.get(f"/announcements/{created['id']}", headers=tenant.headers)).json()
    assert detail["languages"] == {"af": 1, "en_US": 2}
    assert (detail["status"], detail["counts"]["sent"], detail["failures"]) == ("completed", 3, [])


async def test_without_an_employer_language_anyone_without_a_match_gets_an_approved_translation(
    client: Client,
    db: Db,
    tenant: Tenant,
    synced: respx.Route,
    graph_respx: respx.MockRouter,
    dispatcher: Dispatcher,
) -> None:
    await employee(db, tenant, AF, "af-ZA")  # a region the template lacks: its base language
    await employee(db, tenant, ZU, "zu")
    await employee(db, tenant, NONE, "pt-br")
    await full_budget(db)
    route = graph_respx.post(SENDS).mock(side_effect=lambda r: accepted(json.loads(r.content)))
    created = await create(client, tenant, {"template": GOOD_SHIFT})
    await finish(dispatcher, db)
    languages = {to: b["template"]["language"]["code"] for to, b in sent_bodies(route).items()}
    assert languages == {AF: "af", ZU: "af", NONE: "pt_BR"}
    detail = (await client.get(f"/announcements/{created['id']}", headers=tenant.headers)).json()
    assert detail["languages"] == {"af": 2, "pt_BR": 1}


async def test_templates_without_buttons_or_with_the_quick_reply_second_are_sent_as_they_are(
    client: Client,
    db: Db,
    tenant: Tenant,
    synced: respx.Route,
    graph_respx: respx.MockRouter,
    dispatcher: Dispatcher,
) -> None:
    who = await employee(db, tenant, AF)
    await full_budget(db)
    route = graph_respx.post(SENDS).mock(side_effect=lambda r: accepted(json.loads(r.content)))
    policy = await create(
        client,
        tenant,
        {
            "template": {
                "name": "policy_update",
                "parameters": ["the leave\npolicy"],
                "header": {"media_id": "1234567890", "filename": "Leave policy.pdf"},
            }
        },
    )
    linked = await create(client, tenant, {"template": {"name": "linked_notice", "parameters": ["Roster is out"]}})
    titled = await create(
        client,
        tenant,
        {"template": {"name": "titled_notice", "parameters": ["Fire drill"], "header": {"text": "Safety\nfirst"}}},
    )
    await finish(dispatcher, db)

    by_name = {json.loads(c.request.content)["template"]["name"]: json.loads(c.request.content) for c in route.calls}
    assert by_name["policy_update"]["template"]["components"] == [
        {
            "type": "header",
            "parameters": [{"type": "document", "document": {"id": "1234567890", "filename": "Leave policy.pdf"}}],
        },
        {"type": "body", "parameters": [{"type": "text", "text": "the leave policy"}]},
    ]  # no button: the template has none
    ids = {a["id"]: (await delivery_ids(db, a["id"]))[who] for a in (linked, titled)}
    assert by_name["linked_notice"]["template"]["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "Roster is out"}]},
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "1",
            "parameters": [{"type": "payload", "payload": f"ack:{ids[linked['id']]}"}],
        },
    ]
    assert by_name["titled_notice"]["template"]["components"][0] == {
        "type": "header",
        "parameters": [{"type": "text", "text": "Safety first"}],
    }
    assert policy["preview"].splitlines()[0] == "[document: Leave policy.pdf]"


async def test_template_missing_at_meta_fails_only_that_delivery_and_does_not_pause_the_number(
    client: Client,
    db: Db,
    tenant: Tenant,
    synced: respx.Route,
    graph_respx: respx.MockRouter,
    dispatcher: Dispatcher,
) -> None:
    await set_employer_language(db, tenant, "en")
    af = await employee(db, tenant, AF, "af")
    en = await employee(db, tenant, NONE)
    await full_budget(db)

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["template"]["language"]["code"] == "af":  # the Afrikaans translation was deleted at Meta
            return graph_error(404, 132001, "Template name does not exist in the translation")
        return accepted(body)

    graph_respx.post(SENDS).mock(side_effect=answer)
    created = await create(client, tenant, {"template": GOOD_SHIFT})
    await finish(dispatcher, db)

    shown = await deliveries(client, tenant, created["id"])
    assert (shown[en]["status"], shown[en]["language"]) == ("sent", "en_US")
    assert shown[af]["status"] == "failed"
    assert shown[af]["error"]["code"] == 132001
    assert "Template name does not exist in the translation" in shown[af]["error"]["title"]
    assert "POST /templates/sync" in shown[af]["error"]["title"]
    assert await rows(
        db, "SELECT paused_until, pause_reason FROM send_budget WHERE phone_number_id = :p", p=PHONE_NUMBER_ID
    ) == [(None, None)]
    detail = (await client.get(f"/announcements/{created['id']}", headers=tenant.headers)).json()
    assert [(f["code"], f["count"]) for f in detail["failures"]] == [(132001, 1)]
    assert detail["languages"] == {"en_US": 1}
    assert detail["status"] == "completed"


async def test_a_template_deleted_from_the_catalogue_after_the_announcement_fails_its_deliveries_clearly(
    client: Client,
    db: Db,
    tenant: Tenant,
    synced: respx.Route,
    graph_respx: respx.MockRouter,
    dispatcher: Dispatcher,
) -> None:
    who = await employee(db, tenant, AF, "af")
    await full_budget(db)
    created = await create(client, tenant, {"template": {"name": "linked_notice", "parameters": ["Roster"]}})
    synced.mock(side_effect=pages([t for t in EVERYTHING if t["name"] != "linked_notice"]))
    assert await sync(client, tenant) == len(EVERYTHING) - 1
    await finish(dispatcher, db)

    assert graph_respx.calls.call_count == 0  # nothing to send: no route, and no send tried
    failed = (await deliveries(client, tenant, created["id"]))[who]
    assert failed["status"] == "failed"
    assert "linked_notice" in failed["error"]["title"]
    assert "no approved translation" in failed["error"]["title"]
    assert (
        await scalar(db, "SELECT paused_until FROM send_budget WHERE phone_number_id = :p", p=PHONE_NUMBER_ID) is None
    )


async def test_an_own_number_sends_its_own_accounts_template(
    client: Client,
    db: Db,
    tenant: Tenant,
    graph_api: respx.MockRouter,
    graph_respx: respx.MockRouter,
    dispatcher: Dispatcher,
) -> None:
    await put_sender(client, tenant)
    catalogue(graph_api, [raw("own_notice", "en_US", "Own: {{1}}")], path=OWN_CATALOGUE)
    await employee(db, tenant, AF)
    await full_budget(db, OWN)
    own = graph_respx.post(f"/{OWN}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))
    created = await create(client, tenant, {"template": {"name": "own_notice", "parameters": ["hello"]}})
    await finish(dispatcher, db)
    assert (own.call_count, graph_respx.calls.call_count) == (1, 1)  # nothing from the shared number
    body = json.loads(own.calls.last.request.content)
    assert (body["template"]["name"], body["template"]["language"]) == ("own_notice", {"code": "en_US"})
    assert own.calls.last.request.headers["authorization"] == f"Bearer {OWN_TOKEN}"
    detail = (await client.get(f"/announcements/{created['id']}", headers=tenant.headers)).json()
    assert detail["languages"] == {"en_US": 1}


async def test_text_outside_the_24_hour_window_fails_saying_a_template_is_needed(
    client: Client, db: Db, tenant: Tenant, graph_respx: respx.MockRouter, dispatcher: Dispatcher
) -> None:
    wrote = await employee(db, tenant, AF)
    silent = await employee(db, tenant, ZU)
    await full_budget(db)

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["to"] == ZU:
            return graph_error(400, 131047, "Re-engagement message")
        return accepted(body)

    graph_respx.post(SENDS).mock(side_effect=answer)
    created = await create(client, tenant, {"message": "Fire drill at 14:00"})
    await finish(dispatcher, db)

    shown = await deliveries(client, tenant, created["id"])
    assert (shown[wrote]["status"], shown[wrote]["language"]) == ("sent", None)
    assert shown[silent]["status"] == "failed"
    assert shown[silent]["error"] == {"code": 131047, "title": OUTSIDE_WINDOW_TITLE}
    detail = (await client.get(f"/announcements/{created['id']}", headers=tenant.headers)).json()
    assert detail["failures"] == [{"code": 131047, "title": OUTSIDE_WINDOW_TITLE, "count": 1}]
    assert detail["languages"] == {}
    assert (
        await scalar(db, "SELECT paused_until FROM send_budget WHERE phone_number_id = :p", p=PHONE_NUMBER_ID) is None
    )


async def test_the_legacy_whatsapp_template_sends_text_flattened(
    settings: Settings, db: Db, tenant: Tenant, graph_respx: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    legacy = settings.replace(whatsapp_template=Template("staff_notice", "en_US"))
    await employee(db, tenant, AF)
    await full_budget(db)
    route = graph_respx.post(SENDS).mock(side_effect=lambda r: accepted(json.loads(r.content)))
    async with db() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO announcement (employer_id, message, send_at, audience) "
                "VALUES (:e, :m, now(), CAST('{\"all\": true}' AS jsonb))"
            ),
            {"e": tenant.employer_id, "m": "Fire drill\n\nat 14:00.\tMeet     outside."},
        )
    await finish(make_dispatcher(legacy, db, http, "legacy"), db)
    body = json.loads(route.calls.last.request.content)
    assert body["template"]["name"] == "staff_notice"
    assert body["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "Fire drill at 14:00. Meet outside."}
    ]


# --- media ------------------------------------------------------------------------------------------------------


def png() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(240) + b"PE\x00\x00"
MEDIA = f"/{PHONE_NUMBER_ID}/media"


def uploaded(media_id: str = "1357924680") -> httpx.Response:
    return httpx.Response(200, json={"id": media_id})


async def upload(client: Client, tenant: Tenant, name: str, content: bytes, claimed: str) -> httpx.Response:
    return await client.post("/media", files={"file": (name, content, claimed)}, headers=tenant.headers)


def parts(request: httpx.Request) -> bytes:
    return request.read()


async def test_an_image_and_a_document_are_uploaded_to_graph_with_the_type_their_content_shows(
    client: Client, tenant: Tenant, graph_api: respx.MockRouter
) -> None:
    route = graph_api.post(MEDIA).mock(side_effect=[uploaded("111"), uploaded("222"), uploaded("333")])
    image = png()
    # The client's claimed type and name are not believed: the content is.
    r = await upload(client, tenant, "roster.bin", image, "application/octet-stream")
    assert r.status_code == 200, r.text
    assert r.json() == {"media_id": "111", "mime_type": "image/png", "bytes": len(image)}
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {SHARED_TOKEN}"
    assert sent.headers["content-type"].startswith("multipart/form-data")
    content = parts(sent)
    assert b'name="messaging_product"\r\n\r\nwhatsapp\r\n' in content
    assert b'name="type"\r\n\r\nimage/png\r\n' in content
    assert b'name="file"; filename="roster.bin"\r\nContent-Type: image/png\r\n\r\n' + image in content

    r = await upload(client, tenant, "policy.pdf", PDF, "application/pdf")
    assert r.status_code == 200, r.text
    assert r.json() == {"media_id": "222", "mime_type": "application/pdf", "bytes": len(PDF)}
    assert b'name="type"\r\n\r\napplication/pdf\r\n' in parts(route.calls.last.request)

    # A plain-text notice in Afrikaans: its first 8 KiB may end inside a two-byte character.
    notice = ("a" + "Hê, môre is die kantien toe. " * 400).encode()
    r = await upload(client, tenant, "notice.txt", notice, "text/plain")
    assert r.status_code == 200, r.text
    assert r.json() == {"media_id": "333", "mime_type": "text/plain", "bytes": len(notice)}


@pytest.mark.parametrize(
    ("name", "content", "status", "needle"),
    [
        ("team.gif", GIF, 415, "image/gif"),
        ("policy.pdf", EXE, 415, "application/x-msdownload"),
        ("huge.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(5 * MB), 413, "5 MB"),
        ("empty.png", b"", 422, "file"),
    ],
    ids=["gif", "exe-named-pdf", "image-over-5-mb", "empty"],
)
async def test_media_refused_before_graph_is_called(
    client: Client, tenant: Tenant, graph_api: respx.MockRouter, name: str, content: bytes, status: int, needle: str
) -> None:
    route = graph_api.post(MEDIA).mock(return_value=uploaded())
    r = await upload(client, tenant, name, content, "image/png")
    assert r.status_code == status, r.text
    assert needle in r.text
    assert route.call_count == 0


@pytest.mark.parametrize(
    "files",
    [
        {"document": ("policy.pdf", PDF, "application/pdf")},
        {"file": (None, "policy.pdf")},
        [("file", ("policy.pdf", PDF, "application/pdf")), ("file", ("roster.png", png(), "image/png"))],
        {},
    ],
    ids=["another-part-name", "a-text-field", "two-files", "nothing"],
)
async def test_media_without_exactly_one_file_part_named_file_is_422_naming_file(
    client: Client, tenant: Tenant, graph_api: respx.MockRouter, files: Any
) -> None:
    route = graph_api.post(MEDIA).mock(return_value=uploaded())
    r = await client.post("/media", files=files, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert fields(r.json()) == ["file"], r.json()
    assert route.call_count == 0


async def test_the_part_named_file_is_the_one_uploaded(
    client: Client, tenant: Tenant, graph_api: respx.MockRouter
) -> None:
    route = graph_api.post(MEDIA).mock(return_value=uploaded())
    files = {"thumbnail": ("team.gif", GIF, "image/gif"), "file": ("policy.pdf", PDF, "application/pdf")}
    r = await client.post("/media", files=files, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["mime_type"] == "application/pdf"
    assert PDF in parts(route.calls.last.request)


async def test_graph_refusing_an_upload_is_502(client: Client, tenant: Tenant, graph_api: respx.MockRouter) -> None:
    graph_api.post(MEDIA).mock(return_value=refused(131053, "Media upload error"))
    r = await upload(client, tenant, "roster.png", png(), "image/png")
    assert r.status_code == 502, r.text
    assert SHARED_TOKEN not in r.text


async def test_an_own_number_uploads_its_media_to_its_own_number_with_its_token(
    client: Client, tenant: Tenant, graph_api: respx.MockRouter
) -> None:
    await put_sender(client, tenant)
    own = graph_api.post(f"/{OWN}/media").mock(return_value=uploaded("444"))
    shared = graph_api.post(MEDIA).mock(return_value=uploaded())
    r = await upload(client, tenant, "policy.pdf", PDF, "application/pdf")
    assert r.status_code == 200, r.text
    assert r.json()["media_id"] == "444"
    assert (own.call_count, shared.call_count) == (1, 0)
    assert own.calls.last.request.headers["authorization"] == f"Bearer {OWN_TOKEN}"


# --- languages --------------------------------------------------------------------------------------------------


async def test_employer_create_with_a_language_shows_it_in_me(
    client: Client, db: Db, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(database_url, tmp_path)
    ran = await jem(env, "employer", "create", "lang-co", "--name", "Lang Co", "--language", "en-us")
    assert ran.returncode == 0, ran
    employer_id = int(ran.stdout.strip())
    assert await scalar(db, "SELECT language FROM employer WHERE id = :e", e=employer_id) == "en_US"

    token = generate_token()
    async with db() as s, s.begin():
        await s.execute(
            text("INSERT INTO api_token (employer_id, token_hash) VALUES (:e, :h)"),
            {"e": employer_id, "h": hash_token(token)},
        )
    me = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["employer"]["language"] == "en_US"

    ran = await jem(env, "employer", "create", "plain-co", "--name", "Plain Co")
    assert ran.returncode == 0, ran
    assert await scalar(db, "SELECT language FROM employer WHERE slug = 'plain-co'") is None

    line = one_line_error(await jem(env, "employer", "create", "bad-co", "--name", "Bad", "--language", "english"), 2)
    assert "--language" in line
    assert await scalar(db, "SELECT count(*) FROM employer WHERE slug = 'bad-co'") == 0


async def test_an_employees_language_is_normalised_kept_changed_and_cleared(
    client: Client, db: Db, tenant: Tenant
) -> None:
    person = {"phone": "+27820000001", "name": "Annelie"}
    r = await client.post("/employees", json={**person, "language": "af-za"}, headers=tenant.headers)
    assert r.status_code in (200, 201), r.text
    employee_id = r.json()["id"]
    assert r.json()["language"] == "af_ZA"

    # Sent again without a language (an import from a payroll export that has none): kept.
    r = await client.post("/employees", json={**person, "name": "Annelie B"}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["language"]) == ("Annelie B", "af_ZA")

    url = f"/employees/{employee_id}"
    r = await client.patch(url, json={"language": "ZU"}, headers=tenant.headers)
    assert (r.status_code, r.json()["language"]) == (200, "zu")
    r = await client.patch(url, json={"tags": ["night"]}, headers=tenant.headers)
    assert (r.status_code, r.json()["language"]) == (200, "zu")
    r = await client.patch(url, json={"language": None}, headers=tenant.headers)
    assert (r.status_code, r.json()["language"]) == (200, None)

    r = await client.post("/employees", json={**person, "language": "en"}, headers=tenant.headers)
    assert r.json()["language"] == "en"
    r = await client.post("/employees", json={**person, "language": None}, headers=tenant.headers)
    assert r.json()["language"] is None
    got = await client.get(url, headers=tenant.headers)
    assert got.json()["language"] is None

    r = await client.post(
        "/employees/import",
        json={
            "employees": [{**person, "language": "en-gb"}, {"phone": "+27820000002", "name": "Sipho", "language": "zu"}]
        },
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    assert await rows(db, "SELECT phone, language FROM employee ORDER BY phone") == [
        ("+27820000001", "en_GB"),
        ("+27820000002", "zu"),
    ]


@pytest.mark.parametrize("language", ["english", "e", "en_us_texas", "12", "en-us-"])
async def test_an_invalid_employee_language_is_422_naming_it_and_changes_nothing(
    client: Client, db: Db, tenant: Tenant, language: str
) -> None:
    person = {"phone": "+27820000001", "name": "Annelie"}
    r = await client.post("/employees", json={**person, "language": language}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert "language" in fields(r.json()), r.json()
    assert await scalar(db, "SELECT count(*) FROM employee") == 0

    r = await client.post(
        "/employees/import",
        json={"employees": [person, {"phone": "+27820000002", "name": "Sipho", "language": language}]},
        headers=tenant.headers,
    )
    assert r.status_code == 422, r.text
    assert "employees[1].language" in fields(r.json()), r.json()
    assert await scalar(db, "SELECT count(*) FROM employee") == 0

    created = await client.post("/employees", json={**person, "language": "af"}, headers=tenant.headers)
    r = await client.patch(f"/employees/{created.json()['id']}", json={"language": language}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert "language" in fields(r.json()), r.json()
    assert await scalar(db, "SELECT language FROM employee") == "af"
