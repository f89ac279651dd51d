"""What GraphClient puts on the wire, what it returns, and how make_http_client is configured."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from bot.graph.client import GraphClient, SendResult, make_http_client
from bot.graph.errors import AmbiguousError, NotSentError, RejectedError
from bot.graph.wire import LeanTransport
from bot.metrics import Metrics
from bot.settings import Settings, Template

API_URL = "https://graph.test/v23.0"
PHONE_ID = "100000000000001"
TOKEN = "test-graph-token"
MESSAGES_URL = f"{API_URL}/{PHONE_ID}/messages"
SUCCESS = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": "+27820000001", "wa_id": "27820000001"}],
    "messages": [{"id": "wamid.HBgLMjc4MjAwMDAwMDEVAgARGBI="}],
}


class Recorder:
    """A MockTransport handler that remembers every request and answers with one canned response."""

    def __init__(self, response: httpx.Response | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.response = response or httpx.Response(200, json=SUCCESS)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response

    @property
    def body(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.requests[-1].content)
        return data


def settings() -> Settings:
    return Settings(
        whatsapp_api_url=API_URL, whatsapp_access_token=TOKEN, whatsapp_phone_number_id=PHONE_ID, graph_timeout=7.5
    )


def make_graph(
    http: httpx.AsyncClient, template: Template | None = None, metrics: Metrics | None = None
) -> GraphClient:
    return GraphClient(
        http, api_url=API_URL, phone_number_id=PHONE_ID, access_token=TOKEN, template=template, metrics=metrics
    )


async def test_announcement_without_template_is_a_text_message_with_the_tracker() -> None:
    recorder = Recorder()
    async with make_http_client(settings(), transport=httpx.MockTransport(recorder)) as http:
        await make_graph(http).send_announcement(to="+27820000001", text="Fire drill at 14:00", callback_data="42")
    request = recorder.requests[-1]
    assert request.method == "POST"
    assert str(request.url) == MESSAGES_URL
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert recorder.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+27820000001",
        "type": "text",
        "text": {"preview_url": False, "body": "Fire drill at 14:00"},
        "biz_opaque_callback_data": "42",
    }


async def test_announcement_with_template_puts_the_text_in_the_body_parameter() -> None:
    recorder = Recorder()
    async with make_http_client(settings(), transport=httpx.MockTransport(recorder)) as http:
        graph = make_graph(http, template=Template("staff_notice", "en_US"))
        await graph.send_announcement(to="+27820000001", text="Payday moved to Friday", callback_data="7")
    assert recorder.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+27820000001",
        "type": "template",
        "template": {
            "name": "staff_notice",
            "language": {"code": "en_US"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Payday moved to Friday"}]},
                # The quick-reply payload names the delivery, so a tap without context.id still acknowledges it.
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "0",
                    "parameters": [{"type": "payload", "payload": "ack:7"}],
                },
            ],
        },
        "biz_opaque_callback_data": "7",
    }
    assert str(recorder.requests[-1].url) == MESSAGES_URL


async def test_send_text_is_always_text_even_with_a_template_configured() -> None:
    recorder = Recorder()
    async with make_http_client(settings(), transport=httpx.MockTransport(recorder)) as http:
        graph = make_graph(http, template=Template("staff_notice", "en_US"))
        await graph.send_text(to="+27820000001", text="You are unsubscribed.", callback_data="99")
    assert recorder.body["type"] == "text"
    assert recorder.body["text"] == {"preview_url": False, "body": "You are unsubscribed."}
    assert recorder.body["biz_opaque_callback_data"] == "99"


async def test_recipient_without_plus_gets_one() -> None:
    recorder = Recorder()
    async with make_http_client(settings(), transport=httpx.MockTransport(recorder)) as http:
        await make_graph(http).send_text(to="27820000001", text="x", callback_data="1")
    assert recorder.body["to"] == "+27820000001"


async def test_unicode_text_round_trips() -> None:
    recorder = Recorder()
    async with make_http_client(settings(), transport=httpx.MockTransport(recorder)) as http:
        await make_graph(http).send_text(to="+972500000001", text="שלום 👋 «quotes»", callback_data="1")
    assert recorder.body["text"] == {"preview_url": False, "body": "שלום 👋 «quotes»"}


async def test_success_returns_wamid_and_wa_id() -> None:
    async with make_http_client(settings(), transport=httpx.MockTransport(Recorder())) as http:
        result = await make_graph(http).send_text(to="+27820000001", text="x", callback_data="1")
    assert result == SendResult(wamid="wamid.HBgLMjc4MjAwMDAwMDEVAgARGBI=", wa_id="27820000001", message_status=None)


async def test_success_reports_pacing_status_when_present() -> None:
    body = {**SUCCESS, "messages": [{"id": "wamid.P", "message_status": "held_for_quality_assessment"}]}
    recorder = Recorder(httpx.Response(200, json=body))
    async with make_http_client(settings(), transport=httpx.MockTransport(recorder)) as http:
        result = await make_graph(http).send_announcement(to="+27820000001", text="x", callback_data="1")
    assert result == SendResult("wamid.P", "27820000001", "held_for_quality_assessment")


async def test_latency_is_observed_for_successes_and_failures() -> None:
    metrics = Metrics()
    responses = iter([httpx.Response(200, json=SUCCESS), httpx.Response(400, json={"error": {"code": 130429}})])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(responses)

    async with make_http_client(settings(), transport=httpx.MockTransport(handler)) as http:
        graph = make_graph(http, metrics=metrics)
        await graph.send_text(to="+1", text="x", callback_data="1")
        with pytest.raises(NotSentError):
            await graph.send_text(to="+1", text="x", callback_data="2")
    assert metrics.registry.get_sample_value("jem_graph_request_seconds_count") == 2.0


def test_repr_never_shows_the_token() -> None:
    graph = make_graph(httpx.AsyncClient())
    assert TOKEN not in repr(graph)
    assert MESSAGES_URL in repr(graph)


async def test_make_http_client_sets_explicit_timeouts() -> None:
    async with make_http_client(settings()) as http:
        timeout = http.timeout
    assert timeout.read == 7.5
    for value in (timeout.connect, timeout.write, timeout.pool):
        assert value is not None
        assert 0 < value <= 7.5


async def test_make_http_client_passes_timeouts_to_the_transport() -> None:
    seen: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json=SUCCESS)

    async with make_http_client(settings(), transport=httpx.MockTransport(handler)) as http:
        await make_graph(http).send_text(to="+1", text="x", callback_data="1")
    assert seen[0]["read"] == 7.5
    assert all(seen[0][key] for key in ("connect", "write", "pool"))


async def test_make_http_client_uses_the_fast_transport_by_default() -> None:
    async with make_http_client(settings(), max_in_flight=150) as http:
        transport = http._transport  # the only way to see which transport a client was built with
        assert isinstance(transport, LeanTransport)
        assert transport._max == 150
        assert not http.follow_redirects


async def test_respx_intercepts_requests_through_the_fast_transport() -> None:
    """respx's default mocker patches httpcore, which the Graph transport bypasses; `using="httpx"` works."""
    async with (
        respx.mock(base_url=API_URL, using="httpx", assert_all_called=True) as mock,
        make_http_client(settings()) as http,
    ):
        route = mock.post(f"/{PHONE_ID}/messages").respond(200, json=SUCCESS)
        result = await make_graph(http).send_text(to="+27820000001", text="x", callback_data="5")
    assert route.call_count == 1
    assert json.loads(route.calls.last.request.content)["biz_opaque_callback_data"] == "5"
    assert result.wamid == SUCCESS["messages"][0]["id"]  # type: ignore[index]


