"""`POST /_simulator/outage`: the simulator drops off the network for a while, then comes back by itself.

`Outage` is what the app knows (is one on, until when); `OutageServer`, the uvicorn server the simulator
runs under, does the unplugging. Relies on uvicorn 0.54 internals: `Server.servers` (the listening
`asyncio.Server`s), `Server.server_state.connections` (open protocols, each with `.transport`),
`Server.lifespan.state` and the keyword arguments `Server.startup` gives `config.http_protocol_class`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

MAX_SECONDS = 3600


class Outage:
    """Kept in the simulator app's state: whether an outage is on and until when."""

    def __init__(self) -> None:
        # Set by OutageServer; None when nothing can unplug the app (e.g. under an in-process test client).
        self.server: OutageServer | None = None
        self.ends_at: float | None = None  # event-loop time; None while the simulator is reachable

    @property
    def active(self) -> bool:
        return self.ends_at is not None

    def request(self, seconds: float) -> bool:
        """Be down until `seconds` from now, or later if one is on; True if this starts a new outage."""
        ends_at = asyncio.get_running_loop().time() + seconds
        if self.ends_at is None:
            self.ends_at = ends_at
            return True
        self.ends_at = max(self.ends_at, ends_at)
        return False


class OutageServer(uvicorn.Server):
    """A uvicorn server that can stop listening (dropping its connections) and listen again on the same port."""

    def __init__(self, config: uvicorn.Config, outage: Outage) -> None:
        super().__init__(config)
        self.outage = outage
        outage.server = self
        self._outage_task: asyncio.Task[None] | None = None

    async def start_outage(self) -> None:
        # Called once the answer to the POST has been written: the outage must not swallow its own answer.
        self._outage_task = asyncio.create_task(self._outage())

    async def _outage(self) -> None:
        loop = asyncio.get_running_loop()
        addresses = [(sock.family, sock.getsockname()) for server in self.servers for sock in server.sockets]
        log.info("simulator outage: refusing connections on %s", [address for _, address in addresses])
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            # abort, not close: like a crashed API, nothing more is read or flushed and the client sees the
            # connection drop. The POST's own answer is already with the kernel (asyncio and uvloop both
            # write at once when nothing is queued).
            connection.transport.abort()
        held: list[socket.socket] = []
        listening = False
        try:
            for family, address in addresses:
                held.append(await _hold(family, address))
            # A second call may have moved the end later while we slept: look again.
            while (left := (self.outage.ends_at or 0.0) - loop.time()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(left)
            self.servers = [await self._listen(sock) for sock in held]
            listening = True
            log.info("simulator outage over: listening again on %s", [address for _, address in addresses])
        except OSError:
            log.exception("the simulator could not listen again on %s", addresses)
        finally:
            self.outage.ends_at = None
            if not listening:  # failed, or cancelled by shutdown during the outage
                for sock in held:
                    sock.close()

    async def _listen(self, sock: socket.socket) -> asyncio.Server:
        def protocol() -> asyncio.Protocol:
            # The same factory Server.startup builds, so new connections share this server's state.
            return self.config.http_protocol_class(  # type: ignore[call-arg]
                config=self.config, server_state=self.server_state, app_state=self.lifespan.state
            )

        loop = asyncio.get_running_loop()
        return await loop.create_server(protocol, sock=sock, ssl=self.config.ssl, backlog=self.config.backlog)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._outage_task is not None:
            self._outage_task.cancel()
            await asyncio.wait({self._outage_task})
        await super().shutdown(sockets)


async def _hold(family: int, address: Any) -> socket.socket:
    """Bind (without listening) the address just closed: connections are refused as if nothing were there,
    yet no other process can take the port before the simulator comes back."""
    for _ in range(500):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio's create_server does
        try:
            sock.bind(address)
            return sock
        except OSError:
            sock.close()
            # uvloop closes a listener's socket on its next loop iteration, not in Server.close().
            await asyncio.sleep(0.01)
    raise OSError(f"{address} is still in use")
