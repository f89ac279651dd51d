"""Every Graph failure maps to the class that says whether Meta can have accepted the message."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from bot.graph.client import GraphClient, SendResult
from bot.graph.errors import (
    OUTSIDE_WINDOW_TITLE,
    AmbiguousError,
    GraphError,
    NotSentError,
    RejectedError,
    SendingPausedError,
    classify_error_envelope,
    parse_retry_after,
)

API_URL = "https://graph.test/v23.0"
PHONE_ID = "100000000000001"


def envelope(code: int, *, details: str | None = None, message: str = "(#x) something") -> dict[str, object]:
    error: dict[str, object] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbC"}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


def graph_with(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[GraphClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    graph = GraphClient(http, api_url=API_URL, phone_number_id=PHONE_ID, access_token="tok", template=None)
    return graph, http


async def send_expecting(response: httpx.Response | Exception) -> GraphError:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    graph, http = graph_with(handler)
    async with http:
        with pytest.raises(GraphError) as caught:
            await graph.send_text(to="+27820000001", text="hi", callback_data="1")
    return caught.value


# --- throttling: provably not sent, with a scope ------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "scope"),
    [(130429, "sender"), (4, "sender"), (80007, "sender"), (131056, "recipient"), (131057, "sender")],
)
@pytest.mark.parametrize("status", [400, 429, 500, 503])
async def test_throttling_codes_are_not_sent_with_their_scope_whatever_the_http_status(
    code: int, scope: str, status: int
) -> None:
    error = await send_expecting(httpx.Response(status, json=envelope(code, details="slow down")))
    assert type(error) is NotSentError
    assert error.scope == scope
    assert error.code == code
    assert error.http_status == status
    assert error.title == "slow down"
    assert error.outcome == "retry"


async def test_retry_after_header_is_carried_on_not_sent_errors() -> None:
    error = await send_expecting(httpx.Response(429, json=envelope(130429), headers={"Retry-After": "7"}))
    assert isinstance(error, NotSentError)
    assert error.retry_after == 7.0


async def test_retry_after_is_none_when_absent() -> None:
    error = await send_expecting(httpx.Response(400, json=envelope(131056)))
    assert isinstance(error, NotSentError)
    assert error.retry_after is None


@pytest.mark.parametrize(("raw", "expected"), [("3", 3.0), (" 1.5 ", 1.5), ("-1", None), ("soon", None), (None, None)])
def test_parse_retry_after_accepts_only_non_negative_seconds(raw: str | None, expected: float | None) -> None:
    assert parse_retry_after(raw) == expected


# --- our problem: pause everyone -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [0, 190, 3, 10, 200, 250, 299, 131005, 131031, 131042, 133010, 368, 131048, 131064, 132001, 132015, 132016],
)
async def test_auth_config_account_and_template_codes_pause_sending(code: int) -> None:
    error = await send_expecting(httpx.Response(400, json=envelope(code)))
    assert type(error) is SendingPausedError
    assert error.code == code
    assert error.outcome == "paused"


async def test_expired_token_on_401_pauses_sending() -> None:
    error = await send_expecting(httpx.Response(401, json=envelope(190, message="Error validating access token")))
    assert isinstance(error, SendingPausedError)
    assert error.title == "Error validating access token"


# --- definitive rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [131026, 131047, 131051, 100, 131008, 131009, 132000, 132005, 132007, 132012, 130472, 131049, 131050, 999999],
)
async def test_recipient_and_payload_codes_are_rejected(code: int) -> None:
    error = await send_expecting(httpx.Response(400, json=envelope(code, details=f"details for {code}")))
    assert type(error) is RejectedError
    assert error.code == code
    # 131047's own words ("Re-engagement message") do not say what to do: ours do.
    assert error.title == (OUTSIDE_WINDOW_TITLE if code == 131047 else f"details for {code}")
    assert error.fbtrace_id == "AbC"
    assert error.outcome == "failed"


async def test_outside_the_window_says_a_template_is_needed() -> None:
    error = await send_expecting(httpx.Response(400, json=envelope(131047, details="Re-engagement message")))
    assert type(error) is RejectedError
    assert "24-hour window" in error.title
    assert "template" in error.title


async def test_rejection_title_falls_back_to_message_without_details() -> None:
    error = await send_expecting(httpx.Response(400, json=envelope(131026, message="Message undeliverable")))
    assert isinstance(error, RejectedError)
    assert error.title == "Message undeliverable"


async def test_string_codes_are_understood() -> None:
    error = await send_expecting(httpx.Response(400, json={"error": {"code": "131026", "message": "nope"}}))
    assert isinstance(error, RejectedError)
    assert error.code == 131026


# --- ambiguous: maybe accepted -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_without_envelope_is_ambiguous(status: int) -> None:
    error = await send_expecting(httpx.Response(status, text="<html>Bad gateway</html>"))
    assert type(error) is AmbiguousError
    assert error.http_status == status
    assert error.code is None
    assert error.outcome == "unknown"


@pytest.mark.parametrize("code", [131000, 131016, 133004, 1, 2, 131026])
async def test_5xx_with_a_non_throttling_envelope_is_ambiguous(code: int) -> None:
    error = await send_expecting(httpx.Response(500, json=envelope(code)))
    assert type(error) is AmbiguousError
    assert error.code == code


async def test_unknown_error_131000_is_ambiguous_even_on_4xx() -> None:
    error = await send_expecting(httpx.Response(400, json=envelope(131000)))
    assert type(error) is AmbiguousError


@pytest.mark.parametrize("code", [1, 2, 131016, 133004])
async def test_service_unavailable_codes_on_4xx_are_not_sent_sender_wide(code: int) -> None:
    error = await send_expecting(httpx.Response(400, json=envelope(code)))
    assert type(error) is NotSentError
    assert error.scope == "sender"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(429, text="Too Many Requests"),
        httpx.Response(429, content=b""),
        httpx.Response(429, json={"error": {"message": "slow down"}}),
        httpx.Response(429, json=envelope(999999)),
    ],
)
async def test_http_429_without_a_known_graph_code_backs_the_whole_sender_off(response: httpx.Response) -> None:
    """A 429 from Graph or a proxy in front of it was refused for rate: not accepted, and the sender's fault."""
    error = await send_expecting(response)
    assert type(error) is NotSentError
    assert error.scope == "sender"
    assert error.http_status == 429


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(403, text="<html><body>Forbidden by proxy</body></html>"),
        httpx.Response(400, json={"unexpected": True}),
        httpx.Response(404, content=b""),
        httpx.Response(400, json={"error": {"message": "no code"}}),
        httpx.Response(400, json=["not", "an", "object"]),
    ],
)
async def test_4xx_without_a_parsable_envelope_is_ambiguous(response: httpx.Response) -> None:
    error = await send_expecting(response)
    assert type(error) is AmbiguousError
    assert error.http_status == response.status_code


