"""`/webhooks/whatsapp`: the Meta handshake and signed event POSTs (CONTRACT.md, webhook)."""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import BadRequestError, PayloadTooLargeError, UnauthorizedError
from bot.webhook import service
from bot.webhook.payloads import decode_envelope
from bot.webhook.signature import verify

MAX_WEBHOOK_BYTES = 4 * 1024 * 1024


class ForbiddenError(UnauthorizedError):
    """The signature or verify token does not match."""

    status_code = 403
    title = "Forbidden"


class WebhookController(Controller):
    path = "/webhooks/whatsapp"
    tags = ["Webhook"]  # noqa: RUF012

    @get("/", media_type=MediaType.TEXT, security=[], operation_id="VerifyWebhook")
    async def handshake(
        self,
        state: State,
        mode: Annotated[str | None, QueryParameter(name="hub.mode", required=False)] = None,
        token: Annotated[str | None, QueryParameter(name="hub.verify_token", required=False)] = None,
        challenge: Annotated[str | None, QueryParameter(name="hub.challenge", required=False)] = None,
    ) -> Response[str]:
        expected = state.settings.whatsapp_verify_token.encode()
        given = (token or "").encode("utf-8", "surrogateescape")
        if mode != "subscribe" or not expected or not hmac.compare_digest(given, expected):
            return Response("forbidden", status_code=403, media_type=MediaType.TEXT)
        return Response(challenge or "", status_code=200, media_type=MediaType.TEXT)

    @post("/", status_code=200, security=[], operation_id="ReceiveWebhook")
    async def receive(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db_session: NamedDependency[AsyncSession],
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
            await service.process(db_session, metrics, envelope)
            await db_session.commit()
            status = "200"
        except (PayloadTooLargeError, UnauthorizedError, BadRequestError) as exc:
            status = str(exc.status_code)
            raise
        finally:
            metrics.webhook_requests.labels(status).inc()
            metrics.webhook_latency.observe(time.perf_counter() - started)
