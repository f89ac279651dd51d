"""respx for Graph calls made through the production transport (`make_http_client`).

respx's default mocker patches httpcore, which the Graph transports (`bot.graph.wire.LeanTransport`, in production,
and `bot.graph.transport.AiohttpTransport`) never touch, and
``using="httpx"`` patches *every* AsyncClient, including Litestar's AsyncTestClient. This mocker patches
only the Graph transport, so ``respx.mock(using="graph")`` (or the ``graph_respx`` fixture in conftest)
intercepts Graph sends and nothing else. Importing this module registers it with respx.
"""

from __future__ import annotations

from typing import Any

import httpx
from respx.mocks import AbstractRequestMocker

from bot.graph.transport import RawResponse

GRAPH_MOCKER = "graph"


class GraphTransportMocker(AbstractRequestMocker):
    """Both ways into either transport: `handle_async_request` (httpx objects) and `send_raw`, the Graph client's
    hot path, which takes plain values and answers a `RawResponse`."""

    name = GRAPH_MOCKER
    # respx's class-level contract:
    targets = ["bot.graph.wire.LeanTransport", "bot.graph.transport.AiohttpTransport"]  # noqa: RUF012
    target_methods = ["handle_async_request", "send_raw"]  # noqa: RUF012

    @classmethod
    def to_httpx_request(cls, **kwargs: Any) -> httpx.Request:
        if "request" in kwargs:
            request: httpx.Request = kwargs["request"]
            return request
        return httpx.Request(
            kwargs["method"],
            kwargs["url"],
            headers=list(kwargs["headers"]),
            content=kwargs["content"],
            extensions={"timeout": dict(kwargs["timeouts"])},
        )

    @classmethod
    def from_sync_httpx_response(cls, httpx_response: httpx.Response, target: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the Graph transport is async only")

    @classmethod
    async def from_async_httpx_response(cls, httpx_response: httpx.Response, target: Any, **kwargs: Any) -> Any:
        if "request" in kwargs:
            return httpx_response
        body = await httpx_response.aread()
        return RawResponse(httpx_response.status_code, list(httpx_response.headers.raw), body)