@pytest.mark.parametrize(
    "body",
    [
        {"messaging_product": "whatsapp", "contacts": [{"input": "+27820000001", "wa_id": "27820000001"}]},
        {"messages": []},
        {"messages": [{"id": ""}]},
        {"messages": [{"id": 42}]},
        {},
    ],
)
async def test_2xx_without_a_message_id_is_ambiguous(body: dict[str, object]) -> None:
    error = await send_expecting(httpx.Response(200, json=body))
    assert type(error) is AmbiguousError
    assert error.http_status == 200


async def test_2xx_with_a_non_json_body_is_ambiguous() -> None:
    error = await send_expecting(httpx.Response(200, text="OK"))
    assert type(error) is AmbiguousError


# --- transport failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow connect")])
async def test_graph_unreachable_is_not_sent_and_backs_the_whole_sender_off(exc: Exception) -> None:
    """Connection refused, DNS and TLS failures, connect timeouts: nothing left, and nothing from this number
    will reach Graph either, so it is the sender that waits, not the recipient."""
    error = await send_expecting(exc)
    assert type(error) is NotSentError
    assert error.scope == "sender"
    assert error.code is None
    assert error.__cause__ is exc


async def test_no_free_connection_in_our_own_pool_is_not_sent_for_this_attempt_only() -> None:
    exc = httpx.PoolTimeout("pool full")
    error = await send_expecting(exc)
    assert type(error) is NotSentError
    assert error.scope == "attempt"
    assert error.__cause__ is exc


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("no answer"),
        httpx.WriteTimeout("stalled write"),
        httpx.ReadError("reset"),
        httpx.WriteError("broken pipe"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
async def test_failures_after_the_request_may_have_left_are_ambiguous(exc: Exception) -> None:
    error = await send_expecting(exc)
    assert type(error) is AmbiguousError
    assert error.__cause__ is exc


async def test_unsupported_protocol_is_a_config_problem_that_pauses_sending() -> None:
    error = await send_expecting(httpx.UnsupportedProtocol("Request URL is missing an 'http://' or 'https://'"))
    assert type(error) is SendingPausedError


# --- the hierarchy itself ----------------------------------------------------------------------------------


def test_every_class_is_a_graph_error_and_only_not_sent_has_a_scope() -> None:
    for cls in (NotSentError, RejectedError, SendingPausedError, AmbiguousError):
        assert issubclass(cls, GraphError)
    error = NotSentError("x", scope="recipient", retry_after=2.0, code=131056)
    assert (error.scope, error.retry_after, error.code) == ("recipient", 2.0, 131056)
    assert not hasattr(RejectedError("x"), "scope")


def test_str_shows_code_title_and_status_without_secrets() -> None:
    error = classify_error_envelope(400, envelope(131026, details="Message undeliverable"))
    assert str(error) == "(#131026) Message undeliverable [HTTP 400]"


def test_long_titles_are_truncated() -> None:
    error = classify_error_envelope(400, envelope(131026, details="x" * 5000))
    assert len(error.title) == 300


async def test_a_success_is_not_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"messages": [{"id": "wamid.OK"}]})

    graph, http = graph_with(handler)
    async with http:
        assert await graph.send_text(to="+1", text="x", callback_data="1") == SendResult("wamid.OK", None, None)
