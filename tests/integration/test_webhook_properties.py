"""Arrival order and duplicates never change the outcome: the ledger ends at the forward-only max."""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.ledger.statuses import StatusEvent, apply_statuses, timestamp
from bot.ledger.tracker import load_tracker
from tests.conftest import Tenant
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
    did = await _delivery(db, tenant, "unknown", None)
    tracker = await load_tracker(db)
    for i, status in enumerate(seq):
        async with db() as s, s.begin():  # one real transaction per event, as the endpoint does
            event = StatusEvent(
                "wamid.P", status, timestamp(str(1760000000 + i)), tracked_id=tracker.parse(tracker.make(did))
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
