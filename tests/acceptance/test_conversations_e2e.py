"""Conversations end to end: `jem-bot serve` (its dispatcher) and `jem-bot simulator --enforce-window`.

- A simulated employee writes; the operator sees it in the conversation and replies through the API, twice with the
  same Idempotency-Key; the simulator receives exactly one text message, to that phone, from the shared number.
- Once their last message is 25 hours old (moved back in the database: no waiting a day), the API refuses a reply
  with 409 and queues nothing; so it does for an employee who never wrote. The simulator, which enforces the
  window as Meta does, is never asked to send outside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.acceptance.stack import poll, serve_and_simulator, write_inbound
from tests.conftest import PHONE_NUMBER_ID, MakeTenant

pytestmark = pytest.mark.slow

PHONE = "+27871000001"
SILENT = "+27871000002"
REPLY = "Yes, you may leave at 15:00."


@pytest.fixture
async def running(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[str, str]]:
    flags = ["--ack-rate", "0", "--reply-rate", "0", "--stop-rate", "0", "--username-rate", "0",
             "--status-delay", "0.01", "--enforce-window"]  # fmt: skip
    async with serve_and_simulator(
        tmp_path, database_url, access_token="conversations-token", simulator_flags=flags
    ) as urls:
        yield urls


async def test_an_employee_writes_the_operator_replies_once_and_not_outside_the_window(
    running: tuple[str, str], make_tenant: MakeTenant, db: Any
) -> None:
    api, sim = running
    tenant = await make_tenant("acme", "Acme Ltd")
    async with httpx.AsyncClient(timeout=10, headers=tenant.headers) as http:

        async def texts_to(phone: str) -> list[dict[str, Any]]:
            recipients = (await http.get(f"{sim}/_simulator/sends")).json()["recipients"]
            return [m for r in recipients if r["recipient"] == phone.lstrip("+") for m in r["messages"]]

        async def conversation(employee_id: int) -> dict[str, Any]:
            answer = await http.get(f"{api}/employees/{employee_id}/messages")
            assert answer.status_code == 200, answer.text
            shown: dict[str, Any] = answer.json()
            return shown

        people = {"employees": [{"phone": PHONE, "name": "Thandi"}, {"phone": SILENT, "name": "Sipho"}]}
        assert (await http.post(f"{api}/employees/import", json=people)).status_code == 200
        listed = (await http.get(f"{api}/employees")).json()["items"]
        ids = {e["phone"]: e["id"] for e in listed}
        thandi, sipho = ids[PHONE], ids[SILENT]

        # --- the employee writes; the operator sees it ----------------------------------------------------------
        await write_inbound(http, sim, PHONE, "Can I leave early?")
        shown = await conversation(thandi)
        assert [(i["direction"], i["text"]) for i in shown["items"]] == [("in", "Can I leave early?")]
        assert shown["window_open"] is True
        inbox = (await http.get(f"{api}/messages", params={"employee_id": thandi})).json()["items"]
        assert [(m["text"], m["answered"]) for m in inbox] == [("Can I leave early?", False)]

        # --- the operator replies, twice with one key: one message reaches the phone ---------------------------
        key = {"Idempotency-Key": "e2e-reply-1"}
        first = await http.post(f"{api}/employees/{thandi}/messages", json={"text": REPLY}, headers=key)
        again = await http.post(f"{api}/employees/{thandi}/messages", json={"text": REPLY}, headers=key)
        assert (first.status_code, again.status_code) == (202, 202), (first.text, again.text)
        assert again.json() == first.json()

        async def reply_sent() -> bool:
            items = (await conversation(thandi))["items"]
            return items[-1]["status"] in ("sent", "delivered", "read")

        await poll("the reply to be sent", reply_sent)
        received = await texts_to(PHONE)
        assert [(m["type"], m["text"], m["phone_number_id"], m["via"]) for m in received] == [
            ("text", REPLY, PHONE_NUMBER_ID, "phone")
        ]
        inbox = (await http.get(f"{api}/messages", params={"employee_id": thandi})).json()["items"]
        assert [m["answered"] for m in inbox] == [True]

        # --- outside the window: refused, nothing queued ----------------------------------------------------------
        async with db() as s, s.begin():
            await s.execute(
                text("UPDATE inbound_message SET received_at = now() - interval '25 hours' WHERE employee_id = :e"),
                {"e": thandi},
            )
        late = await http.post(f"{api}/employees/{thandi}/messages", json={"text": "One more thing"})
        assert late.status_code == 409, late.text
        assert "last wrote 25 hours ago" in late.json()["detail"]
        assert "template" in late.json()["detail"]
        assert (await conversation(thandi))["window_open"] is False
        never = await http.post(f"{api}/employees/{sipho}/messages", json={"text": "Hello Sipho"})
        assert never.status_code == 409, never.text
        assert "never written" in never.json()["detail"]

        async with db() as s:
            replies = (await s.execute(text("SELECT count(*) FROM delivery WHERE reply_key LIKE 'op:%'"))).scalar()
        assert replies == 1
        stats = (await http.get(f"{sim}/_simulator/stats")).json()
        assert stats["duplicates"] == 0
        assert stats["rejections"] == {}  # the simulator never had to refuse a text outside the window
        assert await texts_to(SILENT) == []
        assert len(await texts_to(PHONE)) == 1
