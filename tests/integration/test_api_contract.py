"""The OpenAPI document describes what the service really answers.

Every operation of `/docs/openapi.json` is called live, with good and bad input; each answer must have its status
documented for that operation, the documented media type, and a body valid against the documented schema (its
`$ref`s resolved, `date-time` strings checked). At the end, every operation must have been seen succeeding and
answering each error status it documents (500 aside: nothing here should make the service fail).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
import pytest
import respx
from jsonschema import Draft202012Validator, FormatChecker
from litestar import Litestar
from litestar.testing import AsyncTestClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.announcements.idempotency import fingerprint
from bot.app import create_app
from bot.settings import Settings
from tests.conftest import GRAPH_URL, PHONE_NUMBER_ID, VERIFY_TOKEN, MakeTenant, Tenant
from tests.integration.test_announcements import deliver, employees
from tests.integration.test_webhook import URL as WEBHOOK
from tests.integration.test_webhook import _delivery, _inbound, signed

Db = async_sessionmaker[AsyncSession]
SPEC_URI = "urn:jem-bot:openapi"
# One byte over the limits: Litestar's for every body (bot/app.py), the webhook's own (bot/webhook/controller.py).
OVER_8_MIB = b'{"x": "' + b"a" * (8 * 1024 * 1024) + b'"}'
OVER_4_MIB = b'{"x": "' + b"a" * (4 * 1024 * 1024) + b'"}'
MALFORMED = b'{"message": '
JSON_HEADERS = {"Content-Type": "application/json"}
SECRET_KEY = "contract-test-secret-key-0123456789abcdef"


def _date_time(value: object) -> bool:
    """RFC 3339 with an offset, as the service promises for every time it answers."""
    if not isinstance(value, str):
        return True
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


FORMATS = FormatChecker()
FORMATS.checks("date-time")(_date_time)


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    """Checks answers against the document and remembers which (operation, status) pairs were seen."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
        )
        self.seen: dict[tuple[str, str], set[str]] = defaultdict(set)

    def operations(self) -> dict[tuple[str, str], dict[str, Any]]:
        methods = {"get", "put", "post", "patch", "delete"}
        return {
            (method.upper(), path): op
            for path, item in self.spec["paths"].items()
            for method, op in item.items()
            if method in methods
        }

    def check(self, method: str, path: str, response: httpx.Response) -> None:
        operation = self.spec["paths"][path][method.lower()]
        status = str(response.status_code)
        where = f"{method} {path} answered {status}"
        assert status in operation["responses"], f"{where}, which its document does not list: {response.text[:300]}"
        self.seen[(method, path)].add(status)
        content = operation["responses"][status].get("content")
        if not content:
            assert response.content == b"", f"{where} with a body the document does not describe"
            return
        media = response.headers.get("content-type", "").split(";")[0].strip()
        documented = {key.split(";")[0].strip(): key for key in content}
        assert media in documented, f"{where} as {media!r}; documented: {sorted(documented)}"
        body: object = response.json() if media.endswith("json") else response.text
        pointer = _pointer("paths", path, method.lower(), "responses", status, "content", documented[media], "schema")
        validator = Draft202012Validator(
            {"$ref": f"{SPEC_URI}#/{pointer}"}, registry=self.registry, format_checker=FORMATS
        )
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{where}; the body breaks its schema: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}" for e in errors[:5]
        )

    def missing(self) -> list[str]:
        """Operations never seen succeeding, and documented error statuses never seen (500 aside)."""
        gaps = []
        for (method, path), operation in self.operations().items():
            seen = self.seen.get((method, path), set())
            documented = set(operation["responses"])
            if not any(s.startswith("2") for s in seen):
                gaps.append(f"{method} {path}: no success seen")
            for status in sorted(documented - seen - {"500"}):
                if not status.startswith("2"):
                    gaps.append(f"{method} {path}: {status} never seen")
        return gaps


