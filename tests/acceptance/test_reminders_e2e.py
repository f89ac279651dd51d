"""Reminders end to end: `jem-bot serve` (with its worker) and `jem-bot simulator`, whose employees acknowledge
about half of what they read and fail to receive some.

- An announcement with `remind_after` completes; its reminder is scheduled once, an hour after completion (the
  test brings that time to now in the database rather than waiting the hour).
- The reminder reaches exactly the employees the original reached who had not acknowledged when it fanned out.
- After it, the reminder audience preview and an operator's reminder agree, and nobody got anything twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.acceptance.stack import poll, serve_and_simulator
from tests.conftest import MakeTenant

pytestmark = pytest.mark.slow

PEOPLE = 60


@pytest.fixture
async def running(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[str, str]]:
    flags = ["--ack-rate", "0.5", "--reply-rate", "0", "--stop-rate", "0", "--fault-undeliverable", "0.15",
             "--seed", "17", "--status-delay", "0.01"]  # fmt: skip
    async with serve_and_simulator(
        tmp_path, database_url, access_token="reminders-token", simulator_flags=flags, env={"JEM_SEND_RATE": "400"}
    ) as urls:
        yield urls


async def test_remind_after_reaches_exactly_the_reached_who_had_not_acknowledged(
    running: tuple[str, str], make_tenant: MakeTenant, db: Any
) -> None:
    api, sim = running
    tenant = await make_tenant("acme", "Acme Ltd")
    async with httpx.AsyncClient(timeout=10, base_url=api, headers=tenant.headers) as http:

        async def call(method: str, path: str, **kw: Any) -> Any:
            answer = await http.request(method, path, **kw)
            assert answer.status_code < 300, answer.text
            return answer.json()

        sent_so_far: list[int] = []

        async def settled(aid: int) -> bool:
            """Completed, every delivery read or failed, and every acknowledgement the simulator made (to this or an
            earlier announcement) recorded: nothing is left in flight."""
            shown = await call("GET", f"/announcements/{aid}")
            counts = shown["counts"]
            acks = (await http.get(f"{sim}/_simulator/stats")).json()["replies"].get("ack", 0)
            recorded = 0
            for other in {*sent_so_far, aid}:
                recorded += (await call("GET", f"/announcements/{other}"))["counts"]["acknowledged"]
            done = shown["status"] == "completed" and counts["read"] + counts["failed"] == counts["total"]
            quiet = bool(done and recorded == acks)
            if quiet and aid not in sent_so_far:
                sent_so_far.append(aid)
            return quiet

        async def sends_per_recipient() -> Counter[str]:
            recipients = (await http.get(f"{sim}/_simulator/sends")).json()["recipients"]
            return Counter({r["recipient"]: r["accepted"] for r in recipients})

        people = [{"phone": f"+2784000{i:04d}", "name": f"Employee {i}"} for i in range(PEOPLE)]
        await call("POST", "/employees/import", json={"employees": people})
        created = await call("POST", "/announcements", json={"message": "Fire drill at 14:00", "remind_after": "PT1H"})
        aid = created["id"]
        assert created["remind_after"] == "PT1H"
        await poll("the announcement to complete and its employees to answer", lambda: settled(aid), 60)

        async with db() as s:
            auto = (
                await s.execute(
                    text(
                        "SELECT r.id, r.send_at - o.completed_at AS due_after FROM announcement r "
                        "JOIN announcement o ON o.id = r.reminder_of WHERE r.reminder_of = :a AND r.auto_reminder"
                    ),
                    {"a": aid},
                )
            ).one()
        rid = auto.id
        assert auto.due_after == timedelta(hours=1)
        reminder = await call("GET", f"/announcements/{rid}")
        assert (reminder["status"], reminder["reminder_of"], reminder["message"]) == (
            "scheduled",
            aid,
            "Reminder: Fire drill at 14:00",
        )
        silent = (await call("GET", f"/announcements/{aid}/reminder-audience"))["count"]
        assert 0 < silent < PEOPLE

        # The hour is up: bring the due time to now and wake the worker.
        async with db() as s, s.begin():
            await s.execute(text("UPDATE announcement SET send_at = now() WHERE id = :r"), {"r": rid})
            await s.execute(text("SELECT pg_notify('jem_dispatch', '')"))

        async def reminder_done() -> bool:
            return bool((await call("GET", f"/announcements/{rid}"))["status"] == "completed")

        await poll("the reminder to be sent", reminder_done, 60)
        async with db() as s:
            expected = {
                r[0]
                for r in await s.execute(
                    text(
                        "SELECT d.employee_id FROM delivery d WHERE d.announcement_id = :a "
                        "AND d.status IN ('sent', 'delivered', 'read') AND NOT EXISTS (SELECT 1 FROM delivery k "
                        "WHERE k.employee_id = d.employee_id AND k.announcement_id = :a "
                        "AND k.acknowledged_at < (SELECT dispatched_at FROM announcement WHERE id = :r))"
                    ),
                    {"a": aid, "r": rid},
                )
            }
            rows = await s.execute(text("SELECT employee_id FROM delivery WHERE announcement_id = :r"), {"r": rid})
            got = {r[0] for r in rows}
        assert got == expected
        assert len(got) == silent  # the preview said as much before the reminder went out
        await poll("the reminder's employees to answer", lambda: settled(rid), 60)

        # Each reminded employee got two messages (the announcement and the reminder), everyone else one.
        async with db() as s:
            phones = dict((await s.execute(text("SELECT id, phone FROM employee"))).all())
        per_recipient = await sends_per_recipient()
        assert per_recipient == Counter({phones[e].lstrip("+"): 2 if e in got else 1 for e in phones})

        # `remind_after` fired once; the preview and an operator's reminder agree on who is still silent.
        detail = await call("GET", f"/announcements/{aid}")
        assert [r["id"] for r in detail["reminders"]] == [rid]
        assert detail["reminders"][0]["recipients"] == len(got)
        reached = detail["counts"]["sent"] + detail["counts"]["delivered"] + detail["counts"]["read"]
        still = (await call("GET", f"/announcements/{aid}/reminder-audience"))["count"]
        assert detail["reminders"][0]["acknowledgement_rate"] == pytest.approx((reached - still) / reached)
        again = await call("POST", f"/announcements/{aid}/remind", json={})
        await poll("the operator's reminder to be sent", lambda: settled(again["id"]), 60)
        assert (await call("GET", f"/announcements/{again['id']}"))["counts"]["total"] == still
        async with db() as s:
            autos = await s.scalar(
                text("SELECT count(*) FROM announcement WHERE auto_reminder AND reminder_of = :a"), {"a": aid}
            )
        assert autos == 1
