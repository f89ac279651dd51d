"""Usernames end to end: two employees who write without their number (business-scoped user ids only).

`jem-bot serve` (with its dispatcher) sends an announcement to two employees through `jem-bot simulator`, whose
status callbacks name each recipient's business-scoped user id, as Meta's do. Then both write as WhatsApp
username users, with `from_user_id` and no `from`: one replies STOP, the other acknowledges by quoting the
announcement and then asks a question. The first is opted out and gets the confirmation (at their user id), the
second is counted as acknowledged and their question is in the inbox under their name; nobody is sent anything
twice.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import APP_SECRET, PHONE_NUMBER_ID, VERIFY_TOKEN, Tenant
from tests.integration.test_cli import free_port

pytestmark = pytest.mark.slow

T = TypeVar("T")
STOPPER, ASKER = "+27830000001", "+27830000002"


async def poll(what: str, check: Callable[[], Awaitable[T]], within: float = 30.0) -> T:
    deadline = time.monotonic() + within
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return result


def start(env: dict[str, str], logs: Path, *commands: list[str]) -> list[subprocess.Popen[bytes]]:
    with logs.open("wb") as sink:
        return [
            subprocess.Popen([sys.executable, "-m", "bot", *args], env=env, stdout=sink, stderr=subprocess.STDOUT)
            for args in commands
        ]


@pytest.fixture
async def running(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[str, str]]:
    api_port, sim_port = free_port(), free_port()
    api, sim = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "JEM_", "DATABASE_URL"))}
    env |= {
        "DATABASE_URL": database_url,
        "JEM_DATA_DIR": str(tmp_path / "jem"),
        "WHATSAPP_API_URL": f"{sim}/v23.0",
        "WHATSAPP_ACCESS_TOKEN": "usernames-token",
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
        "JEM_WORKERS": "1",
    }
    logs = tmp_path / "logs.txt"
    sim_args = ["--port", str(sim_port), "--webhook", f"{api}/webhooks/whatsapp", "--ack-rate", "0",
                "--reply-rate", "0", "--stop-rate", "0", "--username-rate", "1", "--status-delay", "0.01"]  # fmt: skip
    procs = start(env, logs, ["simulator", *sim_args], ["serve", "--port", str(api_port)])
    try:
        async with httpx.AsyncClient(timeout=5) as http:

            async def up() -> bool:
                urls = (f"{api}/health", f"{sim}/_simulator/stats")
                try:
                    codes = [(await http.get(url)).status_code for url in urls]
                except httpx.HTTPError:
                    return False
                return codes == [200, 200]

            await poll("serve and the simulator", up)
        yield api, sim
    except BaseException:
        print(logs.read_text(errors="replace")[-5000:])
        raise
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


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
            body = {"phone": phone, "text": text, "username": True, **extra}
            posted = await http.post(f"{sim}/_simulator/inbound", json=body)
            assert posted.status_code == 200, posted.text

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
