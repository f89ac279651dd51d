"""Usernames end to end: two employees who write without their number (business-scoped user ids only).

`jem-bot serve` (with its dispatcher) sends an announcement to two employees through `jem-bot simulator`, whose
status callbacks name each recipient's business-scoped user id, as Meta's do. Then both write as WhatsApp
username users, with `from_user_id` and no `from`: one replies STOP, the other acknowledges by quoting the
announcement and then asks a question. The first is opted out and gets the confirmation (at their user id), the
second is counted as acknowledged and their question is in the inbox under their name; nobody is sent anything
twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.stack import poll, serve_and_simulator, write_inbound
from tests.conftest import Tenant

pytestmark = pytest.mark.slow

STOPPER, ASKER = "+27830000001", "+27830000002"


@pytest.fixture
async def running(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[str, str]]:
    flags = ["--ack-rate", "0", "--reply-rate", "0", "--stop-rate", "0", "--username-rate", "1",
             "--status-delay", "0.01"]  # fmt: skip
    async with serve_and_simulator(
        tmp_path, database_url, access_token="usernames-token", simulator_flags=flags
    ) as urls:
        yield urls


async def test_employees_known_only_by_user_id_stop_acknowledge_and_ask(
    running: tuple[str, str], tenant: Tenant
) -> None:
    api, sim = running
    async with httpx.AsyncClient(timeout=10, headers=tenant.headers) as http:
        people = [{"phone": STOPPER, "name": "Sipho Stop"}, {"phone": ASKER, "name": "Thandi Ask"}]
        assert (await http.post(f"{api}/employees/import", json={"employees": people})).status_code == 200
        created = await http.post(f"{api}/announcements", json={"message": "Fire drill at 14:00"})
        aid = created.json()["id"]

        async def everyone_read() -> bool:
            counts = (await http.get(f"{api}/announcements/{aid}")).json()["counts"]
            return bool(counts["read"] == 2)

        await poll("both employees to have read the announcement", everyone_read)
        employees = {e["phone"]: e for e in (await http.get(f"{api}/employees")).json()["items"]}
        # The statuses of our own sends named their user ids: that is how they will be recognised.
        assert [employees[p]["bsuid_known"] for p in (STOPPER, ASKER)] == [True, True]

        sends = {r["recipient"]: r for r in (await http.get(f"{sim}/_simulator/sends")).json()["recipients"]}
        announcement_wamid = sends[ASKER[1:]]["messages"][0]["wamid"]

        async def as_username(phone: str, text: str, **extra: Any) -> None:
            await write_inbound(http, sim, phone, text, username=True, **extra)

        await as_username(STOPPER, "STOP")
        await as_username(ASKER, "Got it, thanks", context_wamid=announcement_wamid)
        await as_username(ASKER, "Where is the assembly point?")

        async def confirmation_sent() -> bool:
            recipients = (await http.get(f"{sim}/_simulator/sends")).json()["recipients"]
            stopper = next(r for r in recipients if r["recipient"] == STOPPER[1:])
            return len(stopper["messages"]) == 2

        await poll("the STOP confirmation to reach the simulator", confirmation_sent)
        sends = {r["recipient"]: r for r in (await http.get(f"{sim}/_simulator/sends")).json()["recipients"]}
        confirmation = sends[STOPPER[1:]]["messages"][1]
        # Answered the way they wrote: at their user id, not at their number.
        assert confirmation["via"] == "bsuid"
        assert "no longer receive" in confirmation["text"]

        employees = {e["phone"]: e for e in (await http.get(f"{api}/employees")).json()["items"]}
        assert employees[STOPPER]["opted_out"] is True
        assert employees[ASKER]["opted_out"] is False
        shown = (await http.get(f"{api}/announcements/{aid}")).json()
        assert shown["counts"]["acknowledged"] == 1
        acked = (await http.get(f"{api}/announcements/{aid}/deliveries", params={"acknowledged": "true"})).json()
        assert [d["employee_name"] for d in acked["items"]] == ["Thandi Ask"]
        inbox = (await http.get(f"{api}/messages")).json()["items"]
        assert ("Where is the assembly point?", "Thandi Ask") in [(m["text"], m["employee_name"]) for m in inbox]
        assert ("STOP", "Sipho Stop") in [(m["text"], m["employee_name"]) for m in inbox]
        stats = (await http.get(f"{sim}/_simulator/stats")).json()
        assert stats["duplicates"] == 0
        # Three messages in all: the announcement twice, the STOP confirmation once.
        assert stats["messages_accepted"] == 3
