"""A TCP proxy in front of PostgreSQL that can cut the database off: every connection dropped, new ones refused.

The chaos suite points the workers' DATABASE_URL at it (plain TCP on 127.0.0.1) and forwards to the real server,
on TCP or on the embedded server's Unix socket. `cut(seconds)` aborts both sides of every open connection (an RST
to the client, the server's backend sees its socket close and rolls back), stops listening and holds the port
without listening, so a new connection is refused, as if the database host had vanished; then it listens again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

CHUNK = 65536


@dataclass(frozen=True)
class Upstream:
    """Where the real server is: a TCP address, or a Unix socket path."""

    host: str | None = None
    port: int = 5432
    unix_path: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Upstream:
        """The server of a `postgresql[+driver]://` URL; `?host=/dir` (libpq's form) is the socket
        `/dir/.s.PGSQL.<port>`."""
        parsed = make_url(url)
        port = parsed.port or 5432
        query_host = parsed.query.get("host")
        host = query_host if isinstance(query_host, str) else (query_host[0] if query_host else None)
        host = host or parsed.host or "/tmp"  # libpq's default socket directory
        if host.startswith("/"):
            return cls(unix_path=f"{host}/.s.PGSQL.{port}", port=port)
        return cls(host=host, port=port)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix_path is not None:
            return await asyncio.open_unix_connection(self.unix_path)
        return await asyncio.open_connection(self.host, self.port)


def proxied_url(url: str, port: int) -> str:
    """The same database and credentials, through the proxy: `postgresql://user[:pw]@127.0.0.1:<port>/<db>`."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql", host="127.0.0.1", port=port, query={}).render_as_string(
        hide_password=False
    )


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort a connection; on TCP with SO_LINGER 0, so the peer gets an RST, not an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass
class CutReport:
    connections_cut: int  # open connections aborted when the cut began
    refused: int = 0  # connection attempts refused while it lasted (counted by probing: see `cut`)


class PgProxy:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.port = 0
        self.connections = 0  # accepted over the proxy's life
        self.upstream_failures = 0
        self.cuts: list[CutReport] = []
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._held: socket.socket | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        self.connections += 1
        self._links.add(link)
        try:
            try:
                up_reader, up_writer = await self.upstream.connect()
            except OSError:
                self.upstream_failures += 1
                _reset(writer)
                return
            link.server = up_writer
            link.tasks = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            # Either direction ending (EOF, a reset, or a cut) ends the connection.
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            for task in link.tasks:
                task.cancel()
            await asyncio.gather(*link.tasks, return_exceptions=True)
            for side in (writer, link.server):
                if side is not None and not side.transport.is_closing():
                    side.transport.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        if not writer.transport.is_closing():
            with contextlib.suppress(OSError):
                writer.write_eof()

    async def cut(self, seconds: float) -> CutReport:
        """Drop every connection (both sides), refuse new ones for ``seconds``, then listen again on the same port."""
        assert self._server is not None
        report = CutReport(connections_cut=0)
        self.cuts.append(report)
        self._server.close()  # the listening socket closes at once; accepted connections are ours to drop
        for link in list(self._links):
            report.connections_cut += 1
            _reset(link.client)
            if link.server is not None:
                _reset(link.server)
        self._held = await _hold(self.port)
        loop = asyncio.get_running_loop()
        ends = loop.time() + seconds
        # Probe our own port while the cut lasts: proves new connections really are refused (the workers retry
        # too, but their attempts are not visible from here).
        while (left := ends - loop.time()) > 0:
            try:
                _, probe = await asyncio.open_connection("127.0.0.1", self.port)
            except ConnectionRefusedError:
                report.refused += 1
            else:  # the port took a connection during the cut: the fault is not what it claims to be
                probe.transport.abort()
                raise AssertionError(f"the proxy's port {self.port} accepted a connection during a cut")
            await asyncio.sleep(min(0.25, left))
        held, self._held = self._held, None
        self._server = await asyncio.start_server(self._serve, sock=held)
        return report

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        if self._held is not None:
            self._held.close()
        for link in list(self._links):
            _reset(link.client)
            if link.server is not None:
                _reset(link.server)
        for _ in range(100):  # let the connection handlers see their sockets go
            if not self._links:
                break
            await asyncio.sleep(0.01)


async def _hold(port: int) -> socket.socket:
    """Bind (without listening) the port just closed: connections are refused as if nothing were there, yet no
    other process can take the port before the proxy listens again (as bot/simulator/outage.py does)."""
    for _ in range(500):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return sock
        except OSError:
            sock.close()
            await asyncio.sleep(0.01)
    raise OSError(f"127.0.0.1:{port} is still in use")
