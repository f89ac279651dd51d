"""The WhatsApp Cloud API (Graph) sender: one POST per message, every failure classified (see errors.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from bot.graph.errors import (
    AmbiguousError,
    NotSentError,
    classify_error_envelope,
    map_transport_errors,
    parse_retry_after,
)
from bot.graph.messages import interactive_message, named_template_message, template_message, text_message
from bot.graph.transport import KEEPALIVE_SECONDS, RawTransport, SendProgress, make_fast_transport
from bot.metrics import Metrics
from bot.phones import user_id as valid_user_id
from bot.settings import Settings, Template

__all__ = ["GraphClient", "SendResult", "http_limits", "make_http_client", "parse_send_response"]

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True, slots=True)
class SendResult:
    """Meta accepted the message: ``wamid`` identifies it in status webhooks."""

    wamid: str
    wa_id: str | None
    # Present only when the template is being paced: "accepted", "held_for_quality_assessment", "paused".
    message_status: str | None
    # The recipient's business-scoped user id, when Meta names it in the answer.
    user_id: str | None = None


class GraphClient:
    """Sends messages through ``POST {api_url}/{phone_number_id}/messages`` over an injected httpx client.

    Every call either returns a SendResult (Meta returned ``messages[0].id``) or raises a GraphError
    subclass that says whether the message can have been accepted. It never retries by itself: whether
    to retry is the ledger's decision (docs/architecture.md#the-delivery-status-machine).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_url: str,
        phone_number_id: str,
        access_token: str,
        template: Template | None,
        metrics: Metrics | None = None,
        deadline: float | None = None,
    ) -> None:
        self._http = http
        self._url = f"{api_url.rstrip('/')}/{phone_number_id}/messages"
        # Parsed once: httpx re-parses a str URL on every request, a measurable cost at 1,000 msg/s.
        self._parsed_url = httpx.URL(self._url)
        self._headers = httpx.Headers({**_JSON_HEADERS, "Authorization": f"Bearer {access_token}"})
        self._header_items = self._headers.multi_items()
        self._template = template
        self._metrics = metrics
        self._encoder = msgspec.json.Encoder()
        # The whole call, from taking a connection to the last byte of the answer. The transport's timeouts are
        # per step (a read timeout restarts with every byte), so a peer that trickles its answer would hold the
        # send, and its delivery's lease, indefinitely without this.
        self._deadline = deadline

    @classmethod
    def for_number(
        cls,
        http: httpx.AsyncClient,
        settings: Settings,
        *,
        phone_number_id: str,
        access_token: str,
        metrics: Metrics | None = None,
    ) -> GraphClient:
        """The client for an employer's own number: its id and token, the installation's API URL and template."""
        return cls(
            http,
            api_url=settings.whatsapp_api_url,
            phone_number_id=phone_number_id,
            access_token=access_token,
            template=settings.whatsapp_template,
            metrics=metrics,
            deadline=settings.graph_timeout,
        )

    @classmethod
    def for_settings(
        cls, http: httpx.AsyncClient, settings: Settings, *, metrics: Metrics | None = None
    ) -> GraphClient:
        """The client for the configured number, token and template (what `serve` and `worker` send with)."""
        return cls(
            http,
            api_url=settings.whatsapp_api_url,
            phone_number_id=settings.whatsapp_phone_number_id,
            access_token=settings.whatsapp_access_token,
            template=settings.whatsapp_template,
            metrics=metrics,
            deadline=settings.graph_timeout,
        )

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        # Never show the token.
        return f"GraphClient(url={self._url!r}, template={self._template!r})"

    async def send_announcement(
        self, *, to: str, text: str, callback_data: str, ack_payload: str | None = None
    ) -> SendResult:
        """Send an announcement: the approved template when one is configured, else a plain text message.

        ``ack_payload`` is what the template's quick-reply button carries (echoed when the employee taps it).
        """
        if self._template is not None:
            body = template_message(
                to=to, template=self._template, text=text, callback_data=callback_data, ack_payload=ack_payload
            )
        else:
            body = text_message(to=to, text=text, callback_data=callback_data)
        return await self._post(body)

    async def send_text(
        self, *, to: str, text: str, callback_data: str, recipient_user_id: str | None = None
    ) -> SendResult:
        """Send a free-form text (bot replies, inside the 24 h customer-service window); to the business-scoped
        user id instead of the number when one is given (someone who wrote without their number)."""
        body = text_message(to=to, text=text, callback_data=callback_data, recipient_user_id=recipient_user_id)
        return await self._post(body)

    async def send_interactive(
        self, *, to: str, interactive: dict[str, Any], callback_data: str, recipient_user_id: str | None = None
    ) -> SendResult:
        """Send an interactive message (the list asking which employer a message is for)."""
        body = interactive_message(
            to=to, interactive=interactive, callback_data=callback_data, recipient_user_id=recipient_user_id
        )
        return await self._post(body)

    async def send_template(
        self, *, to: str, name: str, language: str, components: list[dict[str, Any]], callback_data: str
    ) -> SendResult:
        """Send a catalogue template in one translation (docs/whatsapp.md#message-templates)."""
        body = named_template_message(
            to=to, name=name, language=language, components=components, callback_data=callback_data
        )
        return await self._post(body)

    async def _post(self, body: dict[str, Any]) -> SendResult:
        content = self._encoder.encode(body)
        started = time.perf_counter()
        progress = SendProgress()
        try:
            with map_transport_errors():
                async with asyncio.timeout(self._deadline):
                    if isinstance(self._http, GraphHttpClient):
                        status, payload, retry_after = await self._http.post_direct(
                            self._parsed_url, self._header_items, content, progress
                        )
                    else:  # a plain client (tests may pass one): the full httpx path
                        response = await self._http.post(self._parsed_url, content=content, headers=self._headers)
                        status, payload = response.status_code, response.content
                        retry_after = response.headers.get("retry-after")
        except TimeoutError:
            if progress.tracked and not progress.connected:
                # Not a byte left: still connecting (Graph unreachable, as a refused connection) or still waiting
                # for a free connection of our own pool (this attempt only). docs/architecture.md#fault-model
                if progress.connecting:
                    raise NotSentError(f"request not sent: Graph unreachable (no connection within "
                                       f"{self._deadline:g} s)", scope="sender") from None  # fmt: skip
                raise NotSentError(f"request not sent: no free connection within {self._deadline:g} s",
                                   scope="attempt") from None  # fmt: skip
            raise AmbiguousError(f"no complete answer within {self._deadline:g} s") from None
        finally:
            if self._metrics is not None:
                self._metrics.graph_latency.observe(time.perf_counter() - started)
        return parse_send_response(status, payload, retry_after)