class Api:
    """Calls an operation by its documented path, and checks the answer."""

    def __init__(self, client: AsyncTestClient[Litestar], contract: Contract, tenant: Tenant) -> None:
        self.client = client
        self.contract = contract
        self.tenant = tenant

    async def __call__(
        self,
        method: str,
        path: str,
        expect: int,
        *,
        ids: Mapping[str, object] | None = None,
        query: Mapping[str, str] | None = None,
        auth: bool = True,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        url = path.format(**(ids or {}))
        sent = {**(self.tenant.headers if auth else {}), **(headers or {})}
        response = await self.client.request(method, url, params=query, headers=sent, **kwargs)
        self.contract.check(method, path, response)
        assert response.status_code == expect, (method, url, response.status_code, response.text[:300])
        return response


@pytest.fixture
async def contract(client: AsyncTestClient[Litestar]) -> Contract:
    response = await client.get("/docs/openapi.json")
    assert response.status_code == 200
    return Contract(response.json())


async def test_every_operation_answers_as_its_document_says(
    client: AsyncTestClient[Litestar],
    contract: Contract,
    tenant: Tenant,
    make_tenant: MakeTenant,
    db: Db,
    settings: Settings,
) -> None:
    api = Api(client, contract, tenant)
    await _public(api, settings)
    await _sender(api, contract, make_tenant, settings)
    await _employees(api, db)
    await _announcements(api, db, tenant)
    await _reminders(api, db, tenant)
    await _inbox_and_webhook(api, db, tenant)
    await _conversations(api, db, tenant)
    await _templates_and_media(api, settings)
    gaps = contract.missing()
    assert not gaps, "not exercised (add a call, or drop the status from the document):\n" + "\n".join(gaps)


async def _public(api: Api, settings: Settings) -> None:
    await api("GET", "/health", 200, auth=False)
    await api("GET", "/metrics", 200, auth=False)
    down = create_app(
        settings, database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none", check_schema_on_start=False
    )
    async with AsyncTestClient(app=down) as client:
        await Api(client, api.contract, api.tenant)("GET", "/health", 503, auth=False)
    await api("GET", "/me", 200)
    await api("GET", "/me", 401, auth=False)
    await api("GET", "/me", 401, auth=False, headers={"Authorization": "Bearer jem_not-a-token"})


async def _sender(api: Api, contract: Contract, make_tenant: MakeTenant, settings: Settings) -> None:
    own = {"phone_number_id": "100000000000777", "waba_id": "200000000000777", "access_token": "EAAG" + "x" * 20}
    await api("GET", "/sender", 200)
    await api("GET", "/sender", 401, auth=False)
    # This server has no JEM_SECRET_KEY to seal the token with.
    await api("PUT", "/sender", 409, json=own)
    await api("PUT", "/sender", 401, auth=False, json=own)
    await api("PUT", "/sender", 400, content=MALFORMED, headers=JSON_HEADERS)
    await api("PUT", "/sender", 413, content=OVER_8_MIB, headers=JSON_HEADERS)
    await api("PUT", "/sender", 422, json={**own, "phone_number_id": "12ab", "rate": 0})
    other = await make_tenant(slug="sender-other", name="Other")
    sealed = create_app(settings.replace(secret_key=SECRET_KEY))
    async with AsyncTestClient(app=sealed) as client:
        with_key = Api(client, contract, api.tenant)
        put = await with_key("PUT", "/sender", 200, json=own)
        assert put.json()["own"] is True
        # The number is now this employer's own: another employer cannot take it.
        await Api(client, contract, other)("PUT", "/sender", 409, json=own)
        assert (await with_key("DELETE", "/sender", 200)).json()["own"] is False
    await api("DELETE", "/sender", 401, auth=False)


async def _employees(api: Api, db: Db) -> None:
    one = "/employees/{employee_id}"
    created = await api("POST", "/employees", 201, json={"phone": "+27 82 555 0001", "name": "Thandi", "tags": ["a"]})
    await api("POST", "/employees", 200, json={"phone": "+27825550001", "name": "Thandi M."})
    await api("POST", "/employees", 400, content=MALFORMED, headers=JSON_HEADERS)
    await api("POST", "/employees", 400, content=b"", headers=JSON_HEADERS)
    await api("POST", "/employees", 401, auth=False, json={"phone": "+27825550001", "name": "X"})
    await api("POST", "/employees", 413, content=OVER_8_MIB, headers=JSON_HEADERS)
    problem = await api("POST", "/employees", 422, json={"phone": "082 555 0001", "name": "X", "extra": 1})
    assert problem.json()["errors"]

    rows = {"employees": [{"phone": "+27825550002", "name": "B"}, {"phone": "+27825550003", "name": "C"}]}
    await api("POST", "/employees/import", 200, json=rows)
    await api("POST", "/employees/import", 400, content=MALFORMED, headers=JSON_HEADERS)
    await api("POST", "/employees/import", 401, auth=False, json=rows)
    await api("POST", "/employees/import", 413, content=OVER_8_MIB, headers=JSON_HEADERS)
    await api("POST", "/employees/import", 422, json={"employees": [{"phone": "nope", "name": ""}, 7]})

    listed = await api("GET", "/employees", 200)
    assert listed.json()["total"] == 3
    await api("GET", "/employees", 422, query={"limit": "0"})
    await api("GET", "/employees", 200, query={"include_inactive": "true", "tag": "a"})
    await api("GET", "/employees", 401, auth=False)

    employee_id = created.json()["id"]
    other_id = listed.json()["items"][0]["id"]
    await api("GET", one, 200, ids={"employee_id": employee_id})
    await api("GET", one, 401, auth=False, ids={"employee_id": employee_id})
    await api("GET", one, 404, ids={"employee_id": 999_999})
    await api("GET", one, 404, ids={"employee_id": 2**70})

    await api("PATCH", one, 200, ids={"employee_id": employee_id}, json={"tags": ["office"]})
    await api("PATCH", one, 400, ids={"employee_id": employee_id}, content=MALFORMED, headers=JSON_HEADERS)
    await api("PATCH", one, 401, auth=False, ids={"employee_id": employee_id}, json={"tags": []})
    await api("PATCH", one, 404, ids={"employee_id": 999_999}, json={"tags": []})
    taken = (await api("GET", one, 200, ids={"employee_id": other_id})).json()["phone"]
    await api("PATCH", one, 409, ids={"employee_id": employee_id}, json={"phone": taken})
    await api("PATCH", one, 413, ids={"employee_id": employee_id}, content=OVER_8_MIB, headers=JSON_HEADERS)
    await api("PATCH", one, 422, ids={"employee_id": employee_id}, json={"name": "", "active": "yes"})

    await api("DELETE", one, 204, ids={"employee_id": other_id})
    await api("DELETE", one, 401, auth=False, ids={"employee_id": other_id})
    await api("DELETE", one, 404, ids={"employee_id": 999_999})
    await api("DELETE", one, 422, ids={"employee_id": other_id}, query={"erase": "maybe"})
    # Erasing someone who opted out keeps their opt-out by a hash keyed with JEM_SECRET_KEY; this server has none.
    async with db() as session, session.begin():
        await session.execute(text("UPDATE employee SET opted_out_at = now() WHERE id = :e"), {"e": employee_id})
    await api("DELETE", one, 409, ids={"employee_id": employee_id}, query={"erase": "true"})
    erased = await api("DELETE", one, 200, ids={"employee_id": other_id}, query={"erase": "true"})
    assert erased.json()["id"] == other_id
    await api("DELETE", one, 404, ids={"employee_id": other_id}, query={"erase": "true"})


async def _announcements(api: Api, db: Db, tenant: Tenant) -> None:
    one = "/announcements/{announcement_id}"
    later = {"message": "Payday is Friday.", "send_time": "2099-12-01T09:00:00+02:00"}
    created = await api("POST", "/announcements", 201, json=later)
    ann = created.json()["id"]
    await api("POST", "/announcements", 400, content=MALFORMED, headers=JSON_HEADERS)
    await api("POST", "/announcements", 401, auth=False, json=later)
    await api("POST", "/announcements", 413, content=OVER_8_MIB, headers=JSON_HEADERS)
    problem = await api("POST", "/announcements", 422, json={"message": " ", "send_time": "2099-12-01T09:00:00"})
    assert {e["field"] for e in problem.json()["errors"]} >= {"message", "send_time"}
    async with db() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO idempotency_key (employer_id, key, fingerprint, state, locked_until, expires_at) "
                "VALUES (:e, 'busy-key', :fp, 'running', now() + interval '1 minute', now() + interval '1 day')"
            ),
            {"e": tenant.employer_id, "fp": fingerprint(json.dumps(later).encode())},
        )
    busy = await api("POST", "/announcements", 409, json=later, headers={"Idempotency-Key": "busy-key"})
    assert busy.headers["retry-after"] == "1"

    await api("GET", "/announcements", 200)
    await api("GET", "/announcements", 200, query={"status": "scheduled", "limit": "2"})
    await api("GET", "/announcements", 422, query={"cursor": "not-ours"})
    await api("GET", "/announcements", 401, auth=False)

    await api("GET", one, 200, ids={"announcement_id": ann})
    await api("GET", one, 401, auth=False, ids={"announcement_id": ann})
    await api("GET", one, 404, ids={"announcement_id": 999_999})
    # An id PostgreSQL's bigint cannot hold names no announcement either.
    for path in (one, one + "/deliveries", one + "/timeline"):
        if ("GET", path) in api.contract.operations():
            await api("GET", path, 404, ids={"announcement_id": 2**63})
    for path in (one + "/cancel", one + "/resend-unknown"):
        await api("POST", path, 404, ids={"announcement_id": 2**63})
    await api("PATCH", one, 404, ids={"announcement_id": 2**63}, json={"message": "x"})

    deliveries = one + "/deliveries"
    people = await employees(db, tenant.employer_id, 3)
    await deliver(db, tenant.employer_id, ann, [(people[0], "sent", {}), (people[1], "unknown", {})])
    listed = await api("GET", deliveries, 200, ids={"announcement_id": ann})
    assert len(listed.json()["items"]) == 2
    await api("GET", deliveries, 422, ids={"announcement_id": ann}, query={"limit": "501"})
    await api("GET", deliveries, 401, auth=False, ids={"announcement_id": ann})
    await api("GET", deliveries, 404, ids={"announcement_id": 999_999})

    export = one + "/deliveries.csv"
    exported = await api("GET", export, 200, ids={"announcement_id": ann}, query={"phones": "full"})
    assert exported.text.count("\r\n") == 3  # the header and the two deliveries
    await api("GET", export, 422, ids={"announcement_id": ann}, query={"phones": "all"})
    await api("GET", export, 401, auth=False, ids={"announcement_id": ann})
    await api("GET", export, 404, ids={"announcement_id": 2**63})

    timeline = one + "/timeline"
    if ("GET", timeline) in api.contract.operations():
        await api("GET", timeline, 200, ids={"announcement_id": ann})
        await api("GET", timeline, 422, ids={"announcement_id": ann}, query={"bucket": "day"})
        await api("GET", timeline, 401, auth=False, ids={"announcement_id": ann})
        await api("GET", timeline, 404, ids={"announcement_id": 999_999})

    await api("PATCH", one, 200, ids={"announcement_id": ann}, json={"message": "Payday is Thursday."})
    await api("PATCH", one, 400, ids={"announcement_id": ann}, content=MALFORMED, headers=JSON_HEADERS)
    await api("PATCH", one, 401, auth=False, ids={"announcement_id": ann}, json={"message": "x"})
    await api("PATCH", one, 404, ids={"announcement_id": 999_999}, json={"message": "x"})
    await api("PATCH", one, 413, ids={"announcement_id": ann}, content=OVER_8_MIB, headers=JSON_HEADERS)
    await api("PATCH", one, 422, ids={"announcement_id": ann}, json={"send_time": "tomorrow"})

    resend = one + "/resend-unknown"
    resent = await api("POST", resend, 200, ids={"announcement_id": ann})
    assert resent.json()["resent"] == 1
    await api("POST", resend, 401, auth=False, ids={"announcement_id": ann})
    await api("POST", resend, 404, ids={"announcement_id": 999_999})

    cancel = one + "/cancel"
    await api("POST", cancel, 200, ids={"announcement_id": ann})
    await api("POST", cancel, 409, ids={"announcement_id": ann})
    await api("POST", cancel, 401, auth=False, ids={"announcement_id": ann})
    await api("POST", cancel, 404, ids={"announcement_id": 999_999})
    await api("PATCH", one, 409, ids={"announcement_id": ann}, json={"message": "too late"})
    await api("POST", resend, 409, ids={"announcement_id": ann})


