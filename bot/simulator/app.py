"""The WhatsApp Cloud API stand-in: `POST /{version}/{phone_number_id}/messages` plus `/_simulator/*`."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from litestar import Litestar, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State, UploadFile
from litestar.exceptions import ClientException, InternalServerException
from litestar.params import FromPath

from bot.simulator.media import MAX_UPLOAD_BYTES
from bot.simulator.numbers import NUMBER_ID, TOKEN, Numbers, display_number_for
from bot.simulator.outage import MAX_SECONDS, Outage
from bot.simulator.phone import PHONE_NUMBER_ID, Simulator, SimulatorConfig, bsuid_for
from bot.simulator.template_sends import TemplateSend, check_template_send
from bot.simulator.validation import (
    MAX_BUTTON_ID,
    MAX_BUTTON_TITLE,
    MAX_ROW_DESCRIPTION,
    MAX_ROW_ID,
    MAX_ROW_TITLE,
    MAX_TEXT,
    GraphError,
    interactive_choices,
    interactive_text,
    validate_send,
)

# Longer than any client keep-alive (ours is 4 s), as Graph's is: the client, not the server, ends an idle
# connection, so a send is never written onto a connection the simulator is closing (an ambiguous loss).
KEEP_ALIVE_SECONDS = 75


def _simulator(state: State) -> Simulator:
    sim: Simulator = state.simulator
    return sim


def _shown_text(body: dict[str, Any], template: TemplateSend | None) -> str | None:
    """What the recipient reads: a text's body; a template's header and body filled in; an interactive
    message's body and its rows' or buttons' titles (`Which employer? [Acme | Demo Ltd]`)."""
    text, interactive = body.get("text"), body.get("interactive")
    if template is not None:
        return template.text
    if isinstance(text, dict) and isinstance(text.get("body"), str):
        return str(text["body"])
    if body.get("type") == "interactive" and isinstance(interactive, dict):
        return interactive_text(interactive)
    return None


def _error(exc: GraphError) -> Response[Any]:
    return Response(exc.envelope(), status_code=exc.status)


def _no_token() -> GraphError:
    return GraphError(401, 190, "Invalid OAuth access token - Cannot parse access token", "auth")


def _bearer(request: Request[Any, Any, State]) -> str | None:
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.startswith("Bearer ") else ""
    return token or None


def _auth_problem(request: Request[Any, Any, State], sim: Simulator, number: str | None) -> GraphError | None:
    """Graph's 190 for a request without a usable token. `number`: the phone number the request acts for (its
    own token, or any for a number that has none); None: the business account (templates, media ids)."""
    token = _bearer(request)
    if token is None:
        return _no_token()
    if number is None:
        if sim.numbers.account_token_ok(token):
            return None
        return GraphError(401, 190, "Invalid OAuth access token", "The access token is not valid for this "
                          "business account")  # fmt: skip
    if sim.numbers.token_ok(number, token):
        return None
    return GraphError(401, 190, "Invalid OAuth access token",
                      f"The access token is not valid for phone number id {number}")  # fmt: skip


def _unknown_object(object_id: str, method: str, what: str) -> GraphError:
    return GraphError(400, 100, "Invalid parameter", f"Unsupported {method} request. Object with ID "
                      f"'{object_id[:64]}' does not exist, cannot be loaded due to missing permissions, or does "
                      f"not support this operation: unknown {what}")  # fmt: skip


