"""Idempotency-Key on POST /announcements: replay byte for byte, mismatch, in-flight, takeover, tenancy,
purge, and real concurrency across two `serve` processes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.maintenance import purge_idempotency_keys, purge_webhook_events
from tests.conftest import MakeTenant, Tenant
from tests.integration.test_cli import WHATSAPP_ENV, cli_env, free_port, stop, wait_for_health

SEED = {"message": "Payday is Friday.", "send_time": "2026-12-01T09:00:00+02:00"}
Client = AsyncTestClient[Litestar]


def keyed(tenant: Tenant, key: str) -> dict[str, str]:
    return {**tenant.headers, "Idempotency-Key": key}


async def count_announcements(db: async_sessionmaker[AsyncSession], employer_id: int | None = None) -> int:
    async with db() as session:
        return int(
            (
                await session.execute(
                    text("SELECT count(*) FROM announcement WHERE CAST(:e AS bigint) IS NULL OR employer_id = :e"),
                    {"e": employer_id},
                )
            ).scalar_one()
        )


async def test_replay_is_byte_identical_and_marked(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    first = await client.post("/announcements", content=json.dumps(SEED), headers=keyed(tenant, "k-1"))
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    # Same body re-encoded with other key order and whitespace: the same request.
    reordered = json.dumps({"send_time": SEED["send_time"], "message": SEED["message"]}, indent=4)
    again = await client.post("/announcements", content=reordered, headers=keyed(tenant, "k-1"))
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert await count_announcements(db) == 1


async def test_same_key_different_body_is_422(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    assert (await client.post("/announcements", json=SEED, headers=keyed(tenant, "k-2"))).status_code == 201
    other = await client.post("/announcements", json={**SEED, "message": "Other"}, headers=keyed(tenant, "k-2"))
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert await count_announcements(db) == 1


@pytest.mark.parametrize("key", ["", "a" * 256, "has space", "tab\tkey", "del\x7fkey"])
async def test_bad_key_is_rejected_naming_the_header(client: Client, tenant: Tenant, key: str) -> None:
    response = await client.post("/announcements", json=SEED, headers=keyed(tenant, key))
    assert response.status_code in (400, 422)
    assert "Idempotency-Key" in response.text


async def test_validation_failure_does_not_lock_the_key(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    bad = await client.post(
        "/announcements", json={"message": "hi", "send_time": "2026-12-01T09:00:00"}, headers=keyed(tenant, "k-3")
    )
    assert bad.status_code == 422
    good = await client.post("/announcements", json=SEED, headers=keyed(tenant, "k-3"))
    assert good.status_code == 201
    assert await count_announcements(db) == 1


async def test_a_request_the_database_refused_does_not_lock_the_key(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    """PostgreSQL cannot store U+0000 in text: the API answers 422 and, as for any request that created nothing,
    the key is free at once (a retry is processed again, not answered 409 for a minute)."""
    body = {"message": "Payday\u0000 is Friday."}
    for _ in range(2):
        refused = await client.post("/announcements", json=body, headers=keyed(tenant, "k-nul"))
        assert refused.status_code == 422, refused.text
    good = await client.post("/announcements", json={"message": "Payday is Friday."}, headers=keyed(tenant, "k-nul"))
    assert good.status_code == 201
    assert await count_announcements(db) == 1


async def test_running_key_is_409_with_retry_after_and_stale_key_is_taken_over(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    from bot.announcements.idempotency import fingerprint

    fp = fingerprint(json.dumps(SEED).encode())
    async with db() as session:
        await session.execute(
            text(
                "INSERT INTO idempotency_key (employer_id, key, fingerprint, state, locked_until, expires_at) "
                "VALUES (:e, 'k-4', :fp, 'running', now() + interval '1 minute', now() + interval '1 day')"
            ),
            {"e": tenant.employer_id, "fp": fp},
        )
        await session.commit()
    busy = await client.post("/announcements", json=SEED, headers=keyed(tenant, "k-4"))
    assert busy.status_code == 409
    assert int(busy.headers["retry-after"]) >= 1
    assert await count_announcements(db) == 0
    # The holder "crashed": its lock passes, and the retry takes the key over.
    async with db() as session:
        await session.execute(
            text("UPDATE idempotency_key SET locked_until = now() - interval '1 second' WHERE key = 'k-4'")
        )
        await session.commit()
    taken = await client.post("/announcements", json=SEED, headers=keyed(tenant, "k-4"))
    assert taken.status_code == 201
    replay = await client.post("/announcements", json=SEED, headers=keyed(tenant, "k-4"))
    assert replay.content == taken.content
    assert await count_announcements(db) == 1


async def test_keys_are_independent_per_employer(
    client: Client, make_tenant: MakeTenant, db: async_sessionmaker[AsyncSession]
) -> None:
    a = await make_tenant("a-co")
    b = await make_tenant("b-co")
    ra = await client.post("/announcements", json=SEED, headers=keyed(a, "shared"))
    rb = await client.post("/announcements", json={**SEED, "message": "B's"}, headers=keyed(b, "shared"))
    assert (ra.status_code, rb.status_code) == (201, 201)
    assert ra.json()["id"] != rb.json()["id"]
    assert await count_announcements(db, a.employer_id) == 1
    assert await count_announcements(db, b.employer_id) == 1


async def test_key_stored_with_response_and_purged_after_expiry(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    created = await client.post("/announcements", json=SEED, headers=keyed(tenant, "k-5"))
    async with db() as session:
        row = (
            await session.execute(
                text(
                    "SELECT state, response_status, response_body, expires_at - now() > interval '23 hours 59 minutes'"
                    " AS long_enough FROM idempotency_key WHERE key = 'k-5'"
                )
            )
        ).one()
        assert (row.state, row.response_status, bytes(row.response_body), row.long_enough) == (
            "completed", 201, created.content, True,
        )  # fmt: skip
        await session.execute(
            text(
                "INSERT INTO webhook_event (key, kind, received_at) VALUES "
                "('old', 'status', now() - interval '9 days'), ('new', 'status', now() - interval '7 days')"
            )
        )
        await session.commit()
    assert await purge_idempotency_keys(db) == 0
    async with db() as session:
        await session.execute(text("UPDATE idempotency_key SET expires_at = now() - interval '1 second'"))
        await session.commit()
    assert await purge_idempotency_keys(db) == 1
    assert await purge_webhook_events(db) == 1
    async with db() as session:
        assert list((await session.execute(text("SELECT key FROM webhook_event"))).scalars()) == ["new"]
    # After the purge the key is fresh again: a new request is processed (a second announcement).
    again = await client.post("/announcements", json=SEED, headers=keyed(tenant, "k-5"))
    assert again.status_code == 201
    assert again.json()["id"] != created.json()["id"]


@pytest.fixture
def two_servers(database_url: str, tmp_path: Path) -> Iterator[list[str]]:
    env = cli_env(database_url, tmp_path, **WHATSAPP_ENV)
    procs: list[tuple[subprocess.Popen[str], str]] = []
    try:
        for _ in range(2):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", "--no-dispatcher", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append((proc, f"http://127.0.0.1:{port}"))
        for proc, base in procs:
            assert wait_for_health(base, proc).status_code == 200
        yield [base for _, base in procs]
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                stop(proc, signal.SIGTERM)
            if proc.stderr:
                proc.stderr.close()


@pytest.mark.parametrize("round_", range(3))
async def test_concurrent_same_key_across_two_processes_creates_once(
    two_servers: list[str], tenant: Tenant, db: async_sessionmaker[AsyncSession], round_: int
) -> None:
    headers = keyed(tenant, f"storm-{round_}")
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as http:
        responses = await asyncio.gather(
            *(http.post(f"{two_servers[i % 2]}/announcements", json=SEED, headers=headers) for i in range(40))
        )
    statuses = {r.status_code for r in responses}
    assert statuses <= {201, 409}, statuses
    created = [r.content for r in responses if r.status_code == 201]
    assert created, "at least the winner answers 201"
    assert len(set(created)) == 1
    assert all("retry-after" in r.headers for r in responses if r.status_code == 409)
    assert await count_announcements(db) == 1
    # After the storm, a retry replays the winner's body exactly.
    async with httpx.AsyncClient(timeout=10) as http:
        replay = await http.post(f"{two_servers[1]}/announcements", json=SEED, headers=headers)
    assert replay.status_code == 201
    assert replay.content == created[0]