async def _reminders(api: Api, db: Db, tenant: Tenant) -> None:
    remind, audience = "/announcements/{announcement_id}/remind", "/announcements/{announcement_id}/reminder-audience"
    async with db() as s, s.begin():
        emp = await s.scalar(
            text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, '+27829990001', 'R') RETURNING id"),
            {"e": tenant.employer_id},
        )
    later = {"message": "Later", "send_time": "2099-12-01T09:00:00Z"}
    scheduled = (await api("POST", "/announcements", 201, json=later)).json()["id"]
    sent = (await api("POST", "/announcements", 201, json=later)).json()["id"]
    async with db() as s, s.begin():
        await s.execute(text("UPDATE announcement SET status = 'completed' WHERE id = :a"), {"a": sent})
    await deliver(db, tenant.employer_id, sent, [(emp, "delivered", {})])
    ids = {"announcement_id": sent}
    assert (await api("GET", audience, 200, ids=ids)).json() == {"count": 1}
    await api("GET", audience, 401, auth=False, ids=ids)
    await api("GET", audience, 404, ids={"announcement_id": 999_999_999})
    shown = (await api("POST", remind, 201, ids=ids, json={})).json()
    assert shown["reminder_of"] == sent
    await api("POST", remind, 400, ids=ids, content=MALFORMED, headers=JSON_HEADERS)
    await api("POST", remind, 401, auth=False, ids=ids, json={})
    await api("POST", remind, 404, ids={"announcement_id": 999_999_999}, json={})
    await api("POST", remind, 409, ids={"announcement_id": scheduled}, json={})
    await api("POST", remind, 413, ids=ids, content=OVER_8_MIB, headers=JSON_HEADERS)
    await api("POST", remind, 422, ids=ids, json={"send_time": "tomorrow"})


