"""httpx transports fast enough to keep 100+ Graph sends in flight, with honest exception mapping.

Plain ``httpx.AsyncHTTPTransport`` (httpcore) collapses on this class of machine once many requests are
in flight (its pool is scanned under one lock per request). Production sends go through
`bot.graph.wire.LeanTransport` (asyncio protocols and httptools' parser: ~60 µs of CPU per send where aiohttp
needs ~175). `AiohttpTransport`, which it replaced, stays as a measured alternative. Both keep the httpx API
(respx, MockTransport, timeouts, ``AsyncClient``). ``jem-bot bench client`` measures every candidate in
`TRANSPORTS`.

Why not ``httpx_aiohttp.AiohttpTransport`` as is: it maps *every* ``aiohttp.ClientConnectionError``
(including ``ServerDisconnectedError`` and a reset after the request was written) to
``httpx.ConnectTimeout``, which means "never sent" — a retry after that could deliver an announcement
twice. Here only failures before a connection exists become connect errors.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
import httpx
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

# Below the 5 s idle timeout of uvicorn/Node servers: reusing a connection the server is closing loses a POST
# ambiguously (see `bot.graph.client.http_limits`).
KEEPALIVE_SECONDS = 4.0
DEFAULT_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=KEEPALIVE_SECONDS)


@contextlib.contextmanager
def _map_aiohttp_errors() -> Iterator[None]:
    """aiohttp exceptions → the most specific httpx exception, preserving "was it sent?"."""
    try:
        yield
    # Raised only while acquiring or opening a connection (pool wait, DNS, TCP, TLS): nothing was written.
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connection timeout") from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc) or "connection failed") from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(str(exc) or "invalid URL") from exc
    # Everything below happens on an established connection, after (part of) the request may have left.
    except aiohttp.SocketTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "read timeout") from exc
    except TimeoutError as exc:  # aiohttp.ServerTimeoutError and asyncio's are both TimeoutError
        raise httpx.ReadTimeout(str(exc) or "timeout") from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx.RemoteProtocolError(str(exc) or "server disconnected") from exc
    except aiohttp.ClientResponseError as exc:
        raise httpx.RemoteProtocolError(str(exc) or "malformed response") from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.ReadError(str(exc) or "incomplete response body") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


class SendProgress:
    """How far one request got, for a caller whose own deadline may cut it short: only a request that never had
    a connection is provably not sent. ``tracked`` says the transport reports progress at all (a mocked or
    plain httpx transport does not, and then nothing may be concluded)."""

    __slots__ = ("connected", "connecting", "tracked")

    def __init__(self) -> None:
        self.tracked = False
        self.connecting = False  # opening a connection to the server (else still waiting for one of our own)
        self.connected = False


# The request being sent in this task, for `_ProgressConnector`: aiohttp awaits the connector in the caller's
# task, so a context variable reaches it without aiohttp's trace signals (those cost ~5% of a dispatcher's CPU
# per send, measured at 1,000 msg/s). Not shared state: each task sees only what it set itself.
_SENDING: contextvars.ContextVar[SendProgress | None] = contextvars.ContextVar("jem_send_progress", default=None)


class _ProgressConnector(aiohttp.TCPConnector):
    """Marks the current request's `SendProgress`: opening a connection, then holding one (new or reused),
    from which moment bytes may leave at any time."""

    async def connect(self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout) -> Connection:  # noqa: ASYNC109 - aiohttp's signature
        connection = await super().connect(req, traces, timeout)
        progress = _SENDING.get()
        if progress is not None:
            progress.connected = True
        return connection

    async def _create_connection(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
    ) -> ResponseHandler:
        progress = _SENDING.get()
        if progress is not None:
            progress.connecting = True
        return await super()._create_connection(req, traces, timeout)


@dataclass(frozen=True, slots=True)
class RawResponse:
    """What `AiohttpTransport.send_raw` answers: just what the Graph client reads."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    reason: str | None = None

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None


