"""The simulator's state and its phone side: status callbacks and employees' replies, signed like Meta's."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bot.simulator.stats import Stats

PHONE_NUMBER_ID = "100000000000001"
DISPLAY_NUMBER = "15550000001"
WABA_ID = "200000000000001"


@dataclass(frozen=True)
class SimulatorConfig:
    webhook: str | None = None
    app_secret: str = ""
    latency_ms: float = 0.0
    # Employees: after reading, these fractions acknowledge, reply with free text, or send STOP.
    ack_rate: float = 0.6
    reply_rate: float = 0.1
    stop_rate: float = 0.0
    duplicate_rate: float = 0.0
    shuffle: bool = False
    seed: int | None = None
    # Faults (rates 0..1).
    fault_throttle: float = 0.0
    fault_pair_rate: float = 0.0
    fault_undeliverable: float = 0.0
    fault_5xx: float = 0.0
    fault_timeout: float = 0.0
    # How long a "timeout" response is held: longer than any client's timeout.
    timeout_hold_s: float = 30.0
    # Pause between one status and the next, so a phone looks like a phone and not a burst.
    step_delay_s: float = 0.05
    callback_attempts: int = 5
    callback_backoff_s: float = 0.2
    callback_concurrency: int = 64


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _envelope(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA_ID,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
                            **value,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


def status_body(
    wamid: str, status: str, recipient: str, callback: str | None, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": recipient,
    }
    if callback is not None:
        item["biz_opaque_callback_data"] = callback
    if error is not None:
        item["errors"] = [error]
    elif status != "failed":
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility"}
    contacts = [{"profile": {"name": "Employee"}, "wa_id": recipient}]
    return _envelope({"contacts": contacts, "statuses": [item]})


def inbound_body(recipient: str, message: dict[str, Any]) -> dict[str, Any]:
    item = {"from": recipient, "id": f"wamid.IN{secrets.token_hex(16)}", "timestamp": str(int(time.time())), **message}
    return _envelope({"contacts": [{"profile": {"name": "Employee"}, "wa_id": recipient}], "messages": [item]})


@dataclass
class Simulator:
    """State kept on the app instance: counters, the random source, the callback client and running tasks."""

    config: SimulatorConfig
    stats: Stats = field(default_factory=Stats)
    rng: random.Random = field(default_factory=random.Random)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    client: httpx.AsyncClient | None = None
    semaphore: asyncio.Semaphore | None = None

    def __post_init__(self) -> None:
        self.rng.seed(self.config.seed)

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.stats = Stats()
        self.rng.seed(self.config.seed)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    async def start(self) -> None:
        self.client = httpx.AsyncClient(
            timeout=10.0, limits=httpx.Limits(max_connections=self.config.callback_concurrency)
        )
        self.semaphore = asyncio.Semaphore(self.config.callback_concurrency)

    async def stop(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()

    def play(
        self,
        wamid: str,
        recipient: str,
        callback: str | None,
        kind: str,
        undeliverable: bool,
        *,
        ack_payload: str | None = None,
    ) -> None:
        """Act as the recipient's phone for one accepted message, in the background."""
        if not self.config.webhook:
            return
        task = asyncio.get_running_loop().create_task(
            self._play(wamid, recipient, callback, kind, undeliverable, ack_payload)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _play(
        self, wamid: str, recipient: str, callback: str | None, kind: str, undeliverable: bool, ack_payload: str | None
    ) -> None:
        if undeliverable:
            # The asynchronous variant of 131026: accepted, then a `failed` status (docs/whatsapp.md#error-codes).
            error = {
                "code": 131026,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": {"details": "Message Undeliverable."},
            }
            await self._post(status_body(wamid, "failed", recipient, callback, error))
            return
        bodies = [status_body(wamid, status, recipient, callback) for status in ("sent", "delivered", "read")]
        if self.config.shuffle and self.rng.random() < 0.5:
            self.rng.shuffle(bodies)
        for body in bodies:
            await asyncio.sleep(self.config.step_delay_s)
            await self._post(body)
            if self.roll(self.config.duplicate_rate):
                await self._post(body)
        await asyncio.sleep(self.config.step_delay_s)
        await self._reply(wamid, recipient, kind, ack_payload)

    async def _reply(self, wamid: str, recipient: str, kind: str, ack_payload: str | None) -> None:
        draw = self.rng.random()
        context = {"from": DISPLAY_NUMBER, "id": wamid}
        message: dict[str, Any]
        if draw < self.config.stop_rate:
            reply, message = "stop", {"type": "text", "text": {"body": "STOP"}}
        elif draw < self.config.stop_rate + self.config.ack_rate:
            reply = "ack"
            if kind == "template":
                message = {
                    "context": context,
                    "type": "button",
                    "button": {"payload": ack_payload or "ack", "text": "Got it"},
                }
            else:
                message = {"context": context, "type": "text", "text": {"body": "Got it, thanks"}}
        elif draw < self.config.stop_rate + self.config.ack_rate + self.config.reply_rate:
            reply, message = "text", {"type": "text", "text": {"body": "Who do I ask about this?"}}
        else:
            return
        if await self._post(inbound_body(recipient, message)):
            self.stats.replies[reply] += 1

    async def _post(self, payload: dict[str, Any]) -> bool:
        """POST one signed webhook; retry non-200 answers with exponential backoff like Meta (bounded)."""
        assert self.client is not None
        assert self.semaphore is not None
        assert self.config.webhook
        # These exact bytes are signed and sent: the receiver must verify the bytes, not re-serialised JSON.
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(self.config.app_secret, body)}
        delay = self.config.callback_backoff_s
        for attempt in range(self.config.callback_attempts):
            if attempt:
                self.stats.callback_retries += 1
                await asyncio.sleep(delay)
                delay *= 2
            try:
                async with self.semaphore:
                    response = await self.client.post(self.config.webhook, content=body, headers=headers)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                self.stats.callbacks_posted += 1
                return True
        self.stats.callbacks_failed += 1
        return False
