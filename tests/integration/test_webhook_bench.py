"""`jem-bot bench webhook`: real HTTP against `jem-bot serve`, numbers that add up, and no trace left behind."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Tenant
from tests.integration.test_cli import cli_env, jem
from tests.integration.test_webhook import _delivery


async def _snapshot(db: async_sessionmaker[AsyncSession]) -> tuple[object, ...]:
    async with db() as s:
        return tuple(
            (
                await s.execute(
                    text(
                        """
                        SELECT (SELECT json_agg(e ORDER BY e.id)::text FROM employer e),
                               (SELECT json_agg(m ORDER BY m.id)::text FROM employee m),
                               (SELECT json_agg(a ORDER BY a.id)::text FROM announcement a),
                               (SELECT json_agg(d ORDER BY d.id)::text FROM delivery d),
                               (SELECT json_agg(w ORDER BY w.id)::text FROM webhook_event w),
                               (SELECT count(*) FROM inbound_message)
                        """
                    )
                )
            ).one()
        )


async def test_bench_measures_every_mode_and_leaves_the_database_as_it_found_it(
    db: async_sessionmaker[AsyncSession], tenant: Tenant, database_url: str, tmp_path: Path
) -> None:
    # Someone's real data: an announcement in flight and an event Meta already sent about it.
    await _delivery(db, tenant, "sent", "wamid.USER")
    async with db() as s, s.begin():
        await s.execute(text("INSERT INTO webhook_event (key, kind) VALUES ('st:wamid.USER:sent', 'status')"))
    before = await _snapshot(db)

    args = (
        "bench",
        "webhook",
        "--requests",
        "40",
        "--concurrency",
        "1,3",
        "--batch-size",
        "10",
        "--batch-requests",
        "5",
    )
    # A thread: the bench runs its own server and event loop, and this test's loop must stay free meanwhile.
    done = await asyncio.to_thread(jem, cli_env(database_url, tmp_path), *args, "--json", timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["database"] == "DATABASE_URL"
    runs = report["runs"]
    assert [(r["mode"], r["statuses_per_post"], r["concurrency"], r["requests"], r["errors"]) for r in runs] == [
        ("single", 1, 1, 40, 0),
        ("batch", 10, 1, 5, 0),
        ("single", 1, 3, 40, 0),
        ("batch", 10, 3, 5, 0),
    ]
    for r in runs:
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["req_per_s"] > 0
        assert r["statuses_per_s"] == pytest.approx(r["req_per_s"] * r["statuses_per_post"], rel=0.01)
        # The app's own time is part of what the client waited for.
        assert 0 < r["server_mean_ms"] <= r["max_ms"]
    assert await _snapshot(db) == before


async def test_bench_refuses_bad_options_with_one_line(tmp_path: Path, database_url: str) -> None:
    env = cli_env(database_url, tmp_path)
    for args, message in [
        (("--requests", "0"), "--requests must be 1-100000"),
        (("--concurrency", "0"), "--concurrency must be 1-1000"),
        (("--batch-size", "5000"), "--batch-size must be 0-1000"),
        (("--concurrency", "x"), "expected integers separated by commas"),
    ]:
        done = await asyncio.to_thread(jem, env, "bench", "webhook", *args)
        assert done.returncode == 2
        assert message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
