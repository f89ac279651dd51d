"""What the dispatcher needs from a Graph sender: the seam tests and benchmarks plug their own senders into."""

from __future__ import annotations

from typing import Any, Protocol

from bot.graph.client import SendResult


class GraphSender(Protocol):
    async def send_announcement(
        self, *, to: str, text: str, callback_data: str, ack_payload: str | None = None
    ) -> SendResult: ...

    async def send_text(
        self, *, to: str, text: str, callback_data: str, recipient_user_id: str | None = None
    ) -> SendResult: ...

    async def send_interactive(
        self, *, to: str, interactive: dict[str, Any], callback_data: str, recipient_user_id: str | None = None
    ) -> SendResult: ...

    async def send_template(
        self, *, to: str, name: str, language: str, components: list[dict[str, Any]], callback_data: str
    ) -> SendResult: ...
