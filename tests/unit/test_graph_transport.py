"""The aiohttp-backed transport against real sockets: answers, and failures mapped by "was it sent?"."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from bot.graph.client import GraphClient, GraphHttpClient, make_http_client
from bot.graph.errors import AmbiguousError, NotSentError
from bot.graph.transport import TRANSPORTS, AiohttpTransport, ShardedTransport, make_fast_transport
from bot.graph.wire import LeanTransport
from bot.settings import Settings

PHONE_ID = "100000000000001"
SUCCESS = {"contacts": [{"input": "+27820000001", "wa_id": "27820000001"}], "messages": [{"id": "wamid.REAL"}]}

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A loopback TCP server running ``handler`` per connection; yields the Graph base URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v23.0"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Read one HTTP/1.1 request with a Content-Length body; return (head, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length)
    return head, body


def response_bytes(status: int, body: bytes, *, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )


def answer_when(release: asyncio.Event) -> Handler:
    """A handler that reads the request and answers success once ``release`` is set (the connection stays busy)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await release.wait()
        writer.write(response_bytes(200, json.dumps(SUCCESS).encode()))
        await writer.drain()

    return handler


def settings(api_url: str, *, timeout: float = 2.0) -> Settings:
    return Settings(whatsapp_api_url=api_url, graph_timeout=timeout)


def graph_for(http: httpx.AsyncClient, api_url: str) -> GraphClient:
    return GraphClient(http, api_url=api_url, phone_number_id=PHONE_ID, access_token="tok", template=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_success_over_a_real_socket_sends_the_exact_request() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(response_bytes(200, json.dumps(SUCCESS).encode()))
            await writer.drain()

    async with raw_server(handler) as url, make_http_client(settings(url)) as http:
        graph = graph_for(http, url)
        first = await graph.send_text(to="+27820000001", text="hello", callback_data="11")
        second = await graph.send_text(to="+27820000001", text="again", callback_data="12")
    assert first.wamid == second.wamid == "wamid.REAL"
    head, body = seen[0]
    assert head.startswith(f"POST /v23.0/{PHONE_ID}/messages HTTP/1.1\r\n".encode())
    headers = head.lower()
    assert b"authorization: bearer tok\r\n" in headers
    assert b"content-type: application/json\r\n" in headers
    assert headers.count(b"content-length:") == 1
    assert headers.count(b"\r\nhost:") == 1
    assert json.loads(body)["biz_opaque_callback_data"] == "11"
    assert json.loads(seen[1][1])["text"]["body"] == "again"


async def test_gzip_responses_are_decoded_by_httpx() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            response_bytes(200, gzip.compress(json.dumps(SUCCESS).encode()), extra="Content-Encoding: gzip\r\n")
        )
        await writer.drain()

    async with raw_server(handler) as url, make_http_client(settings(url)) as http:
        result = await graph_for(http, url).send_text(to="+27820000001", text="x", callback_data="1")
    assert result.wa_id == "27820000001"


async def test_error_envelopes_arrive_intact() -> None:
    envelope = {"error": {"code": 131056, "message": "pair rate", "error_data": {"details": "Too many"}}}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response_bytes(400, json.dumps(envelope).encode(), extra="Retry-After: 4\r\n"))
        await writer.drain()

    async with raw_server(handler) as url, make_http_client(settings(url)) as http:
        with pytest.raises(NotSentError) as caught:
            await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")
    assert (caught.value.scope, caught.value.code, caught.value.retry_after) == ("recipient", 131056, 4.0)


