"""The lean HTTP/1.1 transport on real sockets: keep-alive, the ways an answer can end, TLS, its pool under
cancellation, and "was it sent?" kept honest (tests/unit/test_graph_transport.py covers the failure mapping
that every transport shares)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.graph.client import GraphClient, GraphHttpClient, make_http_client
from bot.graph.errors import AmbiguousError, NotSentError, SendingPausedError
from bot.graph.wire import LeanTransport
from tests.unit.test_graph_transport import (
    PHONE_ID,
    SUCCESS,
    graph_for,
    poll_until,
    raw_server,
    read_request,
    response_bytes,
    settings,
)

ANSWER = json.dumps(SUCCESS).encode()


class Connections:
    """A server handler that answers every request on a connection with ``answer`` and counts connections."""

    def __init__(self, answer: Callable[[int], bytes] | None = None) -> None:
        self.opened = 0
        self.requests = 0
        self._answer = answer or (lambda _: response_bytes(200, ANSWER))

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            self.requests += 1
            writer.write(self._answer(self.requests))
            await writer.drain()


def lean_client(url: str, *, connections: int = 4, keepalive: float = 4.0, timeout: float = 2.0) -> httpx.AsyncClient:
    transport = LeanTransport(limits=httpx.Limits(max_connections=connections, keepalive_expiry=keepalive))
    return make_http_client(settings(url, timeout=timeout), transport=transport)


async def test_sends_reuse_one_keep_alive_connection() -> None:
    server = Connections()
    async with raw_server(server) as url, lean_client(url) as http:
        graph = graph_for(http, url)
        for n in range(3):
            assert (await graph.send_text(to="+1", text="x", callback_data=str(n))).wamid == "wamid.REAL"
    assert (server.opened, server.requests) == (1, 3)


async def test_an_answer_saying_connection_close_is_not_reused() -> None:
    server = Connections(lambda _: response_bytes(200, ANSWER, extra="Connection: close\r\n"))
    async with raw_server(server) as url, lean_client(url) as http:
        graph = graph_for(http, url)
        for n in range(2):
            assert (await graph.send_text(to="+1", text="x", callback_data=str(n))).wamid == "wamid.REAL"
    assert server.opened == 2


async def test_a_connection_idle_past_the_keep_alive_expiry_is_not_reused() -> None:
    server = Connections()
    async with raw_server(server) as url, lean_client(url, keepalive=0.0) as http:
        graph = graph_for(http, url)
        for n in range(2):
            await graph.send_text(to="+1", text="x", callback_data=str(n))
    assert server.opened == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """Reusing it would write a POST into a closing socket: an ambiguous send for nothing."""
    closed = asyncio.Event()

    async def answer_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response_bytes(200, ANSWER))
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    async with raw_server(answer_then_hang_up) as url, lean_client(url) as http:
        graph = graph_for(http, url)
        await graph.send_text(to="+1", text="x", callback_data="1")
        await closed.wait()
        transport = http._transport
        assert isinstance(transport, LeanTransport)
        await poll_until(lambda: all(c.closed for conns in transport._idle.values() for c in conns))
        assert (await graph.send_text(to="+1", text="x", callback_data="2")).wamid == "wamid.REAL"


async def test_a_chunked_answer_is_read_whole() -> None:
    half = len(ANSWER) // 2
    chunks = f"{half:x}\r\n".encode() + ANSWER[:half] + f"\r\n{len(ANSWER) - half:x}\r\n".encode()
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + ANSWER[half:]
        + b"\r\n0\r\n\r\n"
    )
    async with raw_server(Connections(lambda _: chunked)) as url, lean_client(url) as http:
        assert (await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")).wamid == "wamid.REAL"


async def test_an_answer_ended_by_closing_the_connection_is_read_whole() -> None:
    async def close_delimited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + ANSWER)
        await writer.drain()

    async with raw_server(close_delimited) as url, lean_client(url) as http:
        assert (await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")).wamid == "wamid.REAL"


async def test_an_interim_answer_is_skipped() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + response_bytes(200, ANSWER)
    async with raw_server(Connections(lambda _: interim)) as url, lean_client(url) as http:
        assert (await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")).wamid == "wamid.REAL"


async def test_with_one_connection_concurrent_sends_take_turns() -> None:
    server = Connections()
    async with raw_server(server) as url, lean_client(url, connections=1) as http:
        graph = graph_for(http, url)
        results = await asyncio.gather(*(graph.send_text(to="+1", text="x", callback_data=str(n)) for n in range(5)))
    assert [r.wamid for r in results] == ["wamid.REAL"] * 5
    assert (server.opened, server.requests) == (1, 5)


async def test_a_send_cut_short_by_its_deadline_gives_its_connection_back() -> None:
    """The first connection never answers; the send is cancelled at its deadline (ambiguous) and its
    connection closed, so the single slot of the pool is free for the next send, which succeeds."""
    seen = 0

    async def first_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            await read_request(reader)
            await asyncio.sleep(30)
            return
        await Connections()(reader, writer)

    async with raw_server(first_silent) as url, lean_client(url, connections=1) as http:
        hurried = GraphClient(http, api_url=url, phone_number_id=PHONE_ID, access_token="t", template=None,
                              deadline=0.3)  # fmt: skip
        with pytest.raises(AmbiguousError):
            await hurried.send_text(to="+1", text="x", callback_data="1")
        assert (await graph_for(http, url).send_text(to="+1", text="x", callback_data="2")).wamid == "wamid.REAL"
        transport = http._transport
        assert isinstance(transport, LeanTransport)
        assert transport._open == 1  # the silent one was closed and not counted any more
    assert seen == 2


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    server = Connections()
    async with raw_server(server) as url, lean_client(url) as http:
        graph = GraphClient(http, api_url=url, phone_number_id=PHONE_ID, access_token="tok\r\nX-Evil: 1",
                            template=None)  # fmt: skip
        with pytest.raises(SendingPausedError):
            await graph.send_text(to="+1", text="x", callback_data="1")
    assert server.opened == 0


async def test_only_http_and_https_urls_are_used() -> None:
    async with lean_client("ftp://127.0.0.1/v23.0") as http:
        with pytest.raises(SendingPausedError):
            await graph_for(http, "ftp://127.0.0.1/v23.0").send_text(to="+1", text="x", callback_data="1")


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself, and its key (PEM files in ``directory``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jem-bot test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@asynccontextmanager
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    cert_file, key_file = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server = await asyncio.start_server(Connections(), "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}/v23.0", cert_file
    finally:
        server.close()
        await server.wait_closed()


async def test_tls_with_a_trusted_certificate(tmp_path: Path) -> None:
    async with tls_server(tmp_path) as (url, cert_file):
        transport = LeanTransport(verify=ssl.create_default_context(cafile=str(cert_file)))
        async with GraphHttpClient(transport=transport, timeout=httpx.Timeout(2.0)) as http:
            assert (await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")).wamid == "wamid.REAL"


async def test_an_untrusted_certificate_fails_the_handshake_and_nothing_is_sent(tmp_path: Path) -> None:
    async with tls_server(tmp_path) as (url, _), lean_client(url) as http:
        with pytest.raises(NotSentError) as caught:
            await graph_for(http, url).send_text(to="+1", text="x", callback_data="1")
    assert caught.value.scope == "sender"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
