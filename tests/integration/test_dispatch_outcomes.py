"""The dispatcher against real PostgreSQL and the real GraphClient over httpx.MockTransport: what each Graph
answer does to the ledger and to the shared send budget, cancellation mid-flight, and bot replies.

(tests/integration/test_dispatch.py covers fan-out races, concurrent dispatchers, the basic outcome classes and
the reaper with a duck-typed Graph; these go through Graph's real error envelopes and classification.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.dispatch.dispatcher import Dispatcher
from bot.graph.client import GraphClient, make_http_client
from bot.ledger import outcome
from bot.ledger.cancel import cancel
from bot.ledger.replies import queue_reply
from bot.settings import Settings
from tests.conftest import Tenant, tracker_for

Db = async_sessionmaker[AsyncSession]
Answer = Callable[[dict[str, Any]], Awaitable[httpx.Response]]


def phone(i: int) -> str:
    return f"+2782{i:07d}"


def accepted(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"].lstrip("+")}],
            "messages": [{"id": f"wamid.{body['biz_opaque_callback_data']}"}],
        },
    )


def graph_error(status: int, code: int, title: str = "error", headers: dict[str, str] | None = None) -> httpx.Response:
    envelope = {
        "error": {
            "message": f"(#{code}) {title}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": title},
            "fbtrace_id": "Atrace",
        }
    }
    return httpx.Response(status, json=envelope, headers=headers)


class GraphStub:
    """A Graph endpoint for httpx.MockTransport: records every request body; ``answer`` decides the response."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: Answer = self._accept

    @staticmethod
    async def _accept(body: dict[str, Any]) -> httpx.Response:
        return accepted(body)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        return await self.answer(body)

    def sends_to(self, to: str) -> int:
        return sum(1 for body in self.requests if body["to"] == to)


@pytest.fixture
async def stub() -> GraphStub:
    return GraphStub()


@pytest.fixture(autouse=True)
async def full_budget(db: Db, settings: Settings) -> None:
    """A full send bucket (one burst), so the first claim is not limited by a budget that starts empty."""
    async with db() as s, s.begin():
        await s.execute(
            text("INSERT INTO send_budget (phone_number_id, tokens, refilled_at) VALUES (:p, 1e9, clock_timestamp())"),
            {"p": settings.whatsapp_phone_number_id},
        )


@pytest.fixture
async def graph(settings: Settings, stub: GraphStub) -> AsyncIterator[GraphClient]:
    http = make_http_client(settings, transport=httpx.MockTransport(stub.handle))
    async with http:
        yield GraphClient.for_settings(http, settings)


async def seed(db: Db, employer_id: int, n: int) -> int:
    """``n`` employees and one announcement to all of them, due now; returns the announcement id."""
    async with db() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO employee (employer_id, phone, name) "
                "SELECT :e, '+2782' || lpad(g::text, 7, '0'), 'E' || g FROM generate_series(0, :n - 1) AS g"
            ),
            {"e": employer_id, "n": n},
        )
        aid = (
            await s.execute(
                text(
                    "INSERT INTO announcement (employer_id, message, send_at, audience) "
                    "VALUES (:e, 'Fire drill at 14:00', now(), CAST('{\"all\": true}' AS jsonb)) RETURNING id"
                ),
                {"e": employer_id},
            )
        ).scalar_one()
    return int(aid)


async def queue(db: Db, employer_id: int, to: str, reply_key: str, body: str) -> bool:
    async with db() as s, s.begin():
        employee_id = (await s.execute(text("SELECT id FROM employee WHERE phone = :p"), {"p": to})).scalar_one()
        return await queue_reply(s, employer_id=employer_id, employee_id=employee_id, reply_key=reply_key, body=body)


async def statuses(db: Db) -> Counter[str]:
    async with db() as s:
        return Counter(r[0] for r in (await s.execute(text("SELECT status FROM delivery"))).all())


async def row_of(db: Db, to: str) -> Any:
    async with db() as s:
        return (
            await s.execute(
                text(
                    "SELECT d.status, d.attempts, d.error_code, d.error_title, d.wamid, "
                    "extract(epoch FROM d.next_attempt_at - now())::float8 AS due_in "
                    "FROM delivery d JOIN employee e ON e.id = d.employee_id WHERE e.phone = :p"
                ),
                {"p": to},
            )
        ).one()


async def budget_row(db: Db, settings: Settings) -> Any:
    async with db() as s:
        return (
            await s.execute(
                text(
                    "SELECT extract(epoch FROM backoff_until - now())::float8 AS backoff_in, "
                    "extract(epoch FROM paused_until - now())::float8 AS paused_in, pause_reason "
                    "FROM send_budget WHERE phone_number_id = :p"
                ),
                {"p": settings.whatsapp_phone_number_id},
            )
        ).one()


