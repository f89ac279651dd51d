"""GET /announcements/{id}/deliveries.csv: the proof-of-notice export (content, masking, quoting, errors), and a
100,000-row export through a real `jem-bot serve` in constant memory, given up half-way by its client."""

from __future__ import annotations

import asyncio
import csv
import io
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.announcements.export import COLUMNS
from tests.conftest import MakeTenant, Tenant
from tests.integration.test_announcements import create, deliver, employees
from tests.integration.test_cli import WHATSAPP_ENV, cli_env, free_port, stop, wait_for_health

Client = AsyncTestClient[Litestar]
Db = async_sessionmaker[AsyncSession]
LATER = {"message": "Payday is Friday.", "send_time": "2099-12-01T09:00:00+02:00"}
SENT = datetime(2026, 12, 1, 7, 0, 2, 250_000, tzinfo=UTC)


def csv_url(announcement_id: int) -> str:
    return f"/announcements/{announcement_id}/deliveries.csv"


def parse(body: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(body, newline=""))
    header = next(reader)
    assert tuple(header) == COLUMNS
    return [dict(zip(header, row, strict=True)) for row in reader]


async def export(client: Client, tenant: Tenant, announcement_id: int, **params: str) -> list[dict[str, str]]:
    response = await client.get(csv_url(announcement_id), headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    return parse(response.text)


async def rename(db: Db, employee_id: int, name: str) -> None:
    async with db() as session, session.begin():
        await session.execute(text("UPDATE employee SET name = :n WHERE id = :id"), {"n": name, "id": employee_id})


async def test_every_delivery_with_its_columns_in_the_employers_timezone(
    client: Client, make_tenant: MakeTenant, db: Db
) -> None:
    # Half-hour offset: a server that printed its own zone, or UTC, or rounded the offset, would show it.
    tenant = await make_tenant(timezone="Asia/Kolkata")
    ann = (await create(client, tenant, LATER))["id"]
    people = await employees(db, tenant.employer_id, 3)
    await deliver(db, tenant.employer_id, ann, [
        (people[0], "read", {"attempts": 1, "language": "en_US", "sent_at": SENT,
                             "delivered_at": SENT + timedelta(seconds=2), "read_at": SENT + timedelta(minutes=12),
                             "acknowledged_at": SENT + timedelta(minutes=13)}),
        (people[1], "failed", {"attempts": 2, "error_code": 131026, "error_title": "Message undeliverable"}),
        (people[2], "pending", {}),
    ])  # fmt: skip

    response = await client.get(csv_url(ann), headers=tenant.headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="announcement-{ann}-deliveries.csv"'
    assert response.text.startswith(",".join(COLUMNS) + "\r\n")
    rows = parse(response.text)
    assert [r["employee_id"] for r in rows] == [str(p) for p in people]  # oldest delivery first
    read, failed, pending = rows
    assert read == {
        "employee_id": str(people[0]),
        "employee_name": "Worker 0",
        "phone": read["phone"],
        "language": "en_US",
        "status": "read",
        "attempts": "1",
        "error_code": "",
        "error_title": "",
        "sent_at": "2026-12-01T12:30:02+05:30",
        "delivered_at": "2026-12-01T12:30:04+05:30",
        "read_at": "2026-12-01T12:42:02+05:30",
        "acknowledged_at": "2026-12-01T12:43:02+05:30",
    }
    assert (failed["status"], failed["attempts"], failed["error_code"], failed["error_title"]) == (
        "failed", "2", "131026", "Message undeliverable",
    )  # fmt: skip
    assert failed["sent_at"] == failed["read_at"] == ""
    assert pending["language"] == pending["sent_at"] == pending["acknowledged_at"] == ""


async def test_phones_are_masked_as_the_deliveries_list_masks_them_unless_full(
    client: Client, tenant: Tenant, db: Db
) -> None:
    ann = (await create(client, tenant, LATER))["id"]
    people = await employees(db, tenant.employer_id, 2)
    await deliver(db, tenant.employer_id, ann, [(p, "sent", {}) for p in people])
    listed = await client.get(f"/announcements/{ann}/deliveries", headers=tenant.headers)
    masked_in_json = {str(d["employee_id"]): d["phone"] for d in listed.json()["items"]}
    async with db() as session:
        stored = {r.id: r.phone for r in await session.execute(text("SELECT id::text AS id, phone FROM employee"))}

    masked = {r["employee_id"]: r["phone"] for r in await export(client, tenant, ann)}
    full = {r["employee_id"]: r["phone"] for r in await export(client, tenant, ann, phones="full")}

    assert masked == masked_in_json
    assert all("•" in phone for phone in masked.values())
    assert full == stored
    assert all(p.startswith("+2782") and p[1:].isdigit() for p in full.values())


@pytest.mark.parametrize("value", ["masked", "FULL", "", "true"])
async def test_any_other_phones_value_is_422_naming_phones(client: Client, tenant: Tenant, value: str) -> None:
    ann = (await create(client, tenant, LATER))["id"]
    response = await client.get(csv_url(ann), headers=tenant.headers, params={"phones": value})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["phones"]


async def test_commas_quotes_and_line_breaks_survive_and_formulas_are_defused(
    client: Client, tenant: Tenant, db: Db
) -> None:
    ann = (await create(client, tenant, LATER))["id"]
    names = ['Smith, "Jo"', "First line\r\nsecond line", "=HYPERLINK(\"http://x\")", "+27 fake", "-1+2", "@SUM(A1)",
             "\tTabbed", "Zoë Ndlovu"]  # fmt: skip
    people = await employees(db, tenant.employer_id, len(names))
    for person, name in zip(people, names, strict=True):
        await rename(db, person, name)
    await deliver(db, tenant.employer_id, ann, [(p, "failed", {"error_title": "=1+1"}) for p in people])

    rows = await export(client, tenant, ann)

    assert [r["employee_name"] for r in rows] == [
        'Smith, "Jo"', "First line\r\nsecond line", "'=HYPERLINK(\"http://x\")", "'+27 fake", "'-1+2", "'@SUM(A1)",
        "'\tTabbed", "Zoë Ndlovu",
    ]  # fmt: skip
    assert {r["error_title"] for r in rows} == {"'=1+1"}
    # Phones start with + and are left alone: they are E.164 or its mask, never a formula.
    assert all(r["phone"].startswith("+27") for r in rows)


async def test_an_erased_employee_has_no_name_or_phone(client: Client, tenant: Tenant, db: Db) -> None:
    ann = (await create(client, tenant, LATER))["id"]
    kept, erased = await employees(db, tenant.employer_id, 2)
    await deliver(db, tenant.employer_id, ann, [(kept, "read", {}), (erased, "delivered", {})])
    async with db() as session, session.begin():
        await session.execute(text("UPDATE employee SET erased_at = now() WHERE id = :id"), {"id": erased})

    for params in ({}, {"phones": "full"}):
        rows = {r["employee_id"]: r for r in await export(client, tenant, ann, **params)}
        assert (rows[str(erased)]["employee_name"], rows[str(erased)]["phone"]) == ("", "")
        assert rows[str(erased)]["status"] == "delivered"  # the ledger row stays
        assert rows[str(kept)]["employee_name"] == "Worker 0"
        assert rows[str(kept)]["phone"] != ""


async def test_an_announcement_without_deliveries_is_the_header_alone(client: Client, tenant: Tenant) -> None:
    ann = (await create(client, tenant, LATER))["id"]
    response = await client.get(csv_url(ann), headers=tenant.headers)
    assert response.status_code == 200
    assert response.text == ",".join(COLUMNS) + "\r\n"


async def test_unknown_or_another_employers_announcement_is_404(
    client: Client, tenant: Tenant, make_tenant: MakeTenant, db: Db
) -> None:
    other = await make_tenant(slug="other", name="Other")
    theirs = (await create(client, other, LATER))["id"]
    await deliver(db, other.employer_id, theirs, [(p, "sent", {}) for p in await employees(db, other.employer_id, 1)])
    for announcement_id in (theirs, 999_999, 2**63):
        response = await client.get(csv_url(announcement_id), headers=tenant.headers)
        assert response.status_code == 404, announcement_id
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "Worker" not in response.text


async def test_no_token_is_401(client: Client, tenant: Tenant) -> None:
    ann = (await create(client, tenant, LATER))["id"]
    assert (await client.get(csv_url(ann))).status_code == 401


# --- 100,000 rows through a real server -------------------------------------------------------------------------

ROWS = 100_000
# A server that held the rows, or the CSV, in memory would grow by well over this: 100,000 rows of ~120 bytes are
# 12 MB of text alone, and several times that as Python objects.
RSS_GROWTH_LIMIT_MB = 40
EXPORT_QUERY_MARK = "to_char(d.acknowledged_at"


def peak_rss_kb(pid: int) -> int:
    """VmHWM: the process's peak resident set since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


async def seed(db: Db, employer_id: int, announcement_id: int, n: int) -> None:
    async with db() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO employee (employer_id, phone, name) "
                "SELECT :e, '+2783' || lpad(i::text, 7, '0'), 'Employee number ' || i FROM generate_series(1, :n) i"
            ),
            {"e": employer_id, "n": n},
        )
        await session.execute(
            text(
                "INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, attempts, sent_at, "
                "delivered_at, read_at) "
                "SELECT :e, :a, id, 'announcement', 'read', 1, now(), now(), now() FROM employee WHERE employer_id = :e"
            ),
            {"e": employer_id, "a": announcement_id},
        )


def start_serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[str]:
    """One server process (`--workers 1`): the process whose memory is measured is the one answering."""
    with log.open("w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--no-dispatcher", "--workers", "1", "--port", str(port)],
            env=env, stdout=sink, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


async def export_backends(db: Db) -> list[str]:
    """States of the server connections in the middle of an export (reading, or waiting for its client)."""
    async with db() as session:
        rows = await session.execute(
            text(
                "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND state <> 'idle' AND query LIKE :mark"
            ),
            {"mark": f"%{EXPORT_QUERY_MARK}%"},
        )
        return [str(s) for s in rows.scalars()]


async def poll(check: Any, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_hundred_thousand_rows_stream_in_constant_memory_and_a_disconnect_frees_the_connection(
    database_url: str, db: Db, make_tenant: MakeTenant, tmp_path: Path
) -> None:
    tenant = await make_tenant()
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_serve(cli_env(database_url, tmp_path, **WHATSAPP_ENV), port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, proc)
        async with httpx.AsyncClient(base_url=base, headers=tenant.headers, timeout=60) as http:
            small = (await http.post("/announcements", json=LATER)).json()["id"]
            big = (await http.post("/announcements", json=LATER)).json()["id"]
            await seed(db, tenant.employer_id, big, ROWS)
            # The first export loads the code paths a large one uses: the baseline is a server that has exported.
            few = await employees(db, tenant.employer_id, 20)
            await deliver(db, tenant.employer_id, small, [(p, "sent", {}) for p in few])
            assert (await http.get(csv_url(small))).text.count("\n") == 21
            before_kb = peak_rss_kb(proc.pid)

            started = time.monotonic()
            lines = chunks = 0
            tail = b""
            async with http.stream("GET", csv_url(big)) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_raw(64 * 1024):
                    chunks += 1
                    lines += chunk.count(b"\n")
                    tail = (tail + chunk)[-200:]
            seconds = time.monotonic() - started
            after_kb = peak_rss_kb(proc.pid)

            growth_mb = (after_kb - before_kb) / 1024
            print(
                f"\nCSV export: {ROWS:,} rows ({lines:,} lines, {chunks} chunks) in {seconds:.2f} s; server peak RSS "
                f"{before_kb / 1024:.1f} MB before, {after_kb / 1024:.1f} MB after (+{growth_mb:.1f} MB)"
            )
            assert lines == ROWS + 1
            assert tail.endswith(b"\r\n")
            last = next(csv.reader([tail.decode(errors="replace").rstrip().rsplit("\r\n", 1)[-1]]))
            assert (len(last), last[COLUMNS.index("status")]) == (len(COLUMNS), "read")  # the last row arrived whole
            assert growth_mb < RSS_GROWTH_LIMIT_MB

            # A client that goes away half-way: the export's connection is given back at once, not when the
            # generator happens to be collected.
            async with http.stream("GET", csv_url(big)) as response:
                body = response.aiter_raw(64 * 1024)
                received = 0
                while received < 256 * 1024:
                    received += len(await anext(body))
                # Not reading on: the server sends what the socket buffers hold, then waits for us, its cursor open.
                await poll(lambda: _some(export_backends(db)), "the export to wait for its client")
                await response.aclose()  # hangs up: the rest of the body is never read
            await poll(lambda: _none(export_backends(db)), "the export's connection to be given back")
            assert (await http.get("/health")).json()["database"] == "ok"
    finally:
        status = stop(proc, signal.SIGTERM, timeout=30)
    output = log.read_text()
    assert status == 0, output
    assert "non-checked-in" not in output, output
    assert "Traceback" not in output, output
    assert "+2783" not in output  # no phone in the server's log


async def _some(states: Any) -> bool:
    return bool(await states)


async def _none(states: Any) -> bool:
    return not await states