async def test_respx_side_effects_map_like_real_transport_errors() -> None:
    async with (
        respx.mock(base_url=API_URL, using="httpx") as mock,
        make_http_client(settings()) as http,
    ):
        mock.post(f"/{PHONE_ID}/messages").mock(side_effect=httpx.ConnectError)
        with pytest.raises(NotSentError) as caught:
            await make_graph(http).send_text(to="+1", text="x", callback_data="1")
    assert caught.value.scope == "sender"


async def test_the_http_client_neither_stores_nor_sends_cookies() -> None:
    sent_cookies: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent_cookies.append(request.headers.get("cookie"))
        return httpx.Response(200, json=SUCCESS, headers={"Set-Cookie": "tracker=abc; Path=/"})

    async with make_http_client(settings(), transport=httpx.MockTransport(handler)) as http:
        graph = make_graph(http)
        await graph.send_text(to="+1", text="x", callback_data="1")
        await graph.send_text(to="+1", text="x", callback_data="2")
        assert not http.cookies
    assert sent_cookies == [None, None]


async def test_graph_respx_fixture_intercepts_the_fast_transport_only(graph_respx: respx.MockRouter) -> None:
    route = graph_respx.post(f"/{PHONE_ID}/messages").respond(200, json=SUCCESS)
    async with make_http_client(settings()) as http:
        result = await make_graph(http).send_text(to="+27820000001", text="x", callback_data="8")
    assert result.wa_id == "27820000001"
    assert json.loads(route.calls.last.request.content)["biz_opaque_callback_data"] == "8"
    # A client on another transport is untouched by this mocker (here: answered by its own MockTransport).
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(204))) as other:
        assert (await other.get("https://elsewhere.test/")).status_code == 204
    assert route.call_count == 1


async def test_graph_respx_side_effects_reach_the_error_mapping(graph_respx: respx.MockRouter) -> None:
    graph_respx.post(f"/{PHONE_ID}/messages").mock(
        side_effect=[httpx.ReadTimeout("lost"), httpx.Response(400, json={"error": {"code": 131026}})]
    )
    async with make_http_client(settings()) as http:
        graph = make_graph(http)
        with pytest.raises(AmbiguousError):
            await graph.send_text(to="+1", text="x", callback_data="1")
        with pytest.raises(RejectedError):
            await graph.send_text(to="+1", text="x", callback_data="2")
