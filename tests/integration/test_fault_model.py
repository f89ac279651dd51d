"""The fault model, one fault at a time, against real PostgreSQL and the real Graph client over MockTransport.

Each test names the defect it pins down (issue 10); each failed on the code before that issue. The whole-system
versions of the same faults, with real worker processes and the simulator, are in tests/acceptance/test_chaos.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.dispatch.dispatcher import Dispatcher
from bot.graph.client import GraphClient, make_http_client
from bot.ledger import budget, claim, fanout, outcome
from bot.maintenance import WORKER_RETENTION_DAYS, purge_all
from bot.settings import Settings
from tests.conftest import Tenant
from tests.integration.test_dispatch_outcomes import (
    GraphStub,
    graph_error,
    phone,
    seed,
    statuses,
    wait_until,
)
from tests.integration.test_webhook import URL, signed

Db = async_sessionmaker[AsyncSession]

# Small but honest timings: a 0.5 s Graph deadline and 0.5 s of margin make a 1 s lease.
FAST = {
    "graph_timeout": 0.5,
    "lease_margin": 0.5,
    "dispatcher_heartbeat_interval": 0.1,
    "dispatcher_stale_after": 5.0,
    "dispatcher_poll_interval": 0.05,
    "sender_backoff_base": 0.05,
    "sender_backoff_cap": 0.2,
    "send_rate": 1000.0,
}


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.replace(**FAST)


@pytest.fixture(autouse=True)
async def full_budget(db: Db, settings: Settings) -> None:
    async with db() as s, s.begin():
        await s.execute(
            text("INSERT INTO send_budget (phone_number_id, tokens, refilled_at) VALUES (:p, 1e9, clock_timestamp())"),
            {"p": settings.whatsapp_phone_number_id},
        )


@pytest.fixture
def stub() -> GraphStub:
    return GraphStub()


@pytest.fixture
async def graph(fast: Settings, stub: GraphStub) -> AsyncIterator[GraphClient]:
    http = make_http_client(fast, transport=httpx.MockTransport(stub.handle))
    async with http:
        yield GraphClient.for_settings(http, fast)


async def rows(db: Db) -> list[Any]:
    async with db() as s:
        return list(
            (
                await s.execute(
                    text(
                        "SELECT d.id, d.status, d.attempts, d.wamid, d.skip_reason, d.error_title, e.phone "
                        "FROM delivery d JOIN employee e ON e.id = d.employee_id ORDER BY d.id"
                    )
                )
            ).all()
        )


async def poll(what: str, check: Callable[[], Awaitable[bool]], *, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.02)


async def running(d: Dispatcher) -> asyncio.Task[None]:
    return asyncio.create_task(d.run())


async def stop(d: Dispatcher, task: asyncio.Task[None]) -> None:
    d.stop()
    await asyncio.wait_for(task, timeout=15)


# --- 1. a database blip while recording outcomes -------------------------------------------------------------


async def test_outcomes_that_cannot_be_written_are_written_late_and_the_lease_still_ends_sending(
    db: Db, tenant: Tenant, fast: Settings, stub: GraphStub, graph: GraphClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Meta accepts every send, but recording the answers fails for longer than the lease (a failover). While
    the worker is alive and heartbeating, its rows still leave `sending` when the lease ends (`unknown`); when
    the database takes the writes again, the wamids it kept move every row on to `sent`, and resend-unknown
    finds nothing to resend."""
    await seed(db, tenant.employer_id, 20)
    down = asyncio.Event()
    down.set()
    real = outcome.record_sent_many

    async def failing_while_down(*args: Any, **kwargs: Any) -> None:
        if down.is_set():
            raise ConnectionResetError("the database is failing over")
        await real(*args, **kwargs)

    monkeypatch.setattr(outcome, "record_sent_many", failing_while_down)
    d = Dispatcher(fast, db, graph, worker_id="w1")
    task = await running(d)
    try:
        await wait_until(lambda: len(stub.requests) == 20, "every send reached Meta")

        async def all_unknown() -> bool:
            return await statuses(db) == Counter({"unknown": 20})

        # Lease 1 s, reaped by the worker's own heartbeat task within another 0.1 s.
        await poll("the expired leases to be reaped although the worker is alive", all_unknown, within=5)
        async with db() as s:
            alive = (await s.execute(text("SELECT expires_at > now() FROM worker WHERE id = 'w1'"))).scalar_one()
        assert alive
        down.clear()

        async def all_sent() -> bool:
            return await statuses(db) == Counter({"sent": 20})

        await poll("the late writes to settle every row", all_sent, within=10)
    finally:
        await stop(d, task)
    wamids = {r.wamid for r in await rows(db)}
    assert wamids == {f"wamid.{b['biz_opaque_callback_data']}" for b in stub.requests}
    assert len(stub.requests) == 20  # nothing was sent twice