def parse_send_response(status: int, content: bytes, retry_after: str | None = None) -> SendResult:
    """A SendResult from a 2xx carrying ``messages[0].id``; the classified GraphError otherwise."""
    try:
        payload: Any = msgspec.json.decode(content) if content else None
    except msgspec.DecodeError:
        payload = None
    if 200 <= status < 300:
        wamid, wa_id, message_status, user_id = _accepted(payload)
        if wamid is None:
            # The send may well have been accepted; we just cannot see the id.
            raise AmbiguousError(f"HTTP {status} without messages[0].id", http_status=status)
        return SendResult(wamid=wamid, wa_id=wa_id, message_status=message_status, user_id=user_id)
    envelope = payload if isinstance(payload, dict) else None
    raise classify_error_envelope(status, envelope, retry_after=parse_retry_after(retry_after))


def _accepted(payload: Any) -> tuple[str | None, str | None, str | None, str | None]:
    if not isinstance(payload, dict):
        return None, None, None, None
    messages = payload.get("messages")
    first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
    wamid = first.get("id")
    message_status = first.get("message_status")
    contacts = payload.get("contacts")
    contact = contacts[0] if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict) else {}
    wa_id = contact.get("wa_id")
    user_id = contact.get("user_id")
    return (
        wamid if isinstance(wamid, str) and wamid else None,
        wa_id if isinstance(wa_id, str) and wa_id else None,
        message_status if isinstance(message_status, str) else None,
        valid_user_id(user_id) if isinstance(user_id, str) else None,
    )