async def test_connection_refused_is_not_sent() -> None:
    url = f"http://127.0.0.1:{free_port()}/v23.0"
    async with make_http_client(settings(url)) as http:
        with pytest.raises(NotSentError) as caught:
            await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")
    assert caught.value.scope == "sender"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_disconnect_after_the_request_was_read_is_ambiguous() -> None:
    """The server got the whole request, then hung up: Meta may have accepted it, so never retry."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with raw_server(handler) as url, make_http_client(settings(url)) as http:
        with pytest.raises(AmbiguousError) as caught:
            await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)


async def test_no_answer_within_the_read_timeout_is_ambiguous() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with raw_server(handler) as url, make_http_client(settings(url, timeout=0.3)) as http:
        with pytest.raises(AmbiguousError) as caught:
            await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


async def test_truncated_body_is_ambiguous() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"mess')
        await writer.drain()

    async with raw_server(handler) as url, make_http_client(settings(url)) as http:
        with pytest.raises(AmbiguousError) as caught:
            await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")
    assert isinstance(caught.value.__cause__, httpx.ReadError | httpx.RemoteProtocolError)


async def test_garbage_instead_of_http_is_ambiguous() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    async with raw_server(handler) as url, make_http_client(settings(url)) as http:
        with pytest.raises(AmbiguousError) as caught:
            await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)


async def test_waiting_too_long_for_a_pooled_connection_is_not_sent() -> None:
    """With every connection busy, a send that cannot get one in time never left: retry is safe."""
    release = asyncio.Event()
    handler = answer_when(release)

    async with raw_server(handler) as url:
        transport = AiohttpTransport(limits=httpx.Limits(max_connections=1))
        timeout = httpx.Timeout(connect=0.2, pool=0.1, read=5.0, write=1.0)
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as http:
            graph = graph_for(http, url)
            busy = asyncio.create_task(graph.send_text(to="+1", text="first", callback_data="1"))
            await asyncio.sleep(0.05)
            with pytest.raises(NotSentError) as caught:
                await graph.send_text(to="+1", text="second", callback_data="2")
            release.set()
            assert (await busy).wamid == "wamid.REAL"
    assert caught.value.scope == "sender"
    assert isinstance(caught.value.__cause__, httpx.ConnectTimeout)


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
async def test_every_benchmarked_transport_can_send(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response_bytes(200, json.dumps(SUCCESS).encode()))
        await writer.drain()

    async with raw_server(handler) as url:
        transport = TRANSPORTS[name](httpx.Limits(max_connections=4))
        async with make_http_client(settings(url), transport=transport) as http:
            assert (await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")).wamid == "wamid.REAL"


def test_the_fast_transport_is_the_lean_one() -> None:
    assert isinstance(make_fast_transport(), LeanTransport)
    assert not isinstance(make_fast_transport(), ShardedTransport | AiohttpTransport)


async def test_closing_the_client_closes_the_aiohttp_session() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response_bytes(200, json.dumps(SUCCESS).encode()))
        await writer.drain()

    async with raw_server(handler) as url:
        transport = AiohttpTransport()
        async with make_http_client(settings(url), transport=transport) as http:
            await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")
            session = transport._session
            assert session is not None
        assert session.closed


async def test_an_answer_that_trickles_in_ends_at_the_overall_deadline_as_ambiguous() -> None:
    """One byte every 0.2 s never trips a per-read timeout; the call's overall deadline (JEM_GRAPH_TIMEOUT) does.
    The request was written, so whether Meta accepted it is unknown."""
    body = json.dumps(SUCCESS).encode()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for byte in response_bytes(200, body):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)

    async with raw_server(trickle) as url:
        config = settings(url, timeout=1.0).replace(whatsapp_phone_number_id=PHONE_ID, whatsapp_access_token="tok")
        async with make_http_client(config) as http:
            graph = GraphClient.for_settings(http, config)
            started = asyncio.get_running_loop().time()
            with pytest.raises(AmbiguousError) as caught:
                await graph.send_text(to="+1", text="x", callback_data="1")
            took = asyncio.get_running_loop().time() - started
    assert 0.9 < took < 2.0, took
    assert "1 s" in caught.value.title


# Both transports that report a request's progress: the production one and the aiohttp one it replaced.
PROGRESS_TRANSPORTS = {"lean": LeanTransport, "aiohttp": AiohttpTransport}


@pytest.fixture(params=sorted(PROGRESS_TRANSPORTS))
def patient_client(request: pytest.FixtureRequest) -> Callable[[float], httpx.AsyncClient]:
    """The production client whose connect and pool waits outlast the send's own deadline (a Graph that stops
    answering SYNs, a pool that stays busy): the deadline, not a transport timeout, ends the wait."""

    def make(connect: float) -> httpx.AsyncClient:
        transport = PROGRESS_TRANSPORTS[request.param](limits=httpx.Limits(max_connections=1))
        timeout = httpx.Timeout(connect=connect, pool=connect, read=connect, write=connect)
        return GraphHttpClient(transport=transport, timeout=timeout, limits=httpx.Limits(max_connections=1))

    return make


async def test_a_deadline_spent_opening_the_connection_is_not_sent_and_backs_off_the_sender(
    patient_client: Callable[[float], httpx.AsyncClient],
) -> None:
    """Graph's listen queue is full and it drops our SYN: no byte left, so the send is retried (after a back-off
    of the whole sender), never marked `unknown`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: once the queue is full, the kernel drops further SYNs
    address = listener.getsockname()
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(address)
            fillers.append(filler)
        url = f"http://127.0.0.1:{address[1]}/v23.0"
        async with patient_client(connect=10.0) as http:
            graph = GraphClient(http, api_url=url, phone_number_id=PHONE_ID, access_token="t", template=None,
                                deadline=0.5)  # fmt: skip
            with pytest.raises(NotSentError) as caught:
                await graph.send_text(to="+1", text="x", callback_data="1")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert caught.value.scope == "sender", caught.value
    assert "no connection within 0.5 s" in caught.value.title