async def test_resend_unknown_never_resends_a_row_whose_acceptance_was_proven_late(
    client: AsyncTestClient[Litestar],
    db: Db,
    tenant: Tenant,
    fast: Settings,
    stub: GraphStub,
    graph: GraphClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reaped row's 200 arrives after the lease: it is `sent`, not `unknown` with a wamid, so the operator's
    resend-unknown does not send it a second time."""
    aid = await seed(db, tenant.employer_id, 3)
    down = asyncio.Event()
    down.set()
    real = outcome.record_sent_many

    async def failing_while_down(*args: Any, **kwargs: Any) -> None:
        if down.is_set():
            raise ConnectionResetError("connection lost")
        await real(*args, **kwargs)

    monkeypatch.setattr(outcome, "record_sent_many", failing_while_down)
    d = Dispatcher(fast, db, graph, worker_id="w1")
    task = await running(d)
    try:

        async def reaped() -> bool:
            return await statuses(db) == Counter({"unknown": 3})

        await poll("the rows to be reaped", reaped, within=5)
        down.clear()

        async def settled() -> bool:
            return await statuses(db) == Counter({"sent": 3})

        await poll("the late 200s to be recorded", settled, within=10)
        resend = await client.post(f"/announcements/{aid}/resend-unknown", headers=tenant.headers)
        assert resend.status_code == 200
        assert resend.json()["resent"] == 0
    finally:
        await stop(d, task)
    assert len(stub.requests) == 3


async def test_a_claim_whose_commit_was_lost_is_given_back_not_left_sending(
    db: Db, tenant: Tenant, fast: Settings, stub: GraphStub, graph: GraphClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim committed, but the connection dropped before the worker heard so: the worker knows it never
    started those sends, so they go back to `pending` (no attempt spent) instead of becoming `unknown`."""
    await seed(db, tenant.employer_id, 5)
    real = claim.claim_within_budget
    failures = 0

    async def committed_then_lost(*args: Any, **kwargs: Any) -> claim.Batch:
        nonlocal failures
        batch = await real(*args, **kwargs)
        if batch.rows and failures == 0:
            failures += 1
            raise ConnectionResetError("connection lost during COMMIT")
        return batch

    monkeypatch.setattr(claim, "claim_within_budget", committed_then_lost)
    d = Dispatcher(fast, db, graph, worker_id="w1")
    task = await running(d)
    try:

        async def all_sent() -> bool:
            return await statuses(db) == Counter({"sent": 5})

        await poll("the given-back rows to be sent", all_sent, within=10)
    finally:
        await stop(d, task)
    assert failures == 1
    assert [r.attempts for r in await rows(db)] == [1] * 5
    assert sorted(Counter(b["to"] for b in stub.requests).values()) == [1] * 5


# --- 2. a Graph outage is the sender's, not the recipients' --------------------------------------------------


async def test_a_graph_outage_backs_the_sender_off_and_fails_nobody(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant, fast: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connection refused for longer than every recipient's attempts would last (max 2 here): nobody's attempts
    are spent, the sender is backed off (visible in GET /sender), and after the outage every recipient is sent."""
    settings = fast.replace(max_send_attempts=2)
    await seed(db, tenant.employer_id, 10)
    up = asyncio.Event()
    refused = 0
    stub = GraphStub()

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal refused
        if not up.is_set():
            refused += 1
            raise httpx.ConnectError("[Errno 111] Connection refused")
        return await stub.handle(request)

    http = make_http_client(settings, transport=httpx.MockTransport(handle))
    async with http:
        d = Dispatcher(settings, db, GraphClient.for_settings(http, settings), worker_id="w1")
        task = await running(d)
        try:
            await wait_until(lambda: refused >= 40, "the outage to outlast every recipient's attempts", 20)

            async def shown_to_the_operator() -> bool:
                # Between two waves the back-off may just have run out: look until the next one is on.
                sender = (await client.get("/sender", headers=tenant.headers)).json()
                return "Graph unreachable" in (sender["backoff_reason"] or "")

            await poll("GET /sender to show the sender backed off because Graph is unreachable", shown_to_the_operator)
            assert await statuses(db) <= Counter({"pending": 10, "sending": 10})
            up.set()

            async def all_sent() -> bool:
                return await statuses(db) == Counter({"sent": 10})

            await poll("every recipient to be sent after the outage", all_sent)
        finally:
            await stop(d, task)
    assert [r.attempts for r in await rows(db)] == [1] * 10
    assert len(stub.requests) == 10
    sender = (await client.get("/sender", headers=tenant.headers)).json()
    assert sender["backoff_until"] is None  # recovered: nothing in the way any more


async def test_back_off_escalates_over_failed_waves_and_starts_small_once_a_send_went_through(db: Db) -> None:
    """Each wave that fails right after the last back-off ended waits twice as long, up to the cap. But a send seen
    going through after that end proves the number works: the next wave waits the base again. Without it, a rare
    130429 raced the batched write of the successes and a run with 1.5 % throttling stalled for 15 s and more."""
    number, base, cap = "100000000000001", 1.0, 60.0

    async def wave(ok_at: datetime | None = None) -> float:
        waits = await budget.back_off(
            db, phone_number_id=number, reason="throttled", retry_after=None, base=base, cap=cap, ok_at=ok_at
        )
        async with db() as s, s.begin():  # the back-off has run out (rather than sleeping through it)
            await s.execute(text("UPDATE send_budget SET backoff_until = now() - interval '10 ms'"))
        return waits

    escalating = [round(await wave()) for _ in range(4)]
    assert escalating == [1, 2, 4, 8]
    assert round(await wave(ok_at=datetime.now(UTC))) == 1  # a send went through after the last back-off
    assert round(await wave()) == 2  # and the escalation starts over from there
    stale = datetime.now(UTC) - timedelta(minutes=1)  # a success from before the last back-off proves nothing
    assert round(await wave(ok_at=stale)) == 4


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(429, text="Too Many Requests"), "429"),
        (graph_error(400, 130429, "Rate limit hit"), "130429"),
        (graph_error(401, 190, "Error validating access token"), "190"),
    ],
)
async def test_throttling_and_pauses_spend_no_recipient_attempts(
    db: Db, tenant: Tenant, fast: Settings, response: httpx.Response, reason: str
) -> None:
    settings = fast.replace(max_send_attempts=1)
    await seed(db, tenant.employer_id, 2)
    stub = GraphStub()

    async def refuse(body: dict[str, Any]) -> httpx.Response:
        return response

    stub.answer = refuse
    http = make_http_client(settings, transport=httpx.MockTransport(stub.handle))
    async with http:
        d = Dispatcher(settings, db, GraphClient.for_settings(http, settings), worker_id="w1")
        await d.run_once()
        await d.drain()
    got = await rows(db)
    assert [(r.status, r.attempts) for r in got] == [("pending", 0)] * 2, reason
    assert all(r.error_title for r in got)  # the operator sees why they wait


# --- 3. STOP or deactivation after fan-out -------------------------------------------------------------------


async def test_an_employee_who_opts_out_or_is_deactivated_after_fan_out_is_skipped_at_send_time(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant, fast: Settings, stub: GraphStub, graph: GraphClient
) -> None:
    await seed(db, tenant.employer_id, 4)
    assert await fanout.fan_out_due(db) == 1
    # While the announcement drains, one employee replies STOP and an operator deactivates another.
    message = {"from": phone(1)[1:], "id": "wamid.STOP1", "timestamp": "1", "type": "text", "text": {"body": "STOP"}}
    change = {"field": "messages", "value": {"messages": [message]}}
    stop_body = json.dumps({"object": "whatsapp_business_account", "entry": [{"changes": [change]}]}).encode()
    assert (await client.post(URL, content=stop_body, headers=signed(stop_body))).status_code == 200
    async with db() as s:
        employee_2 = (await s.execute(text("SELECT id FROM employee WHERE phone = :p"), {"p": phone(2)})).scalar_one()
    assert (await client.delete(f"/employees/{employee_2}", headers=tenant.headers)).status_code in (200, 204)

    d = Dispatcher(fast, db, graph, worker_id="w1")
    for _ in range(3):
        await d.run_once()
        await d.drain()
    by_phone = {(r.phone, r.status, r.skip_reason) for r in await rows(db)}
    assert by_phone == {
        (phone(0), "sent", None),
        (phone(1), "skipped", "opted_out"),
        (phone(2), "skipped", "inactive"),
        (phone(3), "sent", None),
        (phone(1), "sent", None),  # the STOP confirmation still goes to the employee who asked
    }
    sent_to = Counter(b["to"] for b in stub.requests)
    assert sent_to == Counter({phone(0): 1, phone(3): 1, phone(1): 1})
    assert [b["type"] for b in stub.requests if b["to"] == phone(1)] == ["text"]


# --- 9. a reschedule racing the fan-out ----------------------------------------------------------------------


class _PatchBetween:
    """A sessionmaker that runs ``hook`` (once) when fan-out opens its second session: after it has read which
    announcements are due, before it locks one."""

    def __init__(self, sessionmaker: Db, hook: Callable[[], Awaitable[None]]) -> None:
        self._sm = sessionmaker
        self._hook = hook
        self._opened = 0

    def __call__(self) -> Any:
        self._opened += 1
        if self._opened == 2:
            return _HookedSession(self._sm, self._hook)
        return self._sm()


class _HookedSession:
    def __init__(self, sm: Db, hook: Callable[[], Awaitable[None]]) -> None:
        self._sm = sm
        self._hook = hook
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> AsyncSession:
        await self._hook()
        self._session = self._sm()
        return await self._session.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.__aexit__(*exc)


async def test_a_reschedule_into_the_future_wins_against_a_fan_out_already_under_way(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant
) -> None:
    created = await client.post("/announcements", json={"message": "Fire drill"}, headers=tenant.headers)
    aid = created.json()["id"]
    moved: list[int] = []

    async def reschedule() -> None:
        r = await client.patch(
            f"/announcements/{aid}", json={"send_time": "2030-01-10T08:00:00+02:00"}, headers=tenant.headers
        )
        moved.append(r.status_code)

    assert await fanout.fan_out_due(_PatchBetween(db, reschedule)) == 0  # type: ignore[arg-type]
    assert moved == [200]
    got = (await client.get(f"/announcements/{aid}", headers=tenant.headers)).json()
    assert (got["status"], got["send_time"], got["counts"]["total"]) == ("scheduled", "2030-01-10T06:00:00Z", 0)


# --- 10. liveness does not depend on the loop ----------------------------------------------------------------


async def test_heartbeats_go_on_while_the_loop_backs_off_after_errors(
    db: Db, tenant: Tenant, fast: Settings, graph: GraphClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> claim.Batch:
        raise ConnectionResetError("claims keep failing")

    monkeypatch.setattr(claim, "claim_within_budget", broken)
    d = Dispatcher(fast.replace(dispatcher_poll_interval=0.5), db, graph, worker_id="w1")
    task = await running(d)
    ages: list[float] = []
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            async with db() as s:
                age = (
                    await s.execute(text("SELECT extract(epoch FROM now() - heartbeat_at) FROM worker WHERE id='w1'"))
                ).scalar()
            if age is not None:
                ages.append(float(age))
            await asyncio.sleep(0.05)
    finally:
        await stop(d, task)
    # The loop retried after 0.5, 1, 2 s; the heartbeat never waited for it.
    assert ages
    assert max(ages) < 3 * fast.dispatcher_heartbeat_interval + 0.2, max(ages)


# --- 12. retention -------------------------------------------------------------------------------------------


async def test_old_inbound_messages_and_long_dead_workers_are_purged(db: Db, tenant: Tenant) -> None:
    async with db() as s, s.begin():
        for wamid, age_days in (("wamid.OLD", 40), ("wamid.NEW", 10)):
            await s.execute(
                text(
                    "INSERT INTO inbound_message (wamid, employer_id, from_phone, type, text, payload, received_at) "
                    "VALUES (:w, :e, '+27820000001', 'text', 'hi', '{}', now() - make_interval(days => :d))"
                ),
                {"w": wamid, "e": tenant.employer_id, "d": age_days},
            )
        for worker, age_days, stopped in (("gone", WORKER_RETENTION_DAYS + 1, True), ("recent", 1, True),
                                          ("silent", WORKER_RETENTION_DAYS + 1, False)):  # fmt: skip
            await s.execute(
                text(
                    "INSERT INTO worker (id, hostname, pid, heartbeat_at, expires_at, stopped_at) VALUES "
                    "(:w, 'h', 1, now() - make_interval(days => :d), now() - make_interval(days => :d), "
                    "CASE WHEN :stopped THEN now() - make_interval(days => :d) END)"
                ),
                {"w": worker, "d": age_days, "stopped": stopped},
            )
    purged = await purge_all(db, retention_days=30)
    assert (purged.inbound_messages, purged.workers) == (1, 2)
    async with db() as s:
        assert (await s.execute(text("SELECT wamid FROM inbound_message"))).scalars().all() == ["wamid.NEW"]
        assert (await s.execute(text("SELECT id FROM worker"))).scalars().all() == ["recent"]


# --- 13. what the operator sees ------------------------------------------------------------------------------


async def test_health_and_sender_show_a_paused_number_and_why(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant, settings: Settings
) -> None:
    healthy = (await client.get("/health")).json()
    assert healthy["sender"] == {
        "phone_number_id": settings.whatsapp_phone_number_id,
        "paused_until": None,
        "pause_reason": None,
        "backoff_until": None,
        "backoff_reason": None,
    }
    async with db() as s, s.begin():
        await s.execute(
            text(
                "UPDATE send_budget SET paused_until = now() + interval '1 minute', "
                "pause_reason = 'Error validating access token' WHERE phone_number_id = :p"
            ),
            {"p": settings.whatsapp_phone_number_id},
        )
    health = await client.get("/health")
    assert health.status_code == 200  # the software is fine; the number cannot send
    assert health.json()["sender"]["pause_reason"] == "Error validating access token"
    sender = await client.get("/sender", headers=tenant.headers)
    assert sender.status_code == 200
    body = sender.json()
    assert body["own"] is False
    assert body["phone_number_id"] == settings.whatsapp_phone_number_id
    assert body["pause_reason"] == "Error validating access token"
    assert body["paused_until"] is not None
    assert body["access_token_hint"] == "…" + settings.whatsapp_access_token[-4:]
    assert settings.whatsapp_access_token not in sender.text
    assert (await client.get("/sender")).status_code == 401


# --- wake-ups (issue 13): work due now does not wait for a poll ------------------------------------------------


async def test_an_announcement_due_now_wakes_a_listening_dispatcher_at_once(
    client: AsyncTestClient[Litestar],
    db: Db,
    tenant: Tenant,
    fast: Settings,
    stub: GraphStub,
    graph: GraphClient,
    database_url: str,
) -> None:
    """With a 5 s poll, the first send comes well within 2 s of the POST only if NOTIFY woke the dispatcher."""
    async with db() as s, s.begin():
        await s.execute(
            text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, '+27820000001', 'A')"),
            {"e": tenant.employer_id},
        )
    d = Dispatcher(fast.replace(dispatcher_poll_interval=5.0), db, graph, worker_id="w1", listen_url=database_url)
    task = await running(d)
    try:
        await wait_until(lambda: d.wakeups >= 1, "the dispatcher to listen")  # its own wake-up on listening
        woken = d.wakeups
        created = await client.post("/announcements", json={"message": "Fire drill"}, headers=tenant.headers)
        assert created.status_code == 201
        started = time.monotonic()
        await wait_until(lambda: len(stub.requests) == 1, "the first send", 2.0)
        took = time.monotonic() - started
    finally:
        await stop(d, task)
    assert d.wakeups > woken
    assert took < 2.0