@post("/{version:str}/{phone_number_id:str}/messages", status_code=200)
async def send_message(
    request: Request[Any, Any, State], state: State, version: FromPath[str], phone_number_id: FromPath[str]
) -> Response[Any]:
    sim = _simulator(state)
    config = sim.config
    number = phone_number_id  # the business number sending: every callback about this message names it
    if config.latency_ms:
        # asyncio.sleep, not time.sleep: thousands of requests wait at once without blocking each other.
        await asyncio.sleep(config.latency_ms / 1000)
    known = sim.numbers.known(number)
    if _bearer(request) is None:
        sim.stats.reject(number if known else None)
        return _error(_no_token())
    if not known:
        sim.stats.reject(None)
        return _error(_unknown_object(number, "post", "phone number id"))
    refused = _auth_problem(request, sim, number)
    if refused is not None:
        sim.stats.reject(number)
        return _error(refused)
    try:
        raw = await request.body()
    except InternalServerException:
        # The client hung up before its request was read (it gave up waiting on a slow simulator): never
        # accepted, while the client saw a timeout. Counted, so a test can tell this real ambiguity from the
        # injected kind.
        sim.stats.abandoned += 1
        return Response({"detail": "client disconnected before the request was read"}, status_code=499)
    try:
        body = json.loads(raw)
    except ValueError:
        sim.stats.reject(number)
        return _error(GraphError(400, 100, "Invalid parameter", "Request body is not valid JSON"))
    template: TemplateSend | None = None
    try:
        target, key = validate_send(body, sim.directory)
        # Then Meta's own description of the body (what the handwritten rules above do not cover), then what
        # only Meta's state decides: the template catalogue, the customer-service window.
        sim.schema.check(body)
        if body["type"] == "template":
            template = check_template_send(body["template"], sim.catalogue, sim.media)
        elif config.enforce_window and not sim.window_open(number, target.phone):
            raise GraphError(400, 131047, "Re-engagement message", "Message failed to send because more than 24 "
                             "hours have passed since the customer last replied to this number.")  # fmt: skip
    except GraphError as exc:
        sim.stats.reject(number, exc.code)
        return _error(exc)

    # Not accepted: over the number's own throughput (`--number ID:TOKEN:RATE`), then the random faults.
    # Nothing recorded, a re-send cannot duplicate.
    if not sim.numbers.within_rate(number):
        sim.stats.fault("rate_limit", number)
        details = f"Cloud API message throughput of phone number id {number} has been reached."
        return _error(GraphError(400, 130429, "Rate limit hit", details))
    if sim.roll(config.fault_5xx):
        sim.stats.fault("5xx", number)
        return Response({"error": {"message": "An unknown error occurred", "type": "OAuthException", "code": 131000,
                                   "fbtrace_id": secrets.token_urlsafe(9)}}, status_code=500)  # fmt: skip
    if sim.roll(config.fault_throttle):
        sim.stats.fault("throttle", number)
        return _error(GraphError(400, 130429, "Rate limit hit", "Cloud API message throughput has been reached."))
    if sim.roll(config.fault_pair_rate):
        sim.stats.fault("pair_rate", number)
        return _error(
            GraphError(400, 131056, "(Business Account, Consumer Account) pair rate limit hit", "Too many messages")
        )

    wamid = "wamid." + secrets.token_urlsafe(24)
    recipient = target.phone
    kind = str(body.get("type"))
    sim.stats.record_send(
        recipient,
        key,
        kind=kind,
        text=_shown_text(body, template),
        via=target.via,
        wamid=wamid,
        phone_number_id=number,
        template=template.template.name if template else None,
        language=template.template.language if template else None,
    )
    # Handed out from here on (this answer, the callbacks): a later send may name it as `recipient`.
    user_id = sim.user_id(recipient)
    undeliverable = sim.roll(config.fault_undeliverable)
    if undeliverable:
        sim.stats.fault("undeliverable", number)
    sim.play(
        wamid,
        recipient,
        body.get("biz_opaque_callback_data"),
        kind,
        undeliverable,
        ack_payload=template.ack[0] if template and template.ack else None,
        number=number,
        choices=interactive_choices(body.get("interactive")) if kind == "interactive" else None,
        ack_label=template.ack[1] if template and template.ack else None,
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
        sim.stats.fault("timeout", number)
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


INBOUND_FIELDS = ("phone", "text", "context_wamid", "payload", "username", "to_number", "list_reply", "button_reply")
# What the employee sends, one of: `text` (with `payload`: a quick-reply tap labelled `text`), a list row picked
# (`list_reply`) or a reply button tapped (`button_reply`).
INTERACTIVE_REPLIES = {
    # field: (limit of `id`, of `title`, whether a `description` may come with it)
    "list_reply": (MAX_ROW_ID, MAX_ROW_TITLE, True),
    "button_reply": (MAX_BUTTON_ID, MAX_BUTTON_TITLE, False),
}


class _Invalid(Exception):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


@dataclass(frozen=True)
class _Inbound:
    phone: str  # the employee's digits
    message: dict[str, Any]  # the `messages[]` item, without from/id/timestamp
    username: bool | None  # None: the simulator decides (`--username-rate`)
    number: str  # the phone_number_id it arrives on


def _interactive_reply(name: str, value: object) -> dict[str, Any]:
    """`{"type": "interactive", "interactive": {"type": name, name: {id, title[, description]}}}`."""
    id_limit, title_limit, described = INTERACTIVE_REPLIES[name]
    keys = ("id", "title", "description") if described else ("id", "title")
    shape = "{" + ", ".join(f'"{key}"' for key in keys) + "}"
    if not isinstance(value, dict) or not set(value) <= set(keys):
        raise _Invalid(name, f"an object {shape} is required")
    reply_id, title, description = value.get("id"), value.get("title"), value.get("description")
    if not isinstance(reply_id, str) or not reply_id.strip() or len(reply_id) > id_limit:
        raise _Invalid(name, f"`id`: a non-empty string of at most {id_limit} characters is required")
    if not isinstance(title, str) or not title.strip() or len(title) > title_limit:
        raise _Invalid(name, f"`title`: a non-empty string of at most {title_limit} characters is required")
    reply = {"id": reply_id, "title": title}
    if description is not None:
        if not isinstance(description, str) or len(description) > MAX_ROW_DESCRIPTION:
            raise _Invalid(name, f"`description`: a string of at most {MAX_ROW_DESCRIPTION} characters or null")
        reply["description"] = description
    return {"type": "interactive", "interactive": {"type": name, name: reply}}


def _inbound_request(raw: bytes, numbers: Numbers) -> _Inbound:
    """Check a `POST /_simulator/inbound` body; the first problem found is raised as `_Invalid`."""
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
    number = body.get("to_number")
    if number is None:
        number = PHONE_NUMBER_ID
    elif not isinstance(number, str) or not NUMBER_ID.fullmatch(number) or not numbers.known(number):
        known = ", ".join(sorted({PHONE_NUMBER_ID, *numbers.configured}))
        where = f"one of the simulator's numbers ({known})" if numbers.configured else "its digits"
        raise _Invalid("to_number", f"the phone_number_id the message arrives on: {where}, or null")
    given = [name for name in ("text", "payload", *INTERACTIVE_REPLIES) if body.get(name) is not None]
    chosen = [name for name in INTERACTIVE_REPLIES if name in given]
    if chosen and len(given) > 1:
        others = ", ".join(name for name in given if name != chosen[-1])
        raise _Invalid(chosen[-1], "give only one of text (with payload for a quick-reply tap), list_reply and "
                       f"button_reply; this request also has {others}")  # fmt: skip
    wamid, username = body.get("context_wamid"), body.get("username")
    if wamid is not None and (not isinstance(wamid, str) or not wamid.strip()):
        raise _Invalid("context_wamid", "the wamid of the message replied to (a non-empty string) or null")
    if username is not None and not isinstance(username, bool):
        raise _Invalid("username", "true, false or null")
    message: dict[str, Any] = {}
    if wamid is not None:
        message["context"] = {"from": display_number_for(number), "id": wamid}
    if chosen:
        message |= _interactive_reply(chosen[0], body[chosen[0]])
        return _Inbound(digits, message, username, number)
    text, payload = body.get("text"), body.get("payload")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise _Invalid("text", f"a non-empty string of at most {MAX_TEXT} characters is required (or list_reply "
                       "or button_reply)")  # fmt: skip
    if payload is not None and (not isinstance(payload, str) or not payload or len(payload) > 256):
        raise _Invalid("payload", "a quick-reply button's payload (a non-empty string, at most 256) or null")
    if payload is not None:
        message |= {"type": "button", "button": {"payload": payload, "text": text}}
    else:
        message |= {"type": "text", "text": {"body": text}}
    return _Inbound(digits, message, username, number)


@post("/_simulator/inbound", status_code=200)
async def inbound(request: Request[Any, Any, State], state: State) -> Response[Any]:
    """Post, now, a signed inbound message from an employee to the webhook (for a test of the service)."""
    sim = _simulator(state)
    if not sim.config.webhook:
        return Response({"detail": "no webhook: start the simulator with --webhook"}, status_code=409)
    try:
        request_ = _inbound_request(await request.body(), sim.numbers)
    except _Invalid as exc:
        return Response({"detail": str(exc), "field": exc.name}, status_code=422)
    as_username = sim.is_username(request_.phone) if request_.username is None else request_.username
    posted, wamid = await sim.post_inbound(request_.phone, request_.message, username=as_username,
                                           number=request_.number)  # fmt: skip
    if not posted:
        return Response({"posted": False, "wamid": wamid, "detail": "the webhook did not answer 200"}, status_code=502)
    return Response({"posted": True, "wamid": wamid}, status_code=200)


@post("/_simulator/numbers/{phone_number_id:str}/token", status_code=200)
async def replace_token(
    request: Request[Any, Any, State], state: State, phone_number_id: FromPath[str]
) -> Response[Any]:
    """Give a configured number a new access token: from now on sends with the old one get 190 (a revoked
    or rotated token). The token is never echoed."""
    sim = _simulator(state)
    if phone_number_id not in sim.numbers.configured:
        configured = ", ".join(sorted(sim.numbers.configured)) or "none; start the simulator with --number"
        return Response({"detail": f"{phone_number_id[:64]} is not a configured number (configured: {configured})"},
                        status_code=404)  # fmt: skip
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"token"} or not isinstance(token, str) or not TOKEN.fullmatch(token):
        return Response({"detail": "token: the new access token, 1-512 characters without spaces, is required "
                                   "(and no other field)", "field": "token"}, status_code=422)  # fmt: skip
    sim.numbers.replace_token(phone_number_id, token)
    return Response({"phone_number_id": phone_number_id, "replaced": True}, status_code=200)