async def test_a_deadline_spent_waiting_for_our_own_pool_is_not_sent_and_retried_alone(
    patient_client: Callable[[float], httpx.AsyncClient],
) -> None:
    """Every connection of ours is busy until after the deadline: this attempt never left, and nobody else
    needs to wait for it (no back-off of the sender)."""
    release = asyncio.Event()
    handler = answer_when(release)

    async with raw_server(handler) as url, patient_client(connect=10.0) as http:
        graph = GraphClient(http, api_url=url, phone_number_id=PHONE_ID, access_token="t", template=None, deadline=5)
        hurried = GraphClient(http, api_url=url, phone_number_id=PHONE_ID, access_token="t", template=None,
                              deadline=0.3)  # fmt: skip
        busy = asyncio.create_task(graph.send_text(to="+1", text="first", callback_data="1"))
        await poll_until(lambda: transport_busy(http))
        with pytest.raises(NotSentError) as caught:
            await hurried.send_text(to="+1", text="second", callback_data="2")
        release.set()
        assert (await busy).wamid == "wamid.REAL"
    assert caught.value.scope == "attempt", caught.value


async def test_a_deadline_spent_after_the_request_left_stays_ambiguous(
    patient_client: Callable[[float], httpx.AsyncClient],
) -> None:
    """The same deadline once a connection is held: the request may have been read, so it is `unknown`."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with raw_server(handler) as url, patient_client(connect=10.0) as http:
        graph = GraphClient(http, api_url=url, phone_number_id=PHONE_ID, access_token="t", template=None,
                            deadline=0.3)  # fmt: skip
        with pytest.raises(AmbiguousError):
            await graph.send_text(to="+1", text="x", callback_data="1")


def transport_busy(http: httpx.AsyncClient) -> bool:
    """True once the client's single connection is taken (the first send holds it)."""
    transport = http._transport
    if isinstance(transport, LeanTransport):
        return transport._open == 1 and not any(transport._idle.values())
    assert isinstance(transport, AiohttpTransport)
    session = transport._session
    return session is not None and session.connector is not None and len(session.connector._acquired) == 1


async def poll_until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)