class RawTransport(httpx.AsyncBaseTransport):
    """A transport with a direct way to send (`send_raw`: plain values in, a `RawResponse` out), the Graph
    client's hot path; any httpx client (respx, tests) goes through `handle_async_request`, built on it."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        raw = await self.send_raw(
            request.method,
            str(request.url),
            request.headers.multi_items(),
            content,
            request.extensions.get("timeout", {}),
            decompress=False,  # httpx's Response decodes the body by its Content-Encoding
        )
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if raw.reason:
            extensions["reason_phrase"] = raw.reason.encode("latin-1", "replace")
        return httpx.Response(raw.status, headers=raw.headers, content=raw.body, request=request, extensions=extensions)

    async def send_raw(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        content: bytes,
        timeouts: Mapping[str, float | None],
        decompress: bool = True,
        progress: SendProgress | None = None,
    ) -> RawResponse:
        """One request and its whole answer. ``timeouts`` are httpx's (``connect``, ``pool``, ``read``);
        ``progress``, when given, learns how far the request got (see `SendProgress`)."""
        raise NotImplementedError


class AiohttpTransport(RawTransport):
    """An httpx transport backed by one ``aiohttp.ClientSession`` (created lazily inside the event loop).

    Bodies are read completely before returning (Graph answers are small JSON), so a connection goes back
    to the pool at once and body-read failures are mapped like any other. Honours httpx's per-request
    timeouts: ``connect`` (TCP/TLS), ``pool`` + ``connect`` (waiting for a free connection), ``read``
    (between bytes, also covering a stalled write, since aiohttp arms it before sending).
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits = DEFAULT_LIMITS,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._limits = limits
        self._ssl = verify
        self._session: aiohttp.ClientSession | None = None
        # One ClientTimeout per distinct set of httpx timeouts (in practice one), not one per request.
        self._timeouts: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = _ProgressConnector(
                limit=self._limits.max_connections or 0,
                limit_per_host=0,
                keepalive_timeout=self._limits.keepalive_expiry or KEEPALIVE_SECONDS,
                ssl=self._ssl,
                # Graph has a handful of addresses; cache DNS so 1,000 msg/s do not mean 1,000 lookups.
                ttl_dns_cache=60,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # httpx owns cookies, redirects, decoding and default headers; aiohttp adds none of its own.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type", "Accept"),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def send_raw(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        content: bytes,
        timeouts: Mapping[str, float | None],
        decompress: bool = True,
        progress: SendProgress | None = None,
    ) -> RawResponse:
        """One request without httpx's Request/Response objects: the Graph client's hot path (building and
        reading those cost ~13% of a dispatcher's CPU per message at 1,000 msg/s). ``timeouts`` are httpx's
        (``connect``, ``pool``, ``read``); ``progress``, when given, learns when the request has a connection."""
        session = self._get_session()
        if progress is not None:
            progress.tracked = True
        token = _SENDING.set(progress)
        try:
            with _map_aiohttp_errors():
                async with session.request(
                    method,
                    url,
                    headers=headers,
                    data=content or None,
                    allow_redirects=False,
                    timeout=self._client_timeout(timeouts),
                    auto_decompress=decompress,
                ) as response:
                    body = await response.read()
                    return RawResponse(response.status, list(response.raw_headers), body, response.reason)
        finally:
            _SENDING.reset(token)

    def _client_timeout(self, timeouts: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
        key = (timeouts.get("connect"), timeouts.get("pool"), timeouts.get("read"))
        cached = self._timeouts.get(key)
        if cached is None:
            connect, pool, read = key
            cached = aiohttp.ClientTimeout(
                total=None,
                connect=None if pool is None or connect is None else pool + connect,
                sock_connect=connect,
                sock_read=read,
            )
            self._timeouts[key] = cached
        return cached

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class ShardedTransport(httpx.AsyncBaseTransport):
    """Round-robin over several small httpcore pools (a candidate measured by ``bench client``)."""

    def __init__(self, *, limits: httpx.Limits = DEFAULT_LIMITS, shards: int = 8) -> None:
        per_shard = max(1, (limits.max_connections or 100) // shards)
        shard_limits = httpx.Limits(
            max_connections=per_shard, max_keepalive_connections=per_shard, keepalive_expiry=limits.keepalive_expiry
        )
        self._shards = [httpx.AsyncHTTPTransport(limits=shard_limits) for _ in range(shards)]
        self._next = itertools.cycle(self._shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await next(self._next).handle_async_request(request)

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


def _httpcore(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(limits=limits)


def _httpx_aiohttp(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    try:
        from httpx_aiohttp import AiohttpTransport as LibraryAiohttpTransport
    except ImportError as exc:  # only a comparison: not installed with the service itself
        raise RuntimeError("the httpx-aiohttp transport needs the bench group: uv sync --group bench") from exc

    transport: httpx.AsyncBaseTransport = LibraryAiohttpTransport(limits=limits)
    return transport


# Candidates for `jem-bot bench client --transport NAME`. "aiohttp" is the one `make_http_client` uses.
def _lean(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    from bot.graph.wire import LeanTransport

    return LeanTransport(limits=limits)


TRANSPORTS: dict[str, Callable[[httpx.Limits], httpx.AsyncBaseTransport]] = {
    "httpx": _httpcore,
    "httpx-pools": lambda limits: ShardedTransport(limits=limits),
    "httpx-aiohttp": _httpx_aiohttp,
    "aiohttp": lambda limits: AiohttpTransport(limits=limits),
    "lean": _lean,
}
FAST_TRANSPORT = "lean"


def make_fast_transport(*, limits: httpx.Limits = DEFAULT_LIMITS) -> httpx.AsyncBaseTransport:
    """The transport production sends go through (the winner of ``jem-bot bench client``)."""
    return TRANSPORTS[FAST_TRANSPORT](limits)