async def _inbox_and_webhook(api: Api, db: Db, tenant: Tenant) -> None:
    verify = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "c1"}
    assert (await api("GET", WEBHOOK, 200, auth=False, query=verify)).text == "c1"
    await api("GET", WEBHOOK, 403, auth=False, query={**verify, "hub.verify_token": "wrong"})

    await _delivery(db, tenant, "sent", "wamid.CONTRACT")
    body = _inbound("wamid.CONTRACT-REPLY", body="Got it, thanks")
    await api("POST", WEBHOOK, 200, auth=False, content=body, headers=signed(body))
    not_json = b"not json"
    await api("POST", WEBHOOK, 400, auth=False, content=not_json, headers=signed(not_json))
    await api("POST", WEBHOOK, 401, auth=False, content=body, headers=JSON_HEADERS)
    await api("POST", WEBHOOK, 403, auth=False, content=body, headers=signed(body, secret="not-the-app-secret"))
    await api("POST", WEBHOOK, 413, auth=False, content=OVER_4_MIB, headers=signed(OVER_4_MIB))

    inbox = await api("GET", "/messages", 200)
    assert [m["text"] for m in inbox.json()["items"]] == ["Got it, thanks"]
    await api("GET", "/messages", 422, query={"limit": "0"})
    await api("GET", "/messages", 401, auth=False)