def _query(request: Request[Any, Any, State]) -> dict[str, str]:
    return {key: str(request.query_params.get(key)) for key in request.query_params}


def _link(request: Request[Any, Any, State], path: str, query: dict[str, str] | None = None) -> str:
    """An absolute URL on this simulator, as Graph's `paging.next` and media `url` are."""
    base = f"{request.url.scheme}://{request.url.netloc}{path}"
    return f"{base}?{urlencode(query)}" if query else base


@get("/{version:str}/{waba_id:str}/message_templates")
async def message_templates(
    request: Request[Any, Any, State], state: State, version: FromPath[str], waba_id: FromPath[str]
) -> Response[Any]:
    """The catalogue, the same for every business account id, paged like Graph (docs/whatsapp.md)."""
    sim = _simulator(state)
    refused = _auth_problem(request, sim, None)
    if refused is not None:
        return _error(refused)
    if not NUMBER_ID.fullmatch(waba_id):
        return _error(_unknown_object(waba_id, "get", "business account id"))
    try:
        page = sim.catalogue.page(_query(request))
    except GraphError as exc:
        return _error(exc)
    answer: dict[str, Any] = {"data": page.data}
    if page.before is not None:
        # Like Graph: both cursors on every page that has data; `previous`/`next` only where there is one.
        paging: dict[str, Any] = {"cursors": {"before": page.before, "after": page.after}}
        if page.previous_query is not None:
            paging["previous"] = _link(request, request.url.path, page.previous_query)
        if page.next_query is not None:
            paging["next"] = _link(request, request.url.path, page.next_query)
        answer["paging"] = paging
    return Response(answer, status_code=200)