async def make_due(db: Db) -> None:
    """Skip the wait of every pending retry (the tests check the delay itself before calling this)."""
    async with db() as s, s.begin():
        await s.execute(text("UPDATE delivery SET next_attempt_at = now() WHERE status = 'pending'"))


async def wait_until(check: Callable[[], bool], what: str, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


async def test_cancel_mid_flight_cancels_pending_claims_nothing_new_and_lets_in_flight_finish(
    db: Db, tenant: Tenant, settings: Settings, stub: GraphStub, graph: GraphClient
) -> None:
    aid = await seed(db, tenant.employer_id, 30)
    gate = asyncio.Event()

    async def held(body: dict[str, Any]) -> httpx.Response:
        await gate.wait()
        if body["to"] == phone(1):  # maintenance: provably not sent, would be retried
            return graph_error(400, 131057, "Business account is in maintenance mode", {"Retry-After": "1"})
        return accepted(body)

    stub.answer = held
    d = Dispatcher(settings, db, graph, worker_id="w1", concurrency=5)
    assert await d.run_once() == 5
    await wait_until(lambda: len(stub.requests) == 5, "five sends are in flight")

    async with db() as s, s.begin():
        assert await cancel(s, tenant.employer_id, aid) == 25
    assert await statuses(db) == Counter({"cancelled": 25, "sending": 5})
    assert await d.run_once() == 0  # nothing new is claimed after the cancel

    gate.set()
    await d.drain()
    # The four Meta accepted stay sent (with their wamid); the one that must be retried is cancelled instead.
    assert await statuses(db) == Counter({"cancelled": 26, "sent": 4})
    assert (await row_of(db, phone(0))).wamid is not None
    assert len(stub.requests) == 5
    await d.run_once()
    assert len(stub.requests) == 5
    async with db() as s:
        assert (await s.execute(text("SELECT status FROM announcement"))).scalar_one() == "cancelled"


async def test_pair_rate_delays_only_that_recipient(
    db: Db, tenant: Tenant, settings: Settings, stub: GraphStub, graph: GraphClient
) -> None:
    await seed(db, tenant.employer_id, 5)

    async def pair_rate_for_one(body: dict[str, Any]) -> httpx.Response:
        if body["to"] == phone(2):
            return graph_error(400, 131056, "(Business Account, Consumer Account) pair rate limit hit")
        return accepted(body)

    stub.answer = pair_rate_for_one
    d = Dispatcher(settings, db, graph, worker_id="w1")
    assert await d.run_once() == 5
    await d.drain()

    slow = await row_of(db, phone(2))
    assert slow.status == "pending"
    assert slow.attempts == 1
    assert 5.0 < slow.due_in <= 6.0  # about one message per 6 s to one person
    assert await statuses(db) == Counter({"sent": 4, "pending": 1})
    # Nobody else waits: the budget is neither backed off nor paused, and new work is claimed at once.
    b = await budget_row(db, settings)
    assert b.backoff_in is None
    assert b.paused_in is None
    await queue(db, tenant.employer_id, phone(0), "help:wamid.IN1", "Reply STOP to stop announcements.")
    assert await d.run_once() == 1  # the new reply goes; the delayed delivery is not due yet
    await d.drain()
    assert stub.sends_to(phone(2)) == 1
    assert (await row_of(db, phone(2))).status == "pending"


@pytest.mark.parametrize(
    ("http_status", "code"),
    [(401, 190), (403, 131031), (400, 133010)],
    ids=["190-token", "131031-account-locked", "133010-number-not-registered"],
)
async def test_account_errors_pause_sending_for_everyone_without_failing_anyone(
    db: Db, tenant: Tenant, settings: Settings, stub: GraphStub, graph: GraphClient, http_status: int, code: int
) -> None:
    await seed(db, tenant.employer_id, 3)

    async def refuse(body: dict[str, Any]) -> httpx.Response:
        return graph_error(http_status, code, "Our account cannot send")

    stub.answer = refuse
    d = Dispatcher(settings, db, graph, worker_id="w1")
    assert await d.run_once() == 3
    await d.drain()

    assert await statuses(db) == Counter({"pending": 3})  # the problem is ours: no recipient is failed
    b = await budget_row(db, settings)
    assert 55.0 < b.paused_in <= 60.0
    assert b.pause_reason == "Our account cannot send"
    for i in range(3):
        row = await row_of(db, phone(i))
        # The attempt is given back (a pause never uses up a recipient's attempts), and the operator sees why.
        assert (row.attempts, row.error_code, row.error_title) == (0, code, "Our account cannot send")
        # Due at once: the number's pause alone holds it back (a new token ends the pause, and it goes).
        assert row.due_in <= 0.0
    # Rows that are due (and new work) wait for the pause: nothing is claimed, nothing is sent.
    await queue(db, tenant.employer_id, phone(0), "help:wamid.IN1", "Reply STOP to stop announcements.")
    assert await d.run_once() == 0
    assert len(stub.requests) == 3


async def test_throughput_limit_backs_everyone_off(
    db: Db, tenant: Tenant, settings: Settings, stub: GraphStub, graph: GraphClient
) -> None:
    await seed(db, tenant.employer_id, 4)

    async def throttled(body: dict[str, Any]) -> httpx.Response:
        # Meta documents no Retry-After; when one is present the client honours it, which makes the wait exact.
        return graph_error(400, 130429, "Rate limit hit", {"Retry-After": "30"})

    stub.answer = throttled
    d = Dispatcher(settings, db, graph, worker_id="w1", concurrency=1)
    assert await d.run_once() == 1
    await d.drain()

    b = await budget_row(db, settings)
    assert 25.0 < b.backoff_in <= 30.0
    first = await row_of(db, phone(0))
    # Throttling is the sender's, not the recipient's: the attempt is given back, the reason kept.
    assert (first.status, first.attempts, first.error_code) == ("pending", 0, 130429)
    assert 25.0 < first.due_in <= 30.0
    # The other three were due all along, and still nobody sends until the back-off ends.
    assert await d.run_once() == 0
    assert len(stub.requests) == 1
    assert await statuses(db) == Counter({"pending": 4})


async def test_retries_that_run_out_fail_with_the_graph_error(
    db: Db, tenant: Tenant, settings: Settings, stub: GraphStub, graph: GraphClient
) -> None:
    """Only recipient-specific refusals (pair rate) spend a recipient's attempts."""
    await seed(db, tenant.employer_id, 2)

    async def pair_rate_for_one(body: dict[str, Any]) -> httpx.Response:
        if body["to"] == phone(1):
            return graph_error(400, 131056, "Too many messages to this recipient")
        return accepted(body)

    stub.answer = pair_rate_for_one
    d = Dispatcher(settings.replace(max_send_attempts=3), db, graph, worker_id="w1")
    for attempt in (1, 2):
        await d.run_once()
        await d.drain()
        row = await row_of(db, phone(1))
        assert (row.status, row.attempts) == ("pending", attempt)
        await make_due(db)
    await d.run_once()
    await d.drain()

    row = await row_of(db, phone(1))
    assert (row.status, row.attempts, row.error_code) == ("failed", 3, 131056)
    assert row.error_title == "Too many messages to this recipient"
    assert stub.sends_to(phone(1)) == 3
    assert stub.sends_to(phone(0)) == 1
    await make_due(db)
    assert await d.run_once() == 0  # a failed delivery is never claimed again


async def test_bot_replies_are_claimed_and_sent_exactly_once_as_text(
    db: Db, tenant: Tenant, template_settings: Settings, stub: GraphStub
) -> None:
    async with db() as s, s.begin():
        await s.execute(
            text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, :p, 'Thandi')"),
            {"e": tenant.employer_id, "p": phone(7)},
        )
    assert await queue(db, tenant.employer_id, phone(7), "stop:wamid.IN1", "You will not get announcements.")
    # Meta redelivered the STOP: the same reply key queues nothing.
    assert not await queue(db, tenant.employer_id, phone(7), "stop:wamid.IN1", "You will not get announcements.")
    assert await queue(db, tenant.employer_id, phone(7), "help:wamid.IN2", "Reply STOP to stop announcements.")

    http = make_http_client(template_settings, transport=httpx.MockTransport(stub.handle))
    async with http:
        # Announcements would go out as the template; replies are free-form text inside the 24 h window.
        graph = GraphClient.for_settings(http, template_settings)
        dispatchers = [Dispatcher(template_settings, db, graph, worker_id=f"w{i}") for i in range(3)]
        await asyncio.gather(*(d.run_once() for d in dispatchers))
        await asyncio.gather(*(d.drain() for d in dispatchers))
        await asyncio.gather(*(d.run_once() for d in dispatchers))

    async with db() as s:
        rows = (await s.execute(text("SELECT id, kind, status, body, wamid FROM delivery ORDER BY id"))).all()
    assert [(r.kind, r.status) for r in rows] == [("reply", "sent"), ("reply", "sent")]
    assert sorted((b["type"], b["text"]["body"], b["biz_opaque_callback_data"]) for b in stub.requests) == sorted(
        [("text", r.body, await tracker_for(db, r.id)) for r in rows]
    )
    assert all(b["to"] == phone(7) for b in stub.requests)
    assert [r.wamid for r in rows] == [f"wamid.{await tracker_for(db, r.id)}" for r in rows]


