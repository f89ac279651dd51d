"""`/webhooks/whatsapp`: the Meta handshake and signed event POSTs (docs/whatsapp.md#webhook-verification)."""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import HeaderParameter, QueryParameter
from sqlalchemy.exc import DBAPIError

from bot.errors import (
    BadRequestError,
    PayloadTooLargeError,
    ProblemOperation,
    UnauthorizedError,
    problems,
)
from bot.optouts import PhoneHasher
from bot.state import AppState
from bot.webhook import service
from bot.webhook.payloads import Envelope, decode_envelope
from bot.webhook.signature import verify

log = logging.getLogger("jem.webhook")

MAX_WEBHOOK_BYTES = 4 * 1024 * 1024


class ForbiddenError(UnauthorizedError):
    """The signature or verify token does not match."""

    status_code = 403
    title = "Forbidden"


# Two transactions touching the same rows in different orders can still meet (a reply's acknowledgement and a
# status of the same delivery in two bodies): PostgreSQL aborts one of them. Nothing of it was stored, so it is
# run again here instead of answering 500 and waiting for Meta's retry.
RETRIES = 3
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure


async def _store(state: AppState, envelope: Envelope) -> None:
    body = service.parse(envelope, await state.trackers.get())
    for attempt in range(RETRIES):
        try:
            if body.statuses_only:
                # Behind PgBouncer's transaction pooling an explicit transaction keeps the statement's prepare
                # and execute on one server connection.
                async with (
                    state.pg.acquire() as conn,
                    conn.transaction() if state.settings.pgbouncer else contextlib.nullcontext(),
                ):
                    await service.store_statuses(conn, state.metrics, body)
            else:
                async with state.sessionmaker() as session:
                    hasher = PhoneHasher.from_secret(state.settings.secret_key)
                    await service.process(session, state.metrics, body, hasher=hasher)
                    await session.commit()
            return
        except (DBAPIError, asyncpg.PostgresError) as exc:
            sqlstate = getattr(getattr(exc, "orig", exc), "sqlstate", None)
            if sqlstate not in _RETRYABLE_SQLSTATES or attempt == RETRIES - 1:
                raise
            log.warning("webhook: transaction aborted (SQLSTATE %s); running it again", sqlstate)


class WebhookController(Controller):
    path = "/webhooks/whatsapp"
    tags = ["Webhook"]  # noqa: RUF012

    @get(
        "/",
        media_type=MediaType.TEXT,
        # Meta calls it without a bearer token. `[{}]`, one requirement that asks for nothing: an empty list would
        # leave the document-wide bearer one in force.
        security=[{}],
        operation_id="VerifyWebhook",
        summary="Meta's subscription handshake: answers `hub.challenge` when the verify token matches",
        responses=problems((403, "`hub.mode` is not `subscribe`, or `hub.verify_token` is not WHATSAPP_VERIFY_TOKEN")),
        operation_class=ProblemOperation,
    )
    async def handshake(
        self,
        state: AppState,
        mode: Annotated[str | None, QueryParameter(name="hub.mode", required=False)] = None,
        token: Annotated[str | None, QueryParameter(name="hub.verify_token", required=False)] = None,
        challenge: Annotated[str | None, QueryParameter(name="hub.challenge", required=False)] = None,
    ) -> Response[str]:
        expected = state.settings.whatsapp_verify_token.encode()
        given = (token or "").encode("utf-8", "surrogateescape")
        if mode != "subscribe" or not expected or not hmac.compare_digest(given, expected):
            raise ForbiddenError("hub.mode must be subscribe and hub.verify_token the server's WHATSAPP_VERIFY_TOKEN")
        return Response(challenge or "", status_code=200, media_type=MediaType.TEXT)

    @post(
        "/",
        status_code=200,
        # An empty 200 is all Meta reads; the JSON default would answer the body `null`.
        media_type=MediaType.TEXT,
        security=[{}],  # signed instead (see VerifyWebhook)
        operation_id="ReceiveWebhook",
        summary="Meta's signed event notifications: delivery statuses and employees' messages",
        description="Stored before the 200; Meta retries anything else. Signed with X-Hub-Signature-256 (HMAC-SHA256 "
        "of the exact body with WHATSAPP_APP_SECRET).",
        responses=problems(
            (400, "The body is not a WhatsApp webhook JSON object"),
            (401, "X-Hub-Signature-256 is missing"),
            (403, "X-Hub-Signature-256 does not match the body"),
            (413, "The body is over 4 MiB"),
        ),
        operation_class=ProblemOperation,
    )
    async def receive(
        self,
        request: Request[Any, Any, Any],
        state: AppState,
        signature: Annotated[str | None, HeaderParameter(name="x-hub-signature-256", required=False)] = None,
    ) -> None:
        started = time.perf_counter()
        metrics = state.metrics
        status = "500"
        try:
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_WEBHOOK_BYTES:
                raise PayloadTooLargeError()
            body = await request.body()
            if len(body) > MAX_WEBHOOK_BYTES:
                raise PayloadTooLargeError()
            ok = verify(signature, body, state.settings.whatsapp_app_secrets)
            if ok is None:
                raise UnauthorizedError("X-Hub-Signature-256 header is required")
            if not ok:
                raise ForbiddenError("X-Hub-Signature-256 does not match the body")
            try:
                envelope = decode_envelope(body)
            except msgspec.DecodeError as exc:
                raise BadRequestError(f"body is not a WhatsApp webhook JSON object: {exc}") from None
            await _store(state, envelope)
            status = "200"
        except (PayloadTooLargeError, UnauthorizedError, BadRequestError) as exc:
            status = str(exc.status_code)
            raise
        finally:
            metrics.webhook_requests.labels(status).inc()
            metrics.webhook_latency.observe(time.perf_counter() - started)
