"""`jem-bot worker` as a real process: SIGTERM stops claiming, lets the sends in flight finish, and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.bench.fanout import SimulatorProcess
from tests.conftest import APP_SECRET, PHONE_NUMBER_ID, VERIFY_TOKEN, Tenant

Db = async_sessionmaker[AsyncSession]
# Slow enough that the sends are still in flight when SIGTERM arrives, fast enough to keep the test short.
LATENCY_MS = 1_500


@pytest.fixture
def simulator() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(latency_ms=LATENCY_MS) as sim:
        yield sim


async def count(db: Db, sql: str) -> int:
    async with db() as s:
        return int((await s.execute(text(sql))).scalar_one())


async def test_sigterm_finishes_in_flight_sends_and_exits_0(
    db: Db, tenant: Tenant, database_url: str, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    async with db() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO employee (employer_id, phone, name) "
                "SELECT :e, '+2782' || lpad(g::text, 7, '0'), 'E' || g FROM generate_series(1, 8) AS g"
            ),
            {"e": tenant.employer_id},
        )
        await s.execute(
            text(
                "INSERT INTO announcement (employer_id, message, send_at, audience) "
                "VALUES (:e, 'hi', now(), CAST('{\"all\": true}' AS jsonb))"
            ),
            {"e": tenant.employer_id},
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "JEM_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=database_url,
        JEM_DATA_DIR=str(tmp_path / "jem-data"),
        JEM_SEND_RATE="1000",
        WHATSAPP_API_URL=simulator.api_url,
        WHATSAPP_ACCESS_TOKEN="worker-test-token",
        WHATSAPP_PHONE_NUMBER_ID=PHONE_NUMBER_ID,
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
    )
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "worker", "--concurrency", "20",
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert worker.stderr is not None
    try:
        deadline = time.monotonic() + 30
        while await count(db, "SELECT count(*) FROM delivery WHERE status = 'sending'") < 8:
            assert worker.returncode is None, (await worker.stderr.read()).decode()
            assert time.monotonic() < deadline, "the worker did not claim the deliveries"
            await asyncio.sleep(0.05)
        # Every send is now waiting on the simulator's answer.
        worker.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(worker.wait(), timeout=30)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    stderr = (await worker.stderr.read()).decode()
    assert status == 0, stderr
    assert "Traceback" not in stderr
    assert await count(db, "SELECT count(*) FROM delivery WHERE status = 'sent' AND wamid IS NOT NULL") == 8
    assert await count(db, "SELECT count(*) FROM worker WHERE stopped_at IS NOT NULL") == 1
    stats = simulator.stats()
    assert (stats["messages_accepted"], stats["duplicates"]) == (8, 0)