async def _conversations(api: Api, db: Db, tenant: Tenant) -> None:
    """`_inbox_and_webhook` left an employee who just wrote: inside the 24-hour window."""
    one = "/employees/{employee_id}/messages"
    async with db() as session:
        wrote = (
            await session.execute(text("SELECT employee_id FROM inbound_message WHERE wamid = 'wamid.CONTRACT-REPLY'"))
        ).scalar_one()
        silent = (
            await session.execute(
                text("SELECT id FROM employee WHERE employer_id = :e AND id <> :w ORDER BY id LIMIT 1"),
                {"e": tenant.employer_id, "w": wrote},
            )
        ).scalar_one()
    ids = {"employee_id": wrote}
    replied = await api("POST", one, 202, ids=ids, json={"text": "Thanks, noted."})
    assert replied.json()["status"] == "pending"
    keyed = {"Idempotency-Key": "contract-reply"}
    await api("POST", one, 202, ids=ids, json={"text": "Once."}, headers=keyed)
    assert (await api("POST", one, 202, ids=ids, json={"text": "Once."}, headers=keyed)).headers[
        "idempotent-replayed"
    ] == "true"
    await api("POST", one, 400, ids=ids, content=MALFORMED, headers=JSON_HEADERS)
    await api("POST", one, 401, auth=False, ids=ids, json={"text": "x"})
    await api("POST", one, 404, ids={"employee_id": 999_999}, json={"text": "x"})
    await api("POST", one, 409, ids={"employee_id": silent}, json={"text": "Hello?"})
    await api("POST", one, 413, ids=ids, content=OVER_8_MIB, headers=JSON_HEADERS)
    await api("POST", one, 422, ids=ids, json={"text": "   "})

    conversation = await api("GET", one, 200, ids=ids, query={"limit": "2"})
    assert conversation.json()["window_open"] is True
    assert conversation.json()["next_cursor"] is not None
    await api("GET", one, 200, ids=ids, query={"cursor": conversation.json()["next_cursor"]})
    await api("GET", one, 401, auth=False, ids=ids)
    await api("GET", one, 404, ids={"employee_id": 2**70})
    await api("GET", one, 422, ids=ids, query={"cursor": "not-ours"})

    answered = await api("GET", "/messages", 200, query={"employee_id": str(wrote), "acknowledgements": "false"})
    assert [m["answered"] for m in answered.json()["items"]] == [True]
    await api("GET", "/messages", 422, query={"employee_id": "abc"})


