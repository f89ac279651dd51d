"""BotApi over httpx.MockTransport: requests it makes, Structs it returns, errors it raises; CLI config."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bot import contracts
from console.__main__ import ConfigError, main, resolve
from console.api import ApiError, ApiUnreachable, BotApi, count_audience

ANNOUNCEMENT = {
    "id": 7, "message": "hi", "send_time": "2026-12-01T07:00:00Z", "status": "scheduled",
    "audience": {"all": True}, "created_at": "2026-11-28T12:00:00Z", "dispatched_at": None,
    "completed_at": None, "counts": {"total": 3, "pending": 3},
}  # fmt: skip


def api_with(handler: httpx.MockTransport) -> BotApi:
    return BotApi(
        httpx.AsyncClient(base_url="http://bot.test", transport=handler, headers={"Authorization": "Bearer t"})
    )


async def test_create_sends_idempotency_key_and_offset_time() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=ANNOUNCEMENT)

    api = api_with(httpx.MockTransport(handle))
    when = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    created = await api.create_announcement(
        "hi", send_time=when, audience=contracts.Audience(tags=["a"]), idempotency_key="k-1"
    )
    assert isinstance(created, contracts.Announcement)
    assert created.id == 7
    assert created.counts.total == 3
    (request,) = seen
    assert request.headers["Idempotency-Key"] == "k-1"
    assert request.headers["Authorization"] == "Bearer t"
    assert json.loads(request.content) == {
        "message": "hi", "send_time": "2026-12-01T09:00:00+00:00", "audience": {"tags": ["a"]},
    }  # fmt: skip


async def test_problem_json_becomes_api_error_with_fields() -> None:
    problem = {"title": "Unprocessable Entity", "status": 422, "detail": "bad", "errors": [
        {"field": "message", "message": "too long"}]}  # fmt: skip
    api = api_with(httpx.MockTransport(lambda r: httpx.Response(422, json=problem)))
    with pytest.raises(ApiError) as info:
        await api.create_announcement("x", send_time=None, audience=None, idempotency_key="k")
    assert info.value.status == 422
    assert info.value.field_errors == {"message": "too long"}


async def test_non_json_error_still_becomes_api_error() -> None:
    api = api_with(httpx.MockTransport(lambda r: httpx.Response(502, text="Bad gateway")))
    with pytest.raises(ApiError) as info:
        await api.me()
    assert info.value.status == 502
    assert "Bad gateway" in info.value.detail


async def test_transport_failure_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    api = api_with(httpx.MockTransport(refuse))
    with pytest.raises(ApiUnreachable):
        await api.list_announcements()


async def test_filters_become_query_parameters() -> None:
    seen: list[httpx.URL] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        if request.url.path == "/employees":
            return httpx.Response(200, json={"items": [], "next_cursor": None, "total": 5})
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    api = api_with(httpx.MockTransport(handle))
    assert await count_audience(api, contracts.Audience(tags=["a", "b"])) == 5
    assert await count_audience(api, contracts.Audience(employee_ids=[1, 2, 2])) == 2
    await api.list_deliveries(3, status="failed", q="ann", acknowledged=False)
    assert seen[0].params.get_list("tag") == ["a", "b"]
    assert seen[0].params["opted_out"] == "false"
    assert seen[0].params["limit"] == "1"
    assert seen[1].path == "/announcements/3/deliveries"
    assert dict(seen[1].params) == {"limit": "200", "status": "failed", "q": "ann", "acknowledged": "false"}


async def test_sender_decodes_and_a_server_without_it_is_a_404() -> None:
    """GET /sender becomes contracts.Sender with its times; a server older than /sender answers ApiError 404."""
    body = {
        "own": True, "phone_number_id": "100000000000002", "waba_id": "200000000000002", "rate": 80.0,
        "access_token_hint": "…abcd", "paused_until": "2026-11-28T12:05:00Z",
        "pause_reason": "Error validating access token", "backoff_until": None, "backoff_reason": None,
    }  # fmt: skip
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body)

    sender = await api_with(httpx.MockTransport(handle)).sender()
    assert isinstance(sender, contracts.Sender)
    assert (sender.own, sender.phone_number_id, sender.rate) == (True, "100000000000002", 80.0)
    assert sender.paused_until == datetime(2026, 11, 28, 12, 5, tzinfo=UTC)
    assert (seen[0].method, seen[0].url.path) == ("GET", "/sender")
    old = api_with(httpx.MockTransport(lambda r: httpx.Response(404, json={"status_code": 404, "detail": "Not Found"})))
    with pytest.raises(ApiError) as info:
        await old.sender()
    assert info.value.status == 404


def ns(**kw: str | None) -> argparse.Namespace:
    return argparse.Namespace(api_url=kw.get("api_url"), token=kw.get("token"))


def test_config_precedence(tmp_path: Path) -> None:
    (tmp_path / "demo.json").write_text(json.dumps({"api_url": "http://demo:1", "token": "demo-t"}))
    env = {"JEM_DATA_DIR": str(tmp_path)}
    assert resolve(ns(), env) == ("http://demo:1", "demo-t")
    assert resolve(ns(), {**env, "JEM_API_URL": "http://env:2/", "JEM_API_TOKEN": "env-t"}) == ("http://env:2", "env-t")
    assert resolve(ns(api_url="http://flag:3", token="flag-t"), env) == ("http://flag:3", "flag-t")
    assert resolve(ns(token="t"), {"JEM_DATA_DIR": str(tmp_path / "none")}) == ("http://127.0.0.1:8000", "t")


def test_no_token_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JEM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("JEM_API_TOKEN", raising=False)
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no API token" in err
    with pytest.raises(ConfigError):
        resolve(ns(api_url="ftp://x", token="t"), {})
