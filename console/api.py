"""BotApi: the console's only way to reach the service, over its REST API (docs/api.md).

Every method returns `bot.contracts` Structs. Failures become one of two exceptions so the UI has a single
place to explain them: `ApiError` (the server answered with a problem document) and `ApiUnreachable`
(no answer at all: refused, timed out, DNS...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import msgspec

from bot import contracts
from console.export import save_stream

T = TypeVar("T")

_Params = Mapping[str, str | int | Sequence[str]]


class ApiError(Exception):
    """The API answered with an error status (RFC 9457 problem details)."""

    def __init__(self, status: int, title: str, detail: str, field_errors: dict[str, str] | None = None) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.field_errors: dict[str, str] = field_errors or {}
        super().__init__(f"{status} {title}: {detail}")


class ApiUnreachable(Exception):
    """The API could not be reached (connection refused, timeout, network error)."""


class Api(Protocol):
    """What the console needs from the service; `BotApi` is the real one, tests pass an in-memory fake."""

    base_url: str

    async def me(self) -> contracts.Me: ...

    async def sender(self) -> contracts.Sender: ...

    async def list_announcements(
        self, *, status: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> contracts.Page[contracts.Announcement]: ...

    async def get_announcement(self, announcement_id: int) -> contracts.Announcement: ...

    async def list_deliveries(
        self,
        announcement_id: int,
        *,
        status: str | None = None,
        q: str | None = None,
        acknowledged: bool | None = None,
        cursor: str | None = None,
        limit: int = 200,
    ) -> contracts.Page[contracts.Delivery]: ...

    async def create_announcement(
        self,
        message: str | None,
        *,
        send_time: datetime | None,
        audience: contracts.Audience | None,
        idempotency_key: str,
        template: contracts.TemplateUse | None = None,
    ) -> contracts.Announcement: ...

    async def cancel_announcement(self, announcement_id: int) -> contracts.Announcement: ...

    async def resend_unknown(self, announcement_id: int) -> contracts.ResendResult: ...

    async def timeline(self, announcement_id: int, *, bucket: str = "minute") -> contracts.Timeline: ...

    async def get_employee(self, employee_id: int) -> contracts.Employee: ...

    async def list_employees(
        self,
        *,
        tags: Sequence[str] = (),
        q: str | None = None,
        opted_out: bool | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> contracts.TotalPage[contracts.Employee]: ...

    async def list_messages(
        self,
        *,
        cursor: str | None = None,
        limit: int = 50,
        employee_id: int | None = None,
        acknowledgements: bool | None = None,
    ) -> contracts.Page[contracts.InboundMessage]: ...

    async def conversation(
        self, employee_id: int, *, cursor: str | None = None, limit: int = 200
    ) -> contracts.Conversation: ...

    async def send_message(self, employee_id: int, text: str, *, idempotency_key: str) -> contracts.Reply: ...

    async def reminder_audience(self, announcement_id: int) -> int: ...

    async def remind(
        self, announcement_id: int, *, message: str | None = None, send_time: datetime | None = None
    ) -> contracts.Announcement: ...

    async def export_deliveries(self, announcement_id: int, destination: Path, *, full_phones: bool = False) -> int: ...

    async def list_templates(self, *, all_statuses: bool = False) -> contracts.Page[contracts.Template]: ...

    async def sync_templates(self) -> contracts.SyncResult: ...

    async def upload_media(self, filename: str, content: bytes) -> contracts.Media: ...

    async def aclose(self) -> None: ...


async def count_audience(api: Api, audience: contracts.Audience) -> int:
    """How many employees an announcement to this audience would reach (active and not opted out)."""
    if audience.employee_ids is not None:
        return len(set(audience.employee_ids))
    page = await api.list_employees(tags=audience.tags or (), opted_out=False, limit=1)
    return page.total


class BotApi:
    """Async client for the jem-bot REST API over an injected `httpx.AsyncClient` (base URL + bearer token)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self.base_url = str(client.base_url).rstrip("/")

    @classmethod
    def connect(cls, base_url: str, token: str, *, timeout: float = 10.0) -> BotApi:
        """Build a BotApi with its own client for `base_url`, authenticating with `token`."""
        client = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(timeout)
        )
        return cls(client)

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        await self._client.aclose()

    # --- transport -------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        type_: type[T],
        *,
        params: _Params | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes]] | None = None,
        time_limit: httpx.Timeout | None = None,
    ) -> T:
        content = msgspec.json.encode(body) if body is not None else None
        hdrs = dict(headers or {})
        if content is not None:
            hdrs["Content-Type"] = "application/json"
        try:
            response = await self._client.request(
                method,
                path,
                params=params,
                content=content,
                headers=hdrs,
                files=files,
                # The client's own timeout, unless the call asks for a longer one (an upload).
                timeout=time_limit if time_limit is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            # Everything below HTTP (refused, reset, timeouts) means "no answer": the caller may retry.
            raise ApiUnreachable(f"{self.base_url} is unreachable ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise _problem(response)
        try:
            return msgspec.json.decode(response.content, type=type_)
        except msgspec.ValidationError as exc:
            raise ApiError(response.status_code, "Unexpected response", f"{method} {path}: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise ApiError(response.status_code, "Unexpected response", f"{method} {path} did not answer JSON") from exc

    # --- account ----------------------------------------------------------------------------------------

    async def me(self) -> contracts.Me:
        """The employer this token belongs to."""
        return await self._request("GET", "/me", contracts.Me)

    async def sender(self) -> contracts.Sender:
        """The WhatsApp number this employer's announcements go out from, and whether it is paused or backed off.

        Servers older than GET /sender answer 404 (ApiError); the caller decides what that means.
        """
        return await self._request("GET", "/sender", contracts.Sender)

    # --- announcements ----------------------------------------------------------------------------------

    async def list_announcements(
        self, *, status: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> contracts.Page[contracts.Announcement]:
        """One page of announcements, newest first."""
        params: dict[str, str | int] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        return await self._request("GET", "/announcements", contracts.Page[contracts.Announcement], params=params)

    async def get_announcement(self, announcement_id: int) -> contracts.Announcement:
        """One announcement with its counts."""
        return await self._request("GET", f"/announcements/{announcement_id}", contracts.Announcement)

    async def list_deliveries(
        self,
        announcement_id: int,
        *,
        status: str | None = None,
        q: str | None = None,
        acknowledged: bool | None = None,
        cursor: str | None = None,
        limit: int = 200,
    ) -> contracts.Page[contracts.Delivery]:
        """One page of an announcement's deliveries (the ledger rows)."""
        params: dict[str, str | int] = {"limit": limit}
        if status:
            params["status"] = status
        if q:
            params["q"] = q
        if acknowledged is not None:
            params["acknowledged"] = "true" if acknowledged else "false"
        if cursor:
            params["cursor"] = cursor
        return await self._request(
            "GET", f"/announcements/{announcement_id}/deliveries", contracts.Page[contracts.Delivery], params=params
        )

    async def create_announcement(
        self,
        message: str | None,
        *,
        send_time: datetime | None,
        audience: contracts.Audience | None,
        idempotency_key: str,
        template: contracts.TemplateUse | None = None,
    ) -> contracts.Announcement:
        """Schedule an announcement of `message` (text) or `template`; the same `idempotency_key` never creates a
        second one."""
        body: dict[str, Any] = {"send_time": send_time.isoformat() if send_time is not None else None}
        # The API takes exactly one of the two; the one left out is not sent at all (null would be "given").
        if message is not None:
            body["message"] = message
        if template is not None:
            body["template"] = template
        if audience is not None:
            body["audience"] = audience
        return await self._request(
            "POST", "/announcements", contracts.Announcement, body=body, headers={"Idempotency-Key": idempotency_key}
        )

    async def cancel_announcement(self, announcement_id: int) -> contracts.Announcement:
        """Cancel a scheduled announcement, or the pending rest of a dispatching one."""
        return await self._request("POST", f"/announcements/{announcement_id}/cancel", contracts.Announcement)

    async def resend_unknown(self, announcement_id: int) -> contracts.ResendResult:
        """Resend deliveries whose outcome is unknown (accepting the duplicate risk)."""
        return await self._request("POST", f"/announcements/{announcement_id}/resend-unknown", contracts.ResendResult)

    async def timeline(self, announcement_id: int, *, bucket: str = "minute") -> contracts.Timeline:
        """Sent, delivered, read and acknowledged per minute or hour (buckets with nothing are left out).

        Servers older than the timeline endpoint answer 404 (ApiError), as for a missing announcement.
        """
        return await self._request(
            "GET", f"/announcements/{announcement_id}/timeline", contracts.Timeline, params={"bucket": bucket}
        )

    # --- employees and inbox ----------------------------------------------------------------------------

    async def get_employee(self, employee_id: int) -> contracts.Employee:
        """One employee (an audience names employees by id; the console shows their names)."""
        return await self._request("GET", f"/employees/{employee_id}", contracts.Employee)

    async def list_employees(
        self,
        *,
        tags: Sequence[str] = (),
        q: str | None = None,
        opted_out: bool | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> contracts.TotalPage[contracts.Employee]:
        """One page of employees plus the total matching."""
        params: dict[str, str | int | Sequence[str]] = {"limit": limit}
        if tags:
            params["tag"] = list(tags)
        if q:
            params["q"] = q
        if opted_out is not None:
            params["opted_out"] = "true" if opted_out else "false"
        if cursor:
            params["cursor"] = cursor
        return await self._request("GET", "/employees", contracts.TotalPage[contracts.Employee], params=params)

    async def list_messages(
        self,
        *,
        cursor: str | None = None,
        limit: int = 50,
        employee_id: int | None = None,
        acknowledgements: bool | None = None,
    ) -> contracts.Page[contracts.InboundMessage]:
        """One page of inbound employee messages, newest first; `acknowledgements=False` leaves those out."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        if employee_id is not None:
            params["employee_id"] = employee_id
        if acknowledgements is not None:
            params["acknowledgements"] = "true" if acknowledgements else "false"
        return await self._request("GET", "/messages", contracts.Page[contracts.InboundMessage], params=params)

    async def conversation(
        self, employee_id: int, *, cursor: str | None = None, limit: int = 200
    ) -> contracts.Conversation:
        """What one employee and the employer wrote each other, oldest first, and whether the window is open."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return await self._request("GET", f"/employees/{employee_id}/messages", contracts.Conversation, params=params)

    async def send_message(self, employee_id: int, text: str, *, idempotency_key: str) -> contracts.Reply:
        """Reply to an employee (202: queued); 409 when their last message is older than 24 hours."""
        return await self._request(
            "POST",
            f"/employees/{employee_id}/messages",
            contracts.Reply,
            body={"text": text},
            headers={"Idempotency-Key": idempotency_key},
        )

    # --- after the send -----------------------------------------------------------------------------------

    async def reminder_audience(self, announcement_id: int) -> int:
        """How many employees a reminder sent now would reach (reached, not acknowledged)."""
        answer = await self._request(
            "GET", f"/announcements/{announcement_id}/reminder-audience", contracts.ReminderAudience
        )
        return answer.count

    async def remind(
        self, announcement_id: int, *, message: str | None = None, send_time: datetime | None = None
    ) -> contracts.Announcement:
        """Schedule a reminder to those reached who have not acknowledged; 409 while the original is unsent.

        What is left out takes the server's default: the original's text after "Reminder: " (or its template), now.
        """
        body: dict[str, Any] = {}
        if message is not None:
            body["message"] = message
        if send_time is not None:
            body["send_time"] = send_time.isoformat()
        return await self._request(
            "POST", f"/announcements/{announcement_id}/remind", contracts.Announcement, body=body
        )

    async def export_deliveries(self, announcement_id: int, destination: Path, *, full_phones: bool = False) -> int:
        """Stream the deliveries CSV into `destination` (never whole in memory); return its row count.

        OSError when the file cannot be written; ApiError / ApiUnreachable as for every call.
        """
        path = f"/announcements/{announcement_id}/deliveries.csv"
        params = {"phones": "full"} if full_phones else None
        try:
            async with self._client.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _problem(response)
                return await save_stream(response.aiter_bytes(), destination)
        except httpx.TransportError as exc:
            # Also a connection lost halfway: save_stream has removed the partial file by then.
            raise ApiUnreachable(f"{self.base_url} is unreachable ({type(exc).__name__})") from exc

    # --- templates and media -------------------------------------------------------------------------------

    async def list_templates(self, *, all_statuses: bool = False) -> contracts.Page[contracts.Template]:
        """The account's templates, one item per translation; approved ones unless `all_statuses`."""
        params: dict[str, str | int] = {"status": "all"} if all_statuses else {}
        return await self._request("GET", "/templates", contracts.Page[contracts.Template], params=params)

    async def sync_templates(self) -> contracts.SyncResult:
        """Read the catalogue from WhatsApp now (409 when WhatsApp refuses or cannot be reached)."""
        return await self._request("POST", "/templates/sync", contracts.SyncResult)

    async def upload_media(self, filename: str, content: bytes) -> contracts.Media:
        """Upload a template header's image, document or video; the server reads its kind from the content."""
        # A 100 MB document over an office uplink takes minutes, not the 10 s every other call gets.
        slow = httpx.Timeout(self._client.timeout.connect, read=300.0, write=300.0, pool=None)
        return await self._request(
            "POST", "/media", contracts.Media, files={"file": (filename, content)}, time_limit=slow
        )


def _problem(response: httpx.Response) -> ApiError:
    """Turn an error response into ApiError, tolerating bodies that are not problem JSON."""
    try:
        problem = msgspec.json.decode(response.content, type=contracts.Problem)
    except (msgspec.ValidationError, msgspec.DecodeError):
        reason = response.reason_phrase or "Error"
        text = response.text.strip()[:200]
        return ApiError(response.status_code, reason, text or reason)
    fields = {e.field: e.message for e in problem.errors or []}
    return ApiError(problem.status or response.status_code, problem.title, problem.detail, fields)
