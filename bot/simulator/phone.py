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

from bot.simulator.catalogue import Catalogue, CatalogueTemplate, default_catalogue
from bot.simulator.media import MediaStore
from bot.simulator.numbers import (
    DEFAULT_DISPLAY_NUMBER,
    DEFAULT_PHONE_NUMBER_ID,
    Numbers,
    SimulatedNumber,
    display_number_for,
)
from bot.simulator.schema import SendSchema
from bot.simulator.stats import Stats

# The default number: the one every send may use with any token, and where inbound messages arrive by default.
PHONE_NUMBER_ID = DEFAULT_PHONE_NUMBER_ID
DISPLAY_NUMBER = DEFAULT_DISPLAY_NUMBER
WABA_ID = "200000000000001"
# Meta's customer-service window: free-form messages only within this long of the user's last message.
WINDOW_SECONDS = 24 * 3600.0


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
    # Share of recipients played as "username employees" (phone number withheld): decided per recipient by
    # `plays_username` (seed and phone), so the same person is one in every callback and reply.
    username_rate: float = 0.0
    # How long a "timeout" response is held: longer than any client's timeout.
    timeout_hold_s: float = 30.0
    # Pause between one status and the next, so a phone looks like a phone and not a burst.
    step_delay_s: float = 0.05
    callback_attempts: int = 5
    callback_backoff_s: float = 0.2
    callback_concurrency: int = 64
    # The business numbers it plays (`--number ID:TOKEN[:RATE]`), each with its own token and throughput. Empty:
    # any phone_number_id with any token. Either way the default number PHONE_NUMBER_ID takes any token.
    numbers: tuple[SimulatedNumber, ...] = ()
    # The message templates of every business account (`--templates FILE`); None: the demo catalogue,
    # bot/simulator/templates.json.
    templates: tuple[CatalogueTemplate, ...] | None = None
    # `--enforce-window`: refuse (131047) a non-template send to someone who has not written to that number
    # within `window_s`, as Meta does. Off by default: the demo and most tests send text announcements.
    enforce_window: bool = False
    window_s: float = WINDOW_SECONDS


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _envelope(value: dict[str, Any], number: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    """One webhook body about business number `number` (its phone_number_id): `metadata` names it."""
    metadata = {"display_phone_number": display_number_for(number), "phone_number_id": number}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA_ID,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": metadata,
                            **value,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


# Every BSUID starts with the ISO 3166 country code of the number: ZA for South African (+27) numbers, which
# are all jem-bot's employees have; US for any other (the simulator does not map the rest of the world).
BSUID_DIGITS = 16


def bsuid_for(phone_digits: str) -> str:
    """The business-scoped user id the simulator gives the user of this phone number (digits, `+` allowed).

    `ZA.` (for +27 numbers, else `US.`) and 16 decimal digits: the first 8 bytes of SHA-256 over the digits,
    modulo 10**16, zero-padded. Deterministic and process-independent, so a test can compute it too.
    """
    digits = phone_digits.strip().removeprefix("+")
    country = "ZA" if digits.startswith("27") else "US"
    number = int.from_bytes(hashlib.sha256(digits.encode()).digest()[:8], "big") % 10**BSUID_DIGITS
    return f"{country}.{number:0{BSUID_DIGITS}d}"


def username_for(phone_digits: str) -> str:
    """The WhatsApp username of a simulated username employee: `emp_` and the number's last four digits."""
    return "emp_" + phone_digits.strip().removeprefix("+")[-4:]


def plays_username(phone_digits: str, rate: float, seed: int | None) -> bool:
    """Whether the recipient is a username employee (number withheld) under `--username-rate rate`.

    A fixed draw per (seed, phone): SHA-256 of `"<seed>:<digits>"`, its first 8 bytes as a fraction of 2**64,
    below `rate`. It takes nothing from the simulator's random source, so other seeded choices are unchanged.
    """
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    digits = phone_digits.strip().removeprefix("+")
    draw = int.from_bytes(hashlib.sha256(f"{seed}:{digits}".encode()).digest()[:8], "big") / 2**64
    return draw < rate


def contact(phone_digits: str, *, username: bool = False) -> dict[str, Any]:
    """A `value.contacts[]` entry: `user_id` always; `wa_id` only when the number is not withheld."""
    profile: dict[str, Any] = {"name": "Employee"}
    entry: dict[str, Any] = {"profile": profile}
    if username:
        profile["username"] = username_for(phone_digits)
    else:
        entry["wa_id"] = phone_digits
    entry["user_id"] = bsuid_for(phone_digits)
    return entry


def status_body(
    wamid: str,
    status: str,
    recipient: str,
    callback: str | None,
    error: dict[str, Any] | None = None,
    *,
    username: bool = False,
    number: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    """One status callback of a message sent from `number`; `recipient_user_id` always, `recipient_id` (the
    digits) unless `username`."""
    item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(int(time.time()))}
    if not username:
        item["recipient_id"] = recipient
    item["recipient_user_id"] = bsuid_for(recipient)
    if callback is not None:
        item["biz_opaque_callback_data"] = callback
    if error is not None:
        item["errors"] = [error]
    elif status != "failed":
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility"}
    return _envelope({"contacts": [contact(recipient, username=username)], "statuses": [item]}, number)


def inbound_body(
    recipient: str,
    message: dict[str, Any],
    *,
    username: bool = False,
    wamid: str | None = None,
    number: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    """One inbound message from `recipient` (digits) to business number `number`: `from_user_id` always,
    `from` unless `username`."""
    item: dict[str, Any] = {} if username else {"from": recipient}
    item["from_user_id"] = bsuid_for(recipient)
    item |= {"id": wamid or inbound_wamid(), "timestamp": str(int(time.time())), **message}
    return _envelope({"contacts": [contact(recipient, username=username)], "messages": [item]}, number)


def inbound_wamid() -> str:
    return f"wamid.IN{secrets.token_hex(16)}"


# An interactive message's options as a reply names them: ("list_reply" or "button_reply", [{id, title, …}]).
Choices = tuple[str, list[dict[str, str]]]


@dataclass(frozen=True)
class Played:
    """One accepted message the simulated phone plays: statuses, then maybe a reply."""

    wamid: str
    recipient: str
    callback: str | None
    kind: str
    number: str  # the phone_number_id it was sent from: every callback about it names this number
    ack_payload: str | None = None
    choices: Choices | None = None
    ack_label: str | None = None  # a template's quick-reply button label: the text of a tap on it


@dataclass
class Simulator:
    """State kept on the app instance: counters, the random source, the callback client and running tasks."""

    config: SimulatorConfig
    stats: Stats = field(default_factory=Stats)
    rng: random.Random = field(default_factory=random.Random)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    client: httpx.AsyncClient | None = None
    semaphore: asyncio.Semaphore | None = None
    # BSUID -> phone digits, for every BSUID handed out (in a send's answer, a callback or an inbound message):
    # the ones a send may name as `recipient`. Kept by `reset`, as Meta's ids outlive any test's counters.
    directory: dict[str, str] = field(default_factory=dict)
    # The configured numbers' tokens (replaceable at run time) and rate buckets; built from `config.numbers`.
    numbers: Numbers = field(init=False)
    # What template sends are checked against and `GET …/message_templates` lists.
    catalogue: Catalogue = field(init=False)
    # Meta's OpenAPI description of a send, compiled once for this app (it runs on every send).
    schema: SendSchema = field(init=False)
    # Uploads (`POST …/media`) by media id; kept by `reset`, like BSUIDs.
    media: MediaStore = field(default_factory=MediaStore)
    # (phone_number_id, employee digits) -> time.monotonic() of the employee's last message to that number:
    # what `--enforce-window` checks. Kept by `reset`: it is the employees' doing, not a counter.
    last_inbound: dict[tuple[str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng.seed(self.config.seed)
        self.numbers = Numbers(self.config.numbers)
        templates = self.config.templates
        self.catalogue = Catalogue(default_catalogue() if templates is None else templates)
        self.schema = SendSchema()
        self._count_numbers()

    def _count_numbers(self) -> None:
        for number in self.config.numbers:
            self.stats.number(number.phone_number_id)

    def reset(self) -> None:
        """Counters and random source as at start, buckets full; replaced tokens and handed-out BSUIDs stay."""
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.stats = Stats()
        self._count_numbers()
        self.numbers.refill()
        self.rng.seed(self.config.seed)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def user_id(self, phone_digits: str) -> str:
        """The recipient's BSUID, from now on accepted as a send's `recipient`."""
        bsuid = bsuid_for(phone_digits)
        self.directory[bsuid] = phone_digits
        return bsuid

    def is_username(self, phone_digits: str) -> bool:
        return plays_username(phone_digits, self.config.username_rate, self.config.seed)

    def note_inbound(self, number: str, phone_digits: str) -> None:
        """The employee wrote to `number`: its customer-service window with them opens (again) now."""
        self.last_inbound[(number, phone_digits)] = time.monotonic()

    def window_open(self, number: str, phone_digits: str) -> bool:
        at = self.last_inbound.get((number, phone_digits))
        return at is not None and time.monotonic() - at < self.config.window_s

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
        number: str = PHONE_NUMBER_ID,
        choices: Choices | None = None,
        ack_label: str | None = None,
    ) -> None:
        """Act as the recipient's phone for one accepted message sent from `number`, in the background.

        `choices`: an interactive message's options, (`list_reply` or `button_reply`, the rows or buttons);
        an acknowledging employee picks one of them instead of writing "Got it".
        """
        if not self.config.webhook:
            return
        task = asyncio.get_running_loop().create_task(
            self._play(Played(wamid, recipient, callback, kind, number, ack_payload, choices, ack_label), undeliverable)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _play(self, sent: Played, undeliverable: bool) -> None:
        wamid, recipient, callback, number = sent.wamid, sent.recipient, sent.callback, sent.number
        username = self.is_username(recipient)
        if undeliverable:
            # The asynchronous variant of 131026: accepted, then a `failed` status (docs/whatsapp.md#error-codes).
            error = {
                "code": 131026,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": {"details": "Message Undeliverable."},
            }
            await self._post(status_body(wamid, "failed", recipient, callback, error, username=username, number=number))
            return
        bodies = [
            status_body(wamid, status, recipient, callback, username=username, number=number)
            for status in ("sent", "delivered", "read")
        ]
        if self.config.shuffle and self.rng.random() < 0.5:
            self.rng.shuffle(bodies)
        for body in bodies:
            await asyncio.sleep(self.config.step_delay_s)
            await self._post(body)
            if self.roll(self.config.duplicate_rate):
                await self._post(body)
        await asyncio.sleep(self.config.step_delay_s)
        await self._reply(sent, username)

    async def _reply(self, sent: Played, username: bool) -> None:
        draw = self.rng.random()
        context = {"from": display_number_for(sent.number), "id": sent.wamid}
        message: dict[str, Any]
        if draw < self.config.stop_rate:
            reply, message = "stop", {"type": "text", "text": {"body": "STOP"}}
        elif draw < self.config.stop_rate + self.config.ack_rate:
            reply = "ack"
            if sent.choices is not None and sent.choices[1]:
                reply = "choice"
                reply_type, options = sent.choices
                picked = options[self.rng.randrange(len(options))]
                message = {"context": context, "type": "interactive",
                           "interactive": {"type": reply_type, reply_type: dict(picked)}}  # fmt: skip
            elif sent.kind == "template" and sent.ack_label is not None:
                # A tap on the template's quick-reply button: its label, and the payload the send set for it.
                message = {
                    "context": context,
                    "type": "button",
                    "button": {"payload": sent.ack_payload or sent.ack_label, "text": sent.ack_label},
                }
            else:
                message = {"context": context, "type": "text", "text": {"body": "Got it, thanks"}}
        elif draw < self.config.stop_rate + self.config.ack_rate + self.config.reply_rate:
            reply, message = "text", {"type": "text", "text": {"body": "Who do I ask about this?"}}
        else:
            return
        self.note_inbound(sent.number, sent.recipient)
        if await self._post(inbound_body(sent.recipient, message, username=username, number=sent.number)):
            self.stats.replies[reply] += 1

    async def post_inbound(
        self, phone_digits: str, message: dict[str, Any], *, username: bool, number: str = PHONE_NUMBER_ID
    ) -> tuple[bool, str]:
        """Post one signed inbound message from this employee to `number` now; (answered 200 within the
        retries, its wamid)."""
        wamid = inbound_wamid()
        self.user_id(phone_digits)
        self.note_inbound(number, phone_digits)
        body = inbound_body(phone_digits, message, username=username, wamid=wamid, number=number)
        return await self._post(body), wamid

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
