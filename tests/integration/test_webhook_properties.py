"""Arrival order and duplicates never change the outcome: the ledger ends at the forward-only max."""

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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.ledger.statuses import StatusEvent, apply_statuses, status_key, timestamp
from bot.ledger.tracker import load_tracker
from tests.conftest import APP_SECRET, Tenant
from tests.integration.test_cli import WHATSAPP_ENV, cli_env, free_port, stop, wait_for_health
from tests.integration.test_webhook import URL, _delivery, _status, signed

STATUSES = ["sent", "delivered", "read", "failed"]
# The oracle, written independently of the ledger's delivery_rank(): where each status sits in the forward order.
FORWARD = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.lists(st.sampled_from(STATUSES), min_size=1, max_size=8))
async def test_any_order_with_duplicates_ends_at_forward_max(
    db: async_sessionmaker[AsyncSession], tenant: Tenant, seq: list[str]
) -> None:
    async with db() as s, s.begin():
        await s.execute(text("DELETE FROM delivery"))
        await s.execute(text("DELETE FROM employee"))
        await s.execute(text("DELETE FROM webhook_event"))  # each example is a new delivery, new events
    did = await _delivery(db, tenant, "unknown", None)
    tracker = await load_tracker(db)
    for i, status in enumerate(seq):
        async with db() as s, s.begin():  # one real transaction per event, as the endpoint does
            event = StatusEvent(
                status_key("wamid.P", status),
                "{}",
                "wamid.P",
                status,
                timestamp(str(1760000000 + i)),
                tracked_id=tracker.parse(tracker.make(did)),
            )
            await apply_statuses(s, [event])
    expected = max(seq, key=FORWARD.__getitem__)
    async with db() as s:
        row = (await s.execute(text("SELECT status, wamid FROM delivery WHERE id=:i"), {"i": did})).one()
    assert row[0] == expected
    assert row[1] == "wamid.P"


async def test_concurrent_identical_posts_apply_once(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    await _delivery(db, tenant, "sent", "wamid.C")
    payload = json.loads(_inbound_stop())
    body = json.dumps(payload).encode()
    results = await asyncio.gather(*(client.post(URL, content=body, headers=signed(body)) for _ in range(8)))
    # ON CONFLICT DO NOTHING makes racers wait for the winner's commit and then skip: all 200, applied once.
    assert [r.status_code for r in results] == [200] * 8
    async with db() as s:
        replies = (await s.execute(text("SELECT count(*) FROM delivery WHERE kind='reply'"))).scalar_one()
        inbound = (await s.execute(text("SELECT count(*) FROM inbound_message"))).scalar_one()
    assert (replies, inbound) == (1, 1)
    statuses = _status("wamid.C", "read", 1760000001)
    results = await asyncio.gather(*(client.post(URL, content=statuses, headers=signed(statuses)) for _ in range(8)))
    assert [r.status_code for r in results] == [200] * 8
    async with db() as s:
        assert (await s.execute(text("SELECT count(*) FROM webhook_event WHERE kind='status'"))).scalar_one() == 1


def _inbound_stop() -> bytes:
    msg = {"from": "27820000001", "id": "wamid.CSTOP", "timestamp": "1", "type": "text", "text": {"body": "STOP"}}
    return json.dumps({"entry": [{"changes": [{"field": "messages", "value": {"messages": [msg]}}]}]}).encode()


@pytest.fixture
def serve_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`jem-bot serve --no-dispatcher` in a process of its own: real concurrency, as Meta's POSTs arrive."""
    port = free_port()
    env = cli_env(database_url, tmp_path, **{**WHATSAPP_ENV, "WHATSAPP_APP_SECRET": APP_SECRET, "JEM_PORT": str(port)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--no-dispatcher"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, proc)
        yield base
    finally:
        stop(proc, signal.SIGTERM)


async def test_concurrent_bodies_with_the_same_statuses_in_opposite_order_both_answer_200(
    serve_url: str, db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    """Meta batches statuses; two bodies with the same events in opposite order, posted at once, once made one
    transaction wait for the other's dedup keys and delivery rows in the opposite order: a deadlock, answered
    500 (5 of 40 POSTs in this test on the code before the fix)."""
    async with db() as s, s.begin():
        emp = (
            await s.execute(
                text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, '+27820000009', 'B') RETURNING id"),
                {"e": tenant.employer_id},
            )
        ).scalar_one()
        await s.execute(
            text(
                "INSERT INTO delivery (employer_id, employee_id, kind, body, reply_key, status, wamid, attempts) "
                "SELECT :e, :m, 'reply', 'x', 'k' || g, 'sent', 'wamid.D' || g, 1 FROM generate_series(1, 60) g"
            ),
            {"e": tenant.employer_id, "m": emp},
        )
    codes: list[int] = []
    async with httpx.AsyncClient(base_url=serve_url, timeout=30) as http:
        for round_, status in enumerate(["delivered", "read"] * 5):
            events = [
                {"id": f"wamid.D{i}", "status": status, "timestamp": str(1760000000 + round_), "recipient_id": "1"}
                for i in range(1, 61)
            ]
            bodies = []
            for order in (events, events[::-1]):
                value = {"messaging_product": "whatsapp", "statuses": order}
                entry = {"changes": [{"field": "messages", "value": value}]}
                bodies.append(json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode())
            results = await asyncio.gather(*(http.post(URL, content=b, headers=signed(b)) for b in bodies * 2))
            codes += [r.status_code for r in results]
    assert codes == [200] * 40
    async with db() as s:
        final = (await s.execute(text("SELECT status, count(*) FROM delivery GROUP BY status"))).all()
    assert [tuple(r) for r in final] == [("read", 60)]
