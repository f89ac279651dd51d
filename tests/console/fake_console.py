"""Run the console against the in-memory FakeApi, for looking at the screens without a server.

uv run python -m tests.console.fake_console
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec

from bot import contracts
from console.app import make_console
from tests.console.fake_api import NOW, FakeApi


async def populate(api: FakeApi) -> None:
    names = ["Thandi Mokoena", "Pieter van Wyk", "Aisha Patel", "Sipho Dlamini", "Lerato Nkosi", "Johan Botha"]
    for i, name in enumerate(names):
        api.add_employee(name, ["warehouse" if i % 2 else "drivers"], opted_out=name == "Sipho Dlamini")
    messages = [
        "Reminder: the canteen is closed on Friday for maintenance.",
        "Stocktake on Saturday at 08:00. Please reply OK to confirm.",
        "Payslips for November are available in the HR portal.",
    ]
    for i, text in enumerate(messages):
        await api.create_announcement(text, send_time=None, audience=None, idempotency_key=f"demo-{i}")
    api.set_delivery_statuses(1, ["read", "read", "delivered", "failed", "unknown"])
    rows = api.deliveries[1]
    rows[0] = msgspec.structs.replace(rows[0], acknowledged_at=NOW + timedelta(minutes=3))
    api.set_delivery_statuses(2, ["sent", "sending"])
    api.messages.append(
        contracts.InboundMessage(
            id=1, employee_id=1, employee_name="Thandi Mokoena", type="button", text="OK",
            announcement_id=1, received_at=NOW + timedelta(minutes=3),
        )
    )  # fmt: skip


def main() -> None:
    api = FakeApi()
    asyncio.run(populate(api))
    make_console(api).run()


if __name__ == "__main__":
    main()