@post("/{version:str}/{phone_number_id:str}/media", status_code=200, request_max_body_size=MAX_UPLOAD_BYTES)
async def upload_media(
    request: Request[Any, Any, State], state: State, version: FromPath[str], phone_number_id: FromPath[str]
) -> Response[Any]:
    """Multipart `messaging_product=whatsapp`, `type` (the MIME type) and `file`: answers `{"id": "<media id>"}`."""
    sim = _simulator(state)
    number = phone_number_id
    if _bearer(request) is None:
        return _error(_no_token())
    if not sim.numbers.known(number):
        return _error(_unknown_object(number, "post", "phone number id"))
    refused = _auth_problem(request, sim, number)
    if refused is not None:
        return _error(refused)
    try:
        form = await request.form()
    except ClientException:
        return _error(GraphError(400, 100, "Invalid parameter", "The body must be multipart/form-data"))
    if form.get("messaging_product") != "whatsapp":
        return _error(GraphError(400, 100, "Invalid parameter", "Param messaging_product must be 'whatsapp'"))
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        return _error(GraphError(400, 100, "The parameter file is required", "Param file must be a file part"))
    declared = form.get("type")
    mime = declared if isinstance(declared, str) and declared.strip() else upload.content_type
    try:
        media = sim.media.add(mime_type=mime, data=await upload.read(), phone_number_id=number)
    except GraphError as exc:
        return _error(exc)
    finally:
        await upload.close()
    return Response({"id": media.id}, status_code=200)


