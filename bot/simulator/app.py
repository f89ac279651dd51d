"""The WhatsApp Cloud API stand-in: `POST /{version}/{phone_number_id}/messages` plus `/_simulator/*`."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.params import FromPath

from bot.simulator.outage import MAX_SECONDS, Outage
from bot.simulator.phone import DISPLAY_NUMBER, Simulator, SimulatorConfig, bsuid_for
from bot.simulator.validation import MAX_TEXT, GraphError, validate_send

# Longer than any client keep-alive (ours is 4 s), as Graph's is: the client, not the server, ends an idle
# connection, so a send is never written onto a connection the simulator is closing (an ambiguous loss).
KEEP_ALIVE_SECONDS = 75


def _simulator(state: State) -> Simulator:
    sim: Simulator = state.simulator
    return sim


def _quick_reply_payload(body: dict[str, Any]) -> str | None:
    """The payload a template send gave its quick-reply button; a tap on that button echoes it, like Meta."""
    template = body.get("template")
    for component in template.get("components", []) if isinstance(template, dict) else []:
        if isinstance(component, dict) and component.get("sub_type") == "quick_reply":
            for parameter in component.get("parameters") or []:
                if isinstance(parameter, dict) and isinstance(parameter.get("payload"), str):
                    return str(parameter["payload"])
    return None


def _shown_text(body: dict[str, Any]) -> str | None:
    """What the recipient reads: a text's body; a template's name and text parameters (`name:p1|p2`)."""
    text, template = body.get("text"), body.get("template")
    if isinstance(text, dict) and isinstance(text.get("body"), str):
        return str(text["body"])
    if isinstance(template, dict):
        texts = [
            str(parameter["text"])
            for component in template.get("components") or []
            if isinstance(component, dict)
            for parameter in component.get("parameters") or []
            if isinstance(parameter, dict) and isinstance(parameter.get("text"), str)
        ]
        return f"{template.get('name')}:{'|'.join(texts)}"
    return None


def _error(exc: GraphError) -> Response[Any]:
    return Response(exc.envelope(), status_code=exc.status)


@post("/{version:str}/{phone_number_id:str}/messages", status_code=200)
async def send_message(
    request: Request[Any, Any, State], state: State, version: FromPath[str], phone_number_id: FromPath[str]
) -> Response[Any]:
    sim = _simulator(state)
    config = sim.config
    if config.latency_ms:
        # asyncio.sleep, not time.sleep: thousands of requests wait at once without blocking each other.
        await asyncio.sleep(config.latency_ms / 1000)
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        sim.stats.rejected += 1
        return _error(GraphError(401, 190, "Invalid OAuth access token - Cannot parse access token", "auth"))
    try:
        body = json.loads(await request.body())
    except ValueError:
        sim.stats.rejected += 1
        return _error(GraphError(400, 100, "Invalid parameter", "Request body is not valid JSON"))
    try:
        target, key = validate_send(body, sim.directory)
    except GraphError as exc:
        sim.stats.rejected += 1
        return _error(exc)

    # Faults that mean "not accepted": nothing recorded, a re-send cannot duplicate.
    if sim.roll(config.fault_5xx):
        sim.stats.faults["5xx"] += 1
        return Response({"error": {"message": "An unknown error occurred", "type": "OAuthException", "code": 131000,
                                   "fbtrace_id": secrets.token_urlsafe(9)}}, status_code=500)  # fmt: skip
    if sim.roll(config.fault_throttle):
        sim.stats.faults["throttle"] += 1
        return _error(GraphError(400, 130429, "Rate limit hit", "Cloud API message throughput has been reached."))
    if sim.roll(config.fault_pair_rate):
        sim.stats.faults["pair_rate"] += 1
        return _error(
            GraphError(400, 131056, "(Business Account, Consumer Account) pair rate limit hit", "Too many messages")
        )

    wamid = "wamid." + secrets.token_urlsafe(24)
    recipient = target.phone
    sim.stats.record_send(
        recipient, key, kind=str(body.get("type")), text=_shown_text(body), via=target.via, wamid=wamid
    )
    # Handed out from here on (this answer, the callbacks): a later send may name it as `recipient`.
    user_id = sim.user_id(recipient)
    undeliverable = sim.roll(config.fault_undeliverable)
    if undeliverable:
        sim.stats.faults["undeliverable"] += 1
    sim.play(
        wamid,
        recipient,
        body.get("biz_opaque_callback_data"),
        str(body.get("type")),
        undeliverable,
        ack_payload=_quick_reply_payload(body),
    )
    # Like Meta: `wa_id` only when the send named a phone number; `user_id` always.
    contact = {"input": target.input, "wa_id": recipient} if target.via == "phone" else {"input": target.input}
    answer = {
        "messaging_product": "whatsapp",
        "contacts": [{**contact, "user_id": user_id}],
        "messages": [{"id": wamid}],
    }
    if sim.roll(config.fault_timeout):
        # Accepted and recorded, but the answer comes too late for the client: the ambiguous case.
        sim.stats.faults["timeout"] += 1
        await asyncio.sleep(config.timeout_hold_s)
    return Response(answer, status_code=200)


def _snapshot(state: State) -> dict[str, Any]:
    outage: Outage = state.outage
    return {**_simulator(state).stats.snapshot(), "outage_active": outage.active}


@get("/_simulator/stats")
async def stats(state: State) -> dict[str, Any]:
    return _snapshot(state)


@get("/_simulator/sends")
async def sends(state: State) -> dict[str, Any]:
    """Every recipient with its accepted sends: count, first and last acceptance time (`time.time()`, the
    machine's wall clock), and each send's time, type, dedup key and text (what tests/acceptance/test_chaos.py
    checks at this boundary: who was sent what, and when). Sends are listed under the phone number even when
    they named the recipient's BSUID: `user_id` is that BSUID and each send's `via` says which id it used."""
    listing = _simulator(state).stats.sends_listing()
    return {"recipients": [{"recipient": r["recipient"], "user_id": bsuid_for(r["recipient"]), **r} for r in listing]}


@post("/_simulator/reset", status_code=200)
async def reset(state: State) -> dict[str, Any]:
    _simulator(state).reset()
    return _snapshot(state)


@post("/_simulator/outage", status_code=200)
async def simulate_outage(request: Request[Any, Any, State], state: State) -> Response[Any]:
    """Refuse connections and drop open ones for `seconds`; a call during an outage can only lengthen it."""
    control: Outage = state.outage
    if control.server is None:
        return Response({"detail": "no outage possible: this app is not running under the simulator's own "
                                   "uvicorn server (OutageServer)"}, status_code=409)  # fmt: skip
    try:
        seconds = json.loads(await request.body())["seconds"]
    except (ValueError, TypeError, KeyError):
        seconds = None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= MAX_SECONDS:
        detail = f"seconds: a number of seconds, more than 0 and at most {MAX_SECONDS}, is required"
        return Response({"detail": detail, "field": "seconds"}, status_code=422)
    new = control.request(seconds)
    if new:
        _simulator(state).stats.outages += 1
    answer = {"outage_active": True, "seconds": seconds, "extended": not new}
    # Started only once this answer is written, so the caller gets it before the connection drops.
    return Response(answer, status_code=200, background=BackgroundTask(control.server.start_outage) if new else None)


INBOUND_FIELDS = ("phone", "text", "context_wamid", "payload", "username")


class _Invalid(Exception):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


def _inbound_request(raw: bytes) -> tuple[str, dict[str, Any], bool | None]:
    """The employee's digits, the `messages[]` item and `username` (None: the simulator decides)."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _Invalid("body", "a JSON object is required")
    for name in body:
        if name not in INBOUND_FIELDS:
            raise _Invalid(str(name), f"unknown field; the fields are {', '.join(INBOUND_FIELDS)}")
    phone = body.get("phone")
    digits = phone.strip().removeprefix("+") if isinstance(phone, str) else ""
    if not (digits.isascii() and digits.isdigit() and 8 <= len(digits) <= 15):
        raise _Invalid("phone", "the employee's phone number in E.164 format (e.g. +27821234567) is required")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise _Invalid("text", f"a non-empty string of at most {MAX_TEXT} characters is required")
    wamid, payload, username = body.get("context_wamid"), body.get("payload"), body.get("username")
    if wamid is not None and (not isinstance(wamid, str) or not wamid.strip()):
        raise _Invalid("context_wamid", "the wamid of the message replied to (a non-empty string) or null")
    if payload is not None and (not isinstance(payload, str) or not payload or len(payload) > 256):
        raise _Invalid("payload", "a quick-reply button's payload (a non-empty string, at most 256) or null")
    if username is not None and not isinstance(username, bool):
        raise _Invalid("username", "true, false or null")
    message: dict[str, Any] = {}
    if wamid is not None:
        message["context"] = {"from": DISPLAY_NUMBER, "id": wamid}
    if payload is not None:
        message |= {"type": "button", "button": {"payload": payload, "text": text}}
    else:
        message |= {"type": "text", "text": {"body": text}}
    return digits, message, username


@post("/_simulator/inbound", status_code=200)
async def inbound(request: Request[Any, Any, State], state: State) -> Response[Any]:
    """Post, now, a signed inbound message from an employee to the webhook (for a test of the service)."""
    sim = _simulator(state)
    if not sim.config.webhook:
        return Response({"detail": "no webhook: start the simulator with --webhook"}, status_code=409)
    try:
        digits, message, username = _inbound_request(await request.body())
    except _Invalid as exc:
        return Response({"detail": str(exc), "field": exc.name}, status_code=422)
    as_username = sim.is_username(digits) if username is None else username
    posted, wamid = await sim.post_inbound(digits, message, username=as_username)
    if not posted:
        return Response({"posted": False, "wamid": wamid, "detail": "the webhook did not answer 200"}, status_code=502)
    return Response({"posted": True, "wamid": wamid}, status_code=200)


def create_simulator_app(config: SimulatorConfig) -> Litestar:
    sim = Simulator(config)
    outage = Outage()  # OutageServer attaches itself to it; see bot/simulator/outage.py

    @asynccontextmanager
    async def running(app: Litestar) -> AsyncIterator[None]:
        await sim.start()
        try:
            yield
        finally:
            await sim.stop()

    return Litestar(
        route_handlers=[send_message, stats, sends, reset, simulate_outage, inbound],
        lifespan=[running],
        state=State({"simulator": sim, "outage": outage}),
        openapi_config=None,
        # Litestar's default logging config would replace the process's masking root handler (the demo runs
        # the simulator inside `serve`): `bot.logs` owns logging.
        logging_config=None,
    )