def make_http_client(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None, max_in_flight: int = 200
) -> httpx.AsyncClient:
    """The httpx client the dispatcher sends through, with explicit timeouts and a fast transport.

    ``transport`` overrides the fast transport (tests pass ``httpx.MockTransport``). Read timeout is
    ``settings.graph_timeout``; connect and pool waits are short because a send that never left is cheap
    to retry, while a read timeout makes the delivery ``unknown``.
    """
    timeout = httpx.Timeout(
        connect=min(5.0, settings.graph_timeout),
        read=settings.graph_timeout,
        write=min(5.0, settings.graph_timeout),
        pool=min(5.0, settings.graph_timeout),
    )
    limits = http_limits(max_in_flight)
    if transport is None:
        transport = make_fast_transport(limits=limits)
    return GraphHttpClient(transport=transport, timeout=timeout, limits=limits, follow_redirects=False)


class _NoCookies(httpx.Cookies):
    """A cookie store that ignores Set-Cookie: Graph needs no cookies, and httpx parses every response's
    headers through ``http.cookiejar`` (measured at ~15% of the client's CPU per send at 1,000 msg/s)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class GraphHttpClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that does not keep cookies (see `_NoCookies`), with a direct way to send."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = _NoCookies()
        self._timeouts = self.timeout.as_dict()
        self._routes: dict[int, tuple[httpx.URL, httpx.AsyncBaseTransport, str]] = {}

    async def post_direct(
        self, url: httpx.URL, headers: list[tuple[str, str]], content: bytes, progress: SendProgress | None = None
    ) -> tuple[int, bytes, str | None]:
        """POST past `AsyncClient.send`'s auth, redirect, cookie and event-hook machinery, none of which a Graph
        send uses (~14% of a dispatcher's CPU per message at 1,000 msg/s), and, on the production transport,
        without httpx's Request/Response objects either (~13% more). The client's timeouts still apply, and a
        transport mocked through `_transport_for_url` (respx) still sees an httpx request. Returns (status,
        body, Retry-After)."""
        # The transport and the URL's text, looked up once per URL (the mounts' patterns and str(URL) cost ~3% of
        # a dispatcher's CPU per send at 1,000 msg/s). Keyed by identity: a Graph client passes the same parsed URL
        # every time, and the entry keeps it alive, so its id is never reused for another.
        known = self._routes.get(id(url))
        if known is None:
            known = self._routes[id(url)] = (url, self._transport_for_url(url), str(url))
        _, transport, text = known
        if isinstance(transport, RawTransport):
            raw = await transport.send_raw("POST", text, headers, content, self._timeouts, progress=progress)
            return raw.status, raw.body, raw.header("retry-after")
        request = httpx.Request("POST", url, headers=headers, content=content, extensions={"timeout": self._timeouts})
        response = await transport.handle_async_request(request)
        body = await response.aread()
        return response.status_code, body, response.headers.get("retry-after")


def http_limits(max_in_flight: int) -> httpx.Limits:
    """Connection limits for ``max_in_flight`` concurrent sends (HTTP/1.1: one request per connection).

    Keep-alive is shorter than common server idle timeouts (uvicorn and Node close after 5 s), so we never
    reuse a connection the server is closing: a POST lost that way is ambiguous and its delivery becomes
    ``unknown``. While sending, connections are reused every few milliseconds, so the short expiry costs a
    reconnect only after a quiet spell.
    """
    return httpx.Limits(
        max_connections=max_in_flight, max_keepalive_connections=max_in_flight, keepalive_expiry=KEEPALIVE_SECONDS
    )