async def test_a_wamid_always_wins_whatever_happened_to_the_row_meanwhile(db: Db, tenant: Tenant) -> None:
    """A wamid is proof that Meta accepted the send: it settles our own claim, a row reaped to `unknown`, a row
    queued again or being sent again, a row skipped at its next claim, and fills in a row a status moved on."""
    aid = await seed(db, tenant.employer_id, 6)
    async with db() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO delivery (employer_id, announcement_id, employee_id, status, claimed_by, claims, "
                "attempts) SELECT :e, :a, id, CASE id % 6 WHEN 0 THEN 'sending' WHEN 1 THEN 'sending' "
                "WHEN 2 THEN 'delivered' WHEN 3 THEN 'unknown' WHEN 4 THEN 'pending' ELSE 'skipped' END, "
                "CASE id % 6 WHEN 1 THEN 'other' ELSE 'me' END, CASE id % 6 WHEN 1 THEN 2 ELSE 1 END, 1 "
                "FROM employee"
            ),
            {"e": tenant.employer_id, "a": aid},
        )
        ids = dict((await s.execute(text("SELECT employee_id % 6, id FROM delivery"))).all())

    await outcome.record_sent_many(db, sent=[(ids[k], f"wamid.{k}") for k in range(6)])

    async with db() as s:
        rows = {
            r.k: (r.status, r.wamid, r.sent)
            for r in (
                await s.execute(
                    text("SELECT employee_id % 6 AS k, status, wamid, sent_at IS NOT NULL AS sent FROM delivery")
                )
            ).all()
        }
    assert rows == {
        0: ("sent", "wamid.0", True),  # our claim, still sending: recorded
        1: ("sent", "wamid.1", True),  # a newer claim is sending it again: it already reached the employee
        2: ("delivered", "wamid.2", False),  # a status callback got there first: status kept, wamid filled in
        3: ("sent", "wamid.3", True),  # reaped after its lease: the late wamid proves it was sent
        4: ("sent", "wamid.4", True),  # queued again by resend-unknown: it is never sent twice
        5: ("sent", "wamid.5", True),  # skipped at a later claim: the employee had it before opting out
    }

    # Writing the same batch again (the first COMMIT's answer was lost) changes nothing.
    await outcome.record_sent_many(db, sent=[(ids[k], f"wamid.{k}x") for k in range(6)])
    async with db() as s:
        again = dict((await s.execute(text("SELECT employee_id % 6, wamid FROM delivery"))).all())
    assert again == {k: f"wamid.{k}" for k in range(6)}


