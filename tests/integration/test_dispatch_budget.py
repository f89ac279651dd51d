"""The shared send budget as dispatchers use it: several dispatchers, each on its own engine (its own
connections, as separate workers would be), stay within JEM_SEND_RATE; tokens a claim could not use go back.

(tests/integration/test_dispatch.py checks `budget.take` alone with concurrent takers on one engine.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.db.engine import make_engine, make_sessionmaker
from bot.dispatch.dispatcher import Dispatcher
from bot.graph.client import SendResult
from bot.ledger import budget, claim, fanout
from bot.settings import Settings
from tests.conftest import Tenant

Db = async_sessionmaker[AsyncSession]


class QuickGraph:
    """Answers every send after a millisecond: the budget, not Graph, is what limits these dispatchers."""

    def __init__(self) -> None:
        self.sent = 0

    async def send_announcement(
        self,
        *,
        to: str,
        text: str,
        callback_data: str,
        ack_payload: str | None = None,
        recipient_user_id: str | None = None,
    ) -> SendResult:
        await asyncio.sleep(0.001)
        self.sent += 1
        return SendResult(wamid=f"wamid.{callback_data}", wa_id=to.lstrip("+"), message_status=None)

    send_text = send_announcement


async def seed(db: Db, employer_id: int, n: int) -> None:
    async with db() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO employee (employer_id, phone, name) "
                "SELECT :e, '+2782' || lpad(g::text, 7, '0'), 'E' || g FROM generate_series(1, :n) AS g"
            ),
            {"e": employer_id, "n": n},
        )
        await s.execute(
            text(
                "INSERT INTO announcement (employer_id, message, send_at, audience) "
                "VALUES (:e, 'hi', now(), CAST('{\"all\": true}' AS jsonb))"
            ),
            {"e": employer_id},
        )


async def set_bucket(db: Db, phone_number_id: str, tokens: float) -> float:
    """Put ``tokens`` in the bucket as of now; returns that moment (database clock, epoch seconds)."""
    async with db() as s, s.begin():
        return float(
            (
                await s.execute(
                    text(
                        "INSERT INTO send_budget (phone_number_id, tokens, refilled_at) "
                        "VALUES (:p, :t, clock_timestamp()) ON CONFLICT (phone_number_id) "
                        "DO UPDATE SET tokens = :t, refilled_at = clock_timestamp() "
                        "RETURNING extract(epoch FROM refilled_at)::float8"
                    ),
                    {"p": phone_number_id, "t": tokens},
                )
            ).scalar_one()
        )


async def tokens_now(db: Db, phone_number_id: str) -> float:
    async with db() as s:
        query = text("SELECT tokens FROM send_budget WHERE phone_number_id = :p")
        return float((await s.execute(query, {"p": phone_number_id})).scalar_one())


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[list[AsyncEngine]]:
    engines = [make_engine(database_url, pool_size=3, max_overflow=2) for _ in range(3)]
    yield engines
    for engine in engines:
        await engine.dispose()


async def test_several_dispatchers_on_their_own_connections_stay_within_the_rate(
    db: Db, tenant: Tenant, settings: Settings, engines: list[AsyncEngine]
) -> None:
    rate, n = 200.0, 400
    settings = settings.replace(send_rate=rate)
    await seed(db, tenant.employer_id, n)
    await fanout.fan_out_due(db)
    started = await set_bucket(db, settings.whatsapp_phone_number_id, 0)
    graph = QuickGraph()
    dispatchers = [
        Dispatcher(settings, make_sessionmaker(engine), graph, worker_id=f"w{i}", concurrency=50)
        for i, engine in enumerate(engines)
    ]
    tasks = [asyncio.create_task(d.run()) for d in dispatchers]
    try:
        deadline = time.monotonic() + 30
        while graph.sent < n:
            assert time.monotonic() < deadline, f"only {graph.sent} of {n} sent"
            await asyncio.sleep(0.05)
    finally:
        for d in dispatchers:
            d.stop()
        await asyncio.gather(*tasks)

    async with db() as s:
        claims = [
            float(r[0])
            for r in (
                await s.execute(text("SELECT extract(epoch FROM claimed_at)::float8 FROM delivery ORDER BY claimed_at"))
            ).all()
        ]
        sent_by = dict((await s.execute(text("SELECT claimed_by, count(*) FROM delivery GROUP BY 1"))).all())
    assert len(claims) == n
    assert len(sent_by) > 1  # the dispatchers really shared the work
    # Every window [a, b] holds at most one burst plus rate x (b - a) claims. `claimed_at` is when the claim's
    # transaction began, a little before it took its tokens (it may wait for the budget row): that slack is
    # allowed for, a tenth of a second's worth.
    slack = budget.burst(rate) + rate * 0.1
    assert claims[0] >= started
    for j in range(n):
        for i in range(j + 1):
            assert j - i + 1 <= slack + rate * (claims[j] - claims[i]), (i, j, claims[j] - claims[i])
    # And over the whole run, from the empty bucket to the last claim: at most the rate plus that slack.
    assert n <= slack + rate * (claims[-1] - started)


async def test_tokens_a_claim_cannot_use_go_back_to_the_bucket(db: Db, tenant: Tenant, settings: Settings) -> None:
    phone = settings.whatsapp_phone_number_id
    rate = 100.0
    full = budget.burst(rate)
    await seed(db, tenant.employer_id, 3)
    await fanout.fan_out_due(db)
    await set_bucket(db, phone, full)

    batch = await claim.claim_within_budget(db, me="w1", n=int(full), phone_number_id=phone, rate=rate, lease=10)
    assert (len(batch.rows), batch.tokens) == (3, int(full))
    # Three tokens were used; the rest are back (the bucket also refilled a little meanwhile, up to full).
    assert full - 3 <= await tokens_now(db, phone) <= full

    # An idle dispatcher polling an empty ledger takes nothing away from the others.
    for _ in range(5):
        idle = await claim.claim_within_budget(db, me="w2", n=int(full), phone_number_id=phone, rate=rate, lease=10)
        assert idle.rows == []
    assert await tokens_now(db, phone) >= full - 3


async def test_a_claim_that_fails_takes_no_tokens(
    db: Db, tenant: Tenant, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = settings.whatsapp_phone_number_id
    await set_bucket(db, phone, 50)

    class Boom(Exception):
        pass

    async def broken_claim_in(session: AsyncSession, **_: Any) -> Any:
        raise Boom

    monkeypatch.setattr(claim, "claim_in", broken_claim_in)
    with pytest.raises(Boom):
        await claim.claim_within_budget(db, me="w1", n=20, phone_number_id=phone, rate=100.0, lease=10)
    assert await tokens_now(db, phone) == 50  # rolled back with the claim: the bucket is as it was


async def test_an_idle_bucket_banks_only_a_fifth_of_a_second(db: Db, settings: Settings) -> None:
    phone = settings.whatsapp_phone_number_id
    await set_bucket(db, phone, 1e9)  # as if nobody had sent for a long time
    # A full second's worth would let a worker that waited for free slots send at twice the cap for a second.
    assert await budget.take(db, phone_number_id=phone, want=10_000, rate=1000.0) == 200