WABA_ID = "400000000000004"
# A real 1x1 PNG: the media endpoint reads the kind from the content.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c49444154789c63f8cfc0000003"
    "010100c9fe92ef0000000049454e44ae426082"
)


async def _templates_and_media(api: Api, settings: Settings) -> None:
    # This server has no WHATSAPP_WABA_ID: no account to read templates from.
    await api("GET", "/templates", 409)
    await api("POST", "/templates/sync", 409)
    await api("GET", "/templates", 401, auth=False)
    await api("POST", "/templates/sync", 401, auth=False)
    with_account = create_app(settings.replace(whatsapp_waba_id=WABA_ID))
    catalogue = {
        "data": [
            {
                "name": "staff_notice",
                "language": "en_US",
                "status": "APPROVED",
                "category": "UTILITY",
                "components": [{"type": "BODY", "text": "Notice: {{1}}"}],
                "id": "1",
            }
        ],
        "paging": {"cursors": {"before": "a", "after": "b"}},
    }
    # The API's own Graph calls go through a plain httpx client (`state.graph_http`).
    with respx.mock(base_url=GRAPH_URL, assert_all_called=False) as graph:
        graph.get(f"/{WABA_ID}/message_templates").mock(return_value=httpx.Response(200, json=catalogue))
        media = graph.post(f"/{PHONE_NUMBER_ID}/media")
        async with AsyncTestClient(app=with_account) as client:
            call = Api(client, api.contract, api.tenant)
            listed = await call("GET", "/templates", 200)
            assert [t["name"] for t in listed.json()["items"]] == ["staff_notice"]
            await call("GET", "/templates", 200, query={"status": "all"})
            await call("GET", "/templates", 422, query={"status": "draft"})
            assert (await call("POST", "/templates/sync", 200)).json() == {"synced": 1}

            media.mock(return_value=httpx.Response(200, json={"id": "1357924680"}))
            file = {"file": ("roster.png", PNG, "image/png")}
            assert (await call("POST", "/media", 200, files=file)).json()["media_id"] == "1357924680"
            await call("POST", "/media", 401, auth=False, files=file)
            await call("POST", "/media", 415, files={"file": ("team.gif", b"GIF89a" + bytes(64), "image/gif")})
            big = {"file": ("huge.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(5 * 1024 * 1024), "image/jpeg")}
            await call("POST", "/media", 413, files=big)
            await call("POST", "/media", 422, files={"document": ("roster.png", PNG, "image/png")})
            broken = {"Content-Type": "multipart/form-data; boundary=x"}
            await call("POST", "/media", 400, content=b"--x\r\nnot a part", headers=broken)
            media.mock(return_value=httpx.Response(400, json={"error": {"code": 131053, "message": "Media upload"}}))
            await call("POST", "/media", 502, files=file)


async def test_every_operation_has_a_summary_and_documents_its_errors_as_problems(contract: Contract) -> None:
    for (method, path), operation in contract.operations().items():
        summary = operation.get("summary") or ""
        # Litestar's fallback is the handler's name in PascalCase ("GetEmployee"): a human wrote none.
        assert " " in summary, f"{method} {path} has no human summary: {summary!r}"
        responses = operation["responses"]
        assert "500" in responses, f"{method} {path} does not document 500"
        for status, response in responses.items():
            if int(status) < 400 or (path, status) == ("/health", "503"):
                continue
            assert list(response.get("content", {})) == ["application/problem+json"], (method, path, status)
            schema = response["content"]["application/problem+json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
    public = {("GET", "/health"), ("GET", "/metrics"), ("GET", "/webhooks/whatsapp"), ("POST", "/webhooks/whatsapp")}
    for method, path in public:
        # One requirement asking for nothing: anyone may call it (the document's default is the bearer token).
        assert contract.operations()[(method, path)].get("security") == [{}], f"{method} {path} needs no token"
    problem = contract.spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"title", "status", "detail"}
    assert "errors" in problem["properties"]


async def test_fields_carry_their_formats_and_limits(contract: Contract) -> None:
    schemas = contract.spec["components"]["schemas"]
    created = schemas["AnnouncementIn"]["properties"]
    assert created["send_time"]["format"] == "date-time"
    assert created["message"]["maxLength"] == 4096
    assert created["message"]["minLength"] == 1
    assert schemas["AnnouncementPatch"]["properties"]["send_time"]["format"] == "date-time"
    assert schemas["Announcement"]["properties"]["send_time"]["format"] == "date-time"
    sender = schemas["SenderIn"]["properties"]
    assert sender["rate"]["minimum"] == 1
    assert sender["rate"]["maximum"] == 1000
    assert sender["phone_number_id"]["pattern"] == "^[0-9]{5,32}$"


def test_the_validator_catches_an_undocumented_status_and_a_body_off_its_schema() -> None:
    """The checker itself: what the live test relies on to fail."""
    spec = {
        "openapi": "3.1.0",
        "paths": {
            "/x": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/X"}}},
                            "description": "ok",
                        }
                    }
                }
            }
        },
        "components": {
            "schemas": {
                "X": {
                    "type": "object",
                    "required": ["at"],
                    "properties": {"at": {"type": "string", "format": "date-time"}},
                }
            }
        },
    }
    contract = Contract(spec)

    def answer(status: int, body: object) -> httpx.Response:
        return httpx.Response(status, json=body)

    contract.check("GET", "/x", answer(200, {"at": "2026-12-01T09:00:00+02:00"}))
    with pytest.raises(AssertionError, match="does not list"):
        contract.check("GET", "/x", answer(404, {"detail": "no"}))
    with pytest.raises(AssertionError, match="breaks its schema"):
        contract.check("GET", "/x", answer(200, {"at": "2026-12-01T09:00:00"}))
    with pytest.raises(AssertionError, match="breaks its schema"):
        contract.check("GET", "/x", answer(200, {}))
    assert json.dumps(contract.missing()) == "[]"


async def test_paths_work_with_a_trailing_slash(client: AsyncTestClient[Litestar], tenant: Tenant) -> None:
    """The proof of concept's clients wrote `/announcements/`; the same calls work with and without the slash."""
    body = {"message": "Payday is Friday.", "send_time": "2099-12-01T09:00:00+02:00"}
    created = await client.post("/announcements/", json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    ann = created.json()["id"]
    employee = await client.post("/employees/", json={"phone": "+27825550099", "name": "T"}, headers=tenant.headers)
    assert employee.status_code == 201, employee.text
    for path in (f"/announcements/{ann}/", "/announcements/", "/employees/", f"/employees/{employee.json()['id']}/",
                 "/me/", "/messages/", "/sender/"):  # fmt: skip
        response = await client.get(path, headers=tenant.headers)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
    changed = {"message": "Payday is Thursday."}
    patched = await client.patch(f"/announcements/{ann}/", json=changed, headers=tenant.headers)
    assert patched.json()["message"] == "Payday is Thursday."
    assert (await client.get("/health/")).status_code == 200
    assert (await client.get("/announcements/", headers={})).status_code == 401