async def heartbeats(db: Db, worker_id: str) -> int:
    async with db() as s:
        return int((await s.execute(text("SELECT count(*) FROM worker WHERE id = :w"), {"w": worker_id})).scalar_one())


class FlakySessions:
    """A sessionmaker that raises like an unreachable database while ``broken`` is set."""

    def __init__(self, sessionmaker: Db) -> None:
        self._sessionmaker = sessionmaker
        self.broken = False
        self.failures = 0

    def __call__(self) -> AsyncSession:
        if self.broken:
            self.failures += 1
            raise ConnectionRefusedError("the database is restarting")
        return self._sessionmaker()


async def test_a_database_outage_does_not_end_the_dispatch_loop(
    db: Db, tenant: Tenant, settings: Settings, stub: GraphStub, graph: GraphClient, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakySessions(db)
    d = Dispatcher(settings.replace(dispatcher_poll_interval=0.05), flaky, graph, worker_id="w1")  # type: ignore[arg-type]
    task = asyncio.create_task(d.run())
    try:
        deadline = time.monotonic() + 10
        while not await heartbeats(db, "w1"):  # the loop is past its start-up
            assert time.monotonic() < deadline
            assert not task.done()
            await asyncio.sleep(0.01)
        flaky.broken = True
        await seed(db, tenant.employer_id, 20)  # written directly: only the dispatcher's database is down
        await wait_until(lambda: flaky.failures >= 3 or task.done(), "the loop has failed a few times")
        assert not task.done()
        flaky.broken = False
        await wait_until(lambda: len(stub.requests) == 20 or task.done(), "everything is sent after the outage")
    finally:
        d.stop()
        await asyncio.wait_for(task, timeout=10)
    assert await statuses(db) == Counter({"sent": 20})
    assert "loop step failed (ConnectionRefusedError); retrying" in caplog.text
