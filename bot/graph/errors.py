"""What can go wrong when sending through the Graph API, and what each failure means for the ledger.

Modelled on ``httpx/_exceptions.py``: one documented hierarchy, and one place (`classify_error_envelope`,
`map_transport_errors`) that turns lower-level facts into the most specific class at the boundary.

The question every class answers is *"could Meta have accepted this message?"*
(docs/whatsapp.md#no-idempotency-on-sends):

    GraphError
    ├── NotSentError         provably not accepted; safe to send again later (delivery → pending)
    ├── RejectedError        not accepted, and sending again will not help (delivery → failed)
    ├── SendingPausedError   not accepted; a problem with our account/config, not the recipient
    │                        (stop sending for everyone, keep the delivery pending)
    └── AmbiguousError       maybe accepted; never retry automatically (delivery → unknown)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import httpx

Scope = Literal["sender", "recipient", "attempt"]


class GraphError(Exception):
    """A send did not return a message id.

    ``title`` is a short human-readable reason (Meta's ``error_data.details`` or ``message``); it never
    contains the recipient's number or our token.
    """

    outcome: str = "error"

    def __init__(
        self,
        title: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        fbtrace_id: str | None = None,
    ) -> None:
        super().__init__(title)
        self.title = title
        self.code = code
        self.http_status = http_status
        self.fbtrace_id = fbtrace_id

    def __str__(self) -> str:
        prefix = f"(#{self.code}) " if self.code is not None else ""
        status = f" [HTTP {self.http_status}]" if self.http_status is not None else ""
        return f"{prefix}{self.title}{status}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, http_status={self.http_status!r}, title={self.title!r})"


class NotSentError(GraphError):
    """Provably not accepted by Meta (the request never left, or an error envelope says so): retry later.

    ``scope`` says who should back off (docs/architecture.md#fault-model):

    * ``"sender"``: the condition is not this recipient's: throughput/app/WABA throttling, Graph unreachable
      (connection refused, DNS, TLS), account maintenance. Every send from this number waits, and the attempt
      is not counted against the recipient.
    * ``"recipient"``: pair rate 131056. Only this recipient waits (4**x s), and the attempt counts.
    * ``"attempt"``: only this attempt failed on our side (no free connection in our own pool); try again soon,
      without counting it.
    """

    outcome = "retry"

    def __init__(
        self,
        title: str,
        *,
        scope: Scope,
        retry_after: float | None = None,
        code: int | None = None,
        http_status: int | None = None,
        fbtrace_id: str | None = None,
    ) -> None:
        super().__init__(title, code=code, http_status=http_status, fbtrace_id=fbtrace_id)
        self.scope: Scope = scope
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"NotSentError(code={self.code!r}, scope={self.scope!r}, retry_after={self.retry_after!r}, "
            f"title={self.title!r})"
        )


class RejectedError(GraphError):
    """Definitively rejected for this recipient or payload (e.g. 131026 undeliverable): the delivery fails."""

    outcome = "failed"


class SendingPausedError(GraphError):
    """Our account, token, number or template is unusable: stop sending for everyone until an operator acts.

    Failing every recipient one by one would burn the whole audience on a problem that is ours.
    """

    outcome = "paused"


class AmbiguousError(GraphError):
    """Meta may have accepted the message (timeout, disconnect after the write, 5xx, no wamid): never retry."""

    outcome = "unknown"


# --- Code tables -------------------------------------------------------------------------------------
# One place for every Graph error code we act on. Source: docs/whatsapp.md#error-codes (Meta's error-code table and
# its suggested fixes) and #throughput-and-pair-rate. Meta says to branch on `code`, never on the HTTP
# status or the deprecated subcode (#error-envelope).

# Throttling of the whole number/app/WABA: everyone backs off (130429 throughput, 4 app rate, 80007 WABA).
THROTTLE_SENDER_CODES: frozenset[int] = frozenset({4, 80007, 130429})
# Pair rate: too many messages to the same recipient; only that recipient waits (4**x seconds).
PAIR_RATE_CODES: frozenset[int] = frozenset({131056})
# Account in maintenance (e.g. a throughput upgrade, ≤ 1 minute): nothing goes out from the number meanwhile.
MAINTENANCE_CODES: frozenset[int] = frozenset({131057})
# Meta-side "service unavailable / downtime / temporarily unavailable". With an error envelope on a 4xx
# the message was not accepted, so everyone backs off; on a 5xx the ambiguity rule wins (see below).
SERVICE_UNAVAILABLE_CODES: frozenset[int] = frozenset({1, 2, 131016, 133004})
# 131000 "unknown error" says nothing about acceptance: always ambiguous.
AMBIGUOUS_CODES: frozenset[int] = frozenset({131000})
# Auth, permissions, account, billing, spam/quality and template problems: ours to fix, not the recipient's.
#   0/190 auth or token; 3, 10, 200-299, 131005 permission; 131031/368 account locked or restricted;
#   131042 billing; 133010 number not registered; 131048 spam rate limit; 131064 messaging limit after
#   template-classification violations; 132015/132016 template paused/disabled; 132001 template missing or
#   not approved (it would fail every recipient identically, so it pauses too).
PAUSE_CODES: frozenset[int] = frozenset(
    {0, 190, 3, 10, 131005, 131031, 368, 131042, 133010, 131048, 131064, 132001, 132015, 132016} | set(range(200, 300))
)
# Documented per-recipient or per-payload rejections (any other 4xx code with an envelope is rejected too):
#   131026 undeliverable; 131047 outside the 24 h window; 131049 marketing cap; 131050 opted out of
#   marketing; 131051 unsupported type; 100/131008/131009 bad parameter; 132000-132012 template call
#   problems; 130472 user in a Meta experiment.
REJECT_CODES: frozenset[int] = frozenset(
    {131026, 131047, 131049, 131050, 131051, 100, 131008, 131009, 130472} | (set(range(132000, 132013)) - {132001})
)


# A free-form (text) message to someone who has not written in the last 24 hours (docs/whatsapp.md).
OUTSIDE_WINDOW = 131047
OUTSIDE_WINDOW_TITLE = (
    "outside the 24-hour window: a text message reaches only employees who wrote in the last 24 hours; "
    "send a template announcement"
)


def classify_error_envelope(
    http_status: int, envelope: Mapping[str, Any] | None, *, retry_after: float | None = None
) -> GraphError:
    """Turn a non-2xx response (status + parsed ``{"error": {...}}`` or None) into the right GraphError."""
    error = envelope.get("error") if envelope is not None else None
    code = _as_int(error.get("code")) if isinstance(error, Mapping) else None
    if http_status == 429 and code not in PAIR_RATE_CODES:
        # Too Many Requests, from Graph or from a proxy in front of it: a request refused for rate is not
        # accepted, and it is the sender that is too fast, not this recipient.
        title = _title(error) if isinstance(error, Mapping) else "HTTP 429 Too Many Requests"
        return NotSentError(title, scope="sender", retry_after=retry_after, code=code, http_status=http_status)
    if not isinstance(error, Mapping) or code is None:
        # No parsable envelope (an HTML proxy page, an empty 502): we cannot prove Meta did not accept it.
        return AmbiguousError(f"HTTP {http_status} without a Graph error envelope", http_status=http_status)

    title = _title(error)
    trace = error.get("fbtrace_id")
    common: dict[str, Any] = {
        "code": code,
        "http_status": http_status,
        "fbtrace_id": trace if isinstance(trace, str) else None,
    }
    # Throttling codes prove the message was not accepted even when they arrive with a 5xx status.
    if code in THROTTLE_SENDER_CODES or code in MAINTENANCE_CODES:
        return NotSentError(title, scope="sender", retry_after=retry_after, **common)
    if code in PAIR_RATE_CODES:
        return NotSentError(title, scope="recipient", retry_after=retry_after, **common)
    if http_status >= 500 or code in AMBIGUOUS_CODES:
        return AmbiguousError(title, **common)
    if code in PAUSE_CODES:
        return SendingPausedError(title, **common)
    if code in SERVICE_UNAVAILABLE_CODES:
        return NotSentError(title, scope="sender", retry_after=retry_after, **common)
    if code == OUTSIDE_WINDOW:
        # Meta's words ("Re-engagement message") do not tell an operator what to do.
        title = OUTSIDE_WINDOW_TITLE
    # REJECT_CODES and every other code that came with an envelope on a 4xx: Meta answered, and said no.
    return RejectedError(title, **common)


# --- Transport failures ---------------------------------------------------------------------------------
# No connection to Graph could be made (refused, DNS, TLS handshake, connect timeout): nothing was sent, and
# nothing from this number will be until Graph is reachable again.
_UNREACHABLE: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout)


@contextlib.contextmanager
def map_transport_errors() -> Iterator[None]:
    """Map httpx transport exceptions raised inside the block to NotSentError / AmbiguousError.

    Only failures *before the connection was established* are provably not sent. A read or write timeout,
    a reset or a protocol error may happen after some or all of the request reached Meta.
    """
    try:
        yield
    except httpx.UnsupportedProtocol as exc:
        # A malformed WHATSAPP_API_URL: nothing was sent, and nothing will be until the config is fixed.
        raise SendingPausedError(f"request not sent: {exc}") from exc
    except _UNREACHABLE as exc:
        raise NotSentError(f"request not sent: Graph unreachable ({type(exc).__name__})", scope="sender") from exc
    except httpx.PoolTimeout as exc:
        # Our own pool had no free connection in time: the request never left this process.
        raise NotSentError(f"request not sent: {type(exc).__name__}", scope="attempt") from exc
    except httpx.TransportError as exc:
        # ReadTimeout, WriteTimeout, ReadError, WriteError, RemoteProtocolError, CloseError, ProxyError…
        raise AmbiguousError(f"no response: {type(exc).__name__}") from exc


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only); Meta does not document one."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _title(error: Mapping[str, Any]) -> str:
    data = error.get("error_data")
    if isinstance(data, Mapping):
        details = data.get("details")
        if isinstance(details, str) and details.strip():
            return details.strip()[:300]
    message = error.get("message")
    if isinstance(message, str) and message.strip():
        return message.strip()[:300]
    return "Graph API error"