@get("/{version:str}/{media_id:str}")
async def media_url(
    request: Request[Any, Any, State], state: State, version: FromPath[str], media_id: FromPath[str]
) -> Response[Any]:
    """What Graph tells of an upload: its download `url` (on this simulator), type, SHA-256 and size."""
    sim = _simulator(state)
    refused = _auth_problem(request, sim, None)
    if refused is not None:
        return _error(refused)
    media = sim.media.get(media_id)
    owner = request.query_params.get("phone_number_id")
    if media is None or (owner is not None and owner != media.phone_number_id):
        # `?phone_number_id=` makes Graph check the media belongs to that number.
        return _error(_unknown_object(media_id, "get", "media id"))
    return Response(media.describe(_link(request, f"/_simulator/media/{media.id}")), status_code=200)


@get("/_simulator/media/{media_id:str}")
async def media_download(request: Request[Any, Any, State], state: State, media_id: FromPath[str]) -> Response[Any]:
    """The uploaded bytes (the `url` of `GET /{media_id}`); like Meta's, it needs the bearer token."""
    sim = _simulator(state)
    refused = _auth_problem(request, sim, None)
    if refused is not None:
        return _error(refused)
    media = sim.media.get(media_id)
    if media is None:
        return Response({"detail": f"no media {media_id[:64]}"}, status_code=404)
    return Response(media.data, media_type=media.mime_type, status_code=200)


ROUTES = (send_message, stats, sends, reset, simulate_outage, inbound, replace_token,
          message_templates, upload_media, media_url, media_download)  # fmt: skip


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
        route_handlers=list(ROUTES),
        lifespan=[running],
        state=State({"simulator": sim, "outage": outage}),
        openapi_config=None,
        # Litestar's default logging config would replace the process's masking root handler (the demo runs
        # the simulator inside `serve`): `bot.logs` owns logging.
        logging_config=None,
    )
