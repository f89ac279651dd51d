"""A lean HTTP/1.1 client for Graph sends: asyncio protocols, httptools' C parser, and a small keep-alive pool.

A Graph send is one POST of a small JSON body answered by a small JSON body. aiohttp does that in ~190 µs of
CPU per request on a 2-vCPU machine (`jem-bot bench client`), most of it in machinery a send never uses
(cookie jars, redirects, tracing, payload registries, per-request timer objects); this transport does the same
exchange in a fraction of that, which is what lets one dispatcher process hold Meta's top tier.

Why errors are mapped as they are (docs/architecture.md#fault-model): only a failure **before a connection
exists** proves nothing was sent (`httpx.ConnectError`, `ConnectTimeout`, `PoolTimeout`). Once the request may
have been written, every failure (a reset, a server that hangs up, a malformed or truncated answer, no answer
in time) is ambiguous: `RemoteProtocolError`, `ReadError` or `ReadTimeout`, never a "not sent" error.

What it does not do, because Graph does not need it: proxies, redirects, cookies, HTTP/2, request streaming,
`Expect: 100-continue`. Anything not `http`/`https` is refused before a connection is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from typing import cast
from urllib.parse import urlsplit

import httptools
import httpx

from bot.graph.transport import DEFAULT_LIMITS, KEEPALIVE_SECONDS, RawResponse, RawTransport, SendProgress

# Distinct URLs whose parsed form is kept (one per sending number in practice); past it, the cache starts over.
MAX_CACHED_URLS = 1_000
_Key = tuple[str, str, int]  # scheme, host, port


class _Target:
    """A URL taken apart once: where to connect and what the request line and Host header say."""

    __slots__ = ("head", "host", "key", "port", "tls")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise httpx.UnsupportedProtocol(f"only http:// and https:// URLs with a host are supported: {url!r}")
        self.tls = scheme == "https"
        self.host = parts.hostname
        default = 443 if self.tls else 80
        try:
            self.port = parts.port or default
        except ValueError:
            raise httpx.UnsupportedProtocol(f"invalid port in {url!r}") from None
        self.key: _Key = (scheme, self.host, self.port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = host if self.port == default else f"{host}:{self.port}"
        self.head = f"POST {path} HTTP/1.1\r\nHost: {netloc}\r\n"


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time; the answer is parsed as it arrives."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = True
        self.close_delimited = False

    # --- asyncio.Protocol -----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            # Bytes nobody asked for (or after the answer): the connection cannot be trusted any more.
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        # The server is done with this connection: never hand it out again (the transport closes it next).
        self.closed = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and self.close_delimited and not self.complete:
            # A body without a length ends with the connection (HTTP/1.1 allows it); nothing is missing.
            self.complete = True
            self.keep_alive = False
            self._finish(None)
            return
        if self.headers_done:
            self._finish(httpx.ReadError("the connection closed in the middle of the answer"))
        else:
            self._finish(httpx.RemoteProtocolError("the server closed the connection without answering"))

    # --- httptools callbacks --------------------------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        names = {name.lower() for name, _ in self.headers}
        self.close_delimited = b"content-length" not in names and b"transfer-encoding" not in names

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer: the real one follows on the same connection
            self._reset()
            return
        self.complete = True
        self._finish(None)

    # --- ours -------------------------------------------------------------------------------------------------------

    def _finish(self, error: Exception | None) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)

    def time_out(self) -> None:
        self._finish(httpx.ReadTimeout("no complete answer within the read timeout"))
        self.close()

    def send(self, data: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self._reset()
        self.parser = httptools.HttpResponseParser(self)
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class LeanTransport(RawTransport):
    """HTTP/1.1 over a pool of keep-alive connections (at most ``limits.max_connections``, idle ones dropped
    after ``limits.keepalive_expiry``). Timeouts: ``pool`` to wait for a free connection, ``connect`` to open one
    (TCP and TLS), ``read`` for the whole answer once the request is written."""

    def __init__(self, *, limits: httpx.Limits = DEFAULT_LIMITS, verify: ssl.SSLContext | bool = True) -> None:
        self._max = limits.max_connections or 0
        self._keepalive = limits.keepalive_expiry if limits.keepalive_expiry is not None else KEEPALIVE_SECONDS
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self._idle: dict[_Key, list[_Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._targets: dict[str, _Target] = {}
        self._closed = False

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
        """One request and its whole answer. ``progress``, when given, learns when a connection is being opened
        and when the request has one (from then on it may have been sent)."""
        if progress is not None:
            progress.tracked = True
        target = self._target(url)
        data = _request_bytes(target, method, headers, content)
        conn = await self._acquire(target, timeouts, progress)
        loop = asyncio.get_running_loop()
        read = timeouts.get("read")
        timer = None
        try:
            waiter = conn.send(data)
            if read is not None:
                timer = loop.call_later(read, conn.time_out)
            await waiter
        except BaseException:
            # Cancelled (the caller's deadline) or failed: the connection's state is unknown; never reuse it.
            self._discard(conn)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        response = RawResponse(conn.status, conn.headers, b"".join(conn.body), conn.reason.decode("latin-1"))
        self._release(conn)
        if decompress:
            response = _decoded(response)
        return response

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(httpx.PoolTimeout("the transport was closed"))

    # --- the pool ---------------------------------------------------------------------------------------------------

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= MAX_CACHED_URLS:
                self._targets.clear()
            target = self._targets[url] = _Target(url)
        return target

    async def _acquire(
        self, target: _Target, timeouts: Mapping[str, float | None], progress: SendProgress | None
    ) -> _Connection:
        if self._closed:
            raise httpx.PoolTimeout("the transport is closed")
        loop = asyncio.get_running_loop()
        while True:
            idle = self._idle.get(target.key)
            while idle:
                conn = idle.pop()  # the most recently used: the least likely to be closing
                stale = conn.closed or conn.transport is None or conn.transport.is_closing()
                if stale or loop.time() - conn.idle_since > self._keepalive:
                    self._discard(conn)
                    continue
                if progress is not None:
                    progress.connected = True
                return conn
            if not self._max or self._open < self._max:
                break
            await self._wait_for_room(timeouts.get("pool"))
        self._open += 1
        if progress is not None:
            progress.connecting = True
        try:
            conn = await self._connect(target, timeouts.get("connect"))
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        if progress is not None:
            progress.connected = True
        return conn

    async def _wait_for_room(self, seconds: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in time") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._wake_one()  # we were handed the room but cannot use it: pass it on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def _connect(self, target: _Target, seconds: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        context = self._ssl_context() if target.tls else None
        try:
            async with asyncio.timeout(seconds):
                _, conn = await loop.create_connection(
                    lambda: _Connection(target.key),
                    target.host,
                    target.port,
                    ssl=context,
                    server_hostname=target.host if context is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {target.host}:{target.port} in time") from None
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, DNS, TLS handshake
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if isinstance(self._verify, ssl.SSLContext):
                self._ssl = self._verify
            elif self._verify:
                import certifi

                # The same trust store as httpx's default.
                self._ssl = ssl.create_default_context(cafile=certifi.where())
            else:
                self._ssl = ssl.create_default_context()
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        return self._ssl

    def _release(self, conn: _Connection) -> None:
        if self._closed or not conn.reusable():
            self._discard(conn)
            return
        conn.idle_since = asyncio.get_running_loop().time()
        conn.waiter = None
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake_one()

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _request_bytes(target: _Target, method: str, headers: Sequence[tuple[str, str]], content: bytes) -> bytes:
    lines = [target.head if method == "POST" else target.head.replace("POST", method, 1)]
    length_given = False
    for name, value in headers:
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            # Nothing is sent: a header that would split the request is a configuration error, not Graph's.
            raise httpx.UnsupportedProtocol(f"the {name!r} header contains a line break")
        lowered = name.lower()
        if lowered == "host":
            continue  # ours, from the URL
        length_given = length_given or lowered == "content-length"
        lines.append(f"{name}: {value}\r\n")
    if not length_given:
        lines.append(f"Content-Length: {len(content)}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + content


def _decoded(response: RawResponse) -> RawResponse:
    encoding = (response.header("content-encoding") or "").strip().lower()
    if encoding in ("", "identity"):
        return response
    try:
        if encoding == "gzip":
            body = gzip.decompress(response.body)
        elif encoding == "deflate":
            body = zlib.decompress(response.body)
        else:
            return response
    except (OSError, zlib.error, EOFError) as exc:
        raise httpx.DecodingError(f"the answer's {encoding} body cannot be decoded: {exc}") from exc
    return RawResponse(response.status, response.headers, body, response.reason)
