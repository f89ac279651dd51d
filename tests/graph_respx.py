"""respx for Graph calls made through the production transport (`make_http_client`).

respx's default mocker patches httpcore, which `bot.graph.transport.AiohttpTransport` never touches, and
``using="httpx"`` patches *every* AsyncClient, including Litestar's AsyncTestClient. This mocker patches
only the Graph transport, so ``respx.mock(using="graph")`` (or the ``graph_respx`` fixture in conftest)
intercepts Graph sends and nothing else. Importing this module registers it with respx.
"""

from __future__ import annotations

from typing import Any

import httpx
from respx.mocks import AbstractRequestMocker

GRAPH_MOCKER = "graph"


class GraphTransportMocker(AbstractRequestMocker):
    name = GRAPH_MOCKER
    targets = ["bot.graph.transport.AiohttpTransport"]  # noqa: RUF012 - respx's class-level contract
    target_methods = ["handle_async_request"]  # noqa: RUF012

    @classmethod
    def to_httpx_request(cls, **kwargs: Any) -> httpx.Request:
        request: httpx.Request = kwargs["request"]
        return request

    @classmethod
    def from_sync_httpx_response(cls, httpx_response: httpx.Response, target: Any, **kwargs: Any) -> httpx.Response:
        return httpx_response

    @classmethod
    async def from_async_httpx_response(
        cls, httpx_response: httpx.Response, target: Any, **kwargs: Any
    ) -> httpx.Response:
        return httpx_response
