"""Dispatcher against real PostgreSQL with a duck-typed fake Graph: never twice, every outcome class."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.dispatch.dispatcher import Dispatcher
from bot.graph.client import SendResult
from bot.graph.errors import AmbiguousError, NotSentError, RejectedError
from bot.ledger import budget, fanout, reaper
from bot.settings import Settings


class FakeGraph:
    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.sent: Counter[str] = Counter()
        self.fail = fail or {}

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
        if to in self.fail:
            raise self.fail[to]
        self.sent[callback_data] += 1
        return SendResult(wamid=f"wamid.{callback_data}", wa_id=to.lstrip("+"), message_status=None)

    send_text = send_announcement


async def seed(db: async_sessionmaker[AsyncSession], employer_id: int, n: int, audience: str = '{"all": true}') -> int:
    async with db() as s, s.begin():
        for i in range(n):
            await s.execute(
                text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, :p, :n)"),
                {"e": employer_id, "p": f"+2782{i:07d}", "n": f"E{i}"},
            )
        aid = (
            await s.execute(
                text(
                    "INSERT INTO announcement (employer_id, message, send_at, audience) "
                    "VALUES (:e, 'hi', now(), CAST(:a AS jsonb)) RETURNING id"
                ),
                {"e": employer_id, "a": audience},
            )
        ).scalar_one()
    return int(aid)


async def statuses(db: async_sessionmaker[AsyncSession]) -> Counter[str]:
    async with db() as s:
        return Counter(r[0] for r in (await s.execute(text("SELECT status FROM delivery"))).all())


async def test_fanout_race_makes_one_row_per_employee(db: Any, tenant: Any) -> None:
    await seed(db, tenant.employer_id, 50)
    await asyncio.gather(*(fanout.fan_out_due(db) for _ in range(5)))
    async with db() as s:
        n = (await s.execute(text("SELECT count(*) FROM delivery"))).scalar_one()
        st = (await s.execute(text("SELECT status FROM announcement"))).scalar_one()
    assert n == 50
    assert st == "dispatching"


async def test_concurrent_dispatchers_never_send_twice(db: Any, tenant: Any, settings: Settings) -> None:
    await seed(db, tenant.employer_id, 300)
    graph = FakeGraph()
    settings = settings.replace(send_rate=100_000.0)
    ds = [Dispatcher(settings, db, graph, worker_id=f"w{i}", concurrency=20) for i in range(4)]

    async def drive(d: Dispatcher) -> None:
        for _ in range(200):
            await d.run_once()
            await d.drain()
            if (await statuses(db)).get("pending", 0) == 0:
                break

    await asyncio.gather(*(drive(d) for d in ds))
    assert sum(graph.sent.values()) == 300
    assert max(graph.sent.values()) == 1
    assert await statuses(db) == Counter({"sent": 300})
    await ds[0].run_once()
    async with db() as s:
        assert (await s.execute(text("SELECT status FROM announcement"))).scalar_one() == "completed"


async def test_outcome_classes(db: Any, tenant: Any, settings: Settings) -> None:
    settings = settings.replace(send_rate=100_000.0)
    await seed(db, tenant.employer_id, 4)
    graph = FakeGraph(
        {
            "+27820000001": RejectedError("undeliverable", code=131026),
            "+27820000002": AmbiguousError("timeout"),
            "+27820000003": NotSentError("oops", code=131000, scope="attempt", retry_after=3600.0),
        }
    )
    d = Dispatcher(settings, db, graph, worker_id="w")
    await d.run_once()
    await d.drain()
    assert await statuses(db) == Counter({"sent": 1, "failed": 1, "unknown": 1, "pending": 1})
    async with db() as s:
        reasons = dict((await s.execute(text("SELECT status, error_title FROM delivery"))).all())
    assert reasons["unknown"] == "timeout"  # the operator sees why it is unknown
    assert reasons["failed"] == "undeliverable"
    # cancel: the retry of a cancelled announcement is cancelled, never claimed again
    async with db() as s, s.begin():
        await s.execute(text("UPDATE announcement SET status='cancelled'"))
        await s.execute(text("UPDATE delivery SET status='cancelled' WHERE status='pending'"))
    assert await d.run_once() == 0


async def test_reaper_stale_claimer_unknown_live_untouched(db: Any, tenant: Any) -> None:
    await seed(db, tenant.employer_id, 2)
    await fanout.fan_out_due(db)
    await reaper.heartbeat(db, me="live", ttl=30)
    lease = "now() + interval '1 minute'"
    async with db() as s, s.begin():
        await s.execute(
            text(f"UPDATE delivery SET status='sending', claimed_by='live', lease_until={lease} WHERE id=1")
        )
        await s.execute(
            text(f"UPDATE delivery SET status='sending', claimed_by='dead', lease_until={lease} WHERE id=2")
        )
    assert await reaper.reap(db) == 1
    async with db() as s:
        rows = dict((await s.execute(text("SELECT id, status FROM delivery"))).all())
    assert rows == {1: "sending", 2: "unknown"}
    async with db() as s:
        reason = (await s.execute(text("SELECT error_title FROM delivery WHERE id=2"))).scalar_one()
    assert "stopped" in reason


async def test_an_expired_lease_is_reaped_although_its_worker_is_alive(db: Any, tenant: Any) -> None:
    """The worker heartbeats, but its claim outlived the lease (its outcome write was lost): `unknown`."""
    await seed(db, tenant.employer_id, 2)
    await fanout.fan_out_due(db)
    await reaper.heartbeat(db, me="live", ttl=30)
    async with db() as s, s.begin():
        for did, lease in ((1, "- interval '1 s'"), (2, "+ interval '1 min'")):
            await s.execute(
                text(f"UPDATE delivery SET status='sending', claimed_by='live', lease_until=now() {lease} WHERE id=:i"),
                {"i": did},
            )
    assert await reaper.reap(db) == 1
    async with db() as s:
        rows = dict((await s.execute(text("SELECT id, status FROM delivery"))).all())
        reason = (await s.execute(text("SELECT error_title FROM delivery WHERE id=1"))).scalar_one()
    assert rows == {1: "unknown", 2: "sending"}
    assert "lease" in reason


async def test_liveness_is_judged_by_the_expiry_the_worker_stored_not_by_the_reaper(db: Any, tenant: Any) -> None:
    """A worker that heartbeats every 0.1 s with a 0.3 s expiry looks dead 0.3 s after its last beat to every
    reaper, whatever that reaper's own configuration."""
    await seed(db, tenant.employer_id, 1)
    await fanout.fan_out_due(db)
    await reaper.heartbeat(db, me="quick", ttl=0.3)
    async with db() as s, s.begin():
        await s.execute(
            text("UPDATE delivery SET status='sending', claimed_by='quick', lease_until=now() + interval '1 min'")
        )
    assert await reaper.reap(db) == 0
    async with db() as s, s.begin():
        await s.execute(text("UPDATE worker SET expires_at = now() - interval '1 ms' WHERE id = 'quick'"))
    assert await reaper.reap(db) == 1


async def test_rate_budget_shared_by_workers_stays_within_cap(db: Any) -> None:
    rate = 200.0

    async def taker() -> int:
        got = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            got += await budget.take(db, phone_number_id="p1", want=50, rate=rate)
        return got

    start = time.monotonic()
    total = sum(await asyncio.gather(*(taker() for _ in range(4))))
    elapsed = time.monotonic() - start
    # The bucket starts empty and holds at most one second's worth: never more than rate x elapsed.
    assert total <= rate * elapsed + 1
    assert total >= rate * 0.5  # and it does hand tokens out
