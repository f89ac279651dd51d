"""Apply Meta status callbacks to the ledger, forward only (DESIGN.md §3).

One rank order makes the result independent of arrival order. `failed` (ours or Meta's) ranks highest,
so a row we marked failed keeps that status, but a later Meta status still records its timestamp and
wamid as evidence (TODO: decide whether such evidence should override our own failure);
`cancelled`/`skipped` rows were never sent and are never touched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

RANK = {"pending": 0, "sending": 0, "unknown": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}
META_STATUSES = ("sent", "delivered", "read", "failed")

_RANK_SQL = "CASE status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 WHEN 'failed' THEN 4 ELSE 0 END"

_APPLY = text(
    # RANK_OF is replaced by the constant _RANK_SQL; every value is a bound parameter. The row is ours by its
    # wamid, else by the delivery id we sent as biz_opaque_callback_data while its wamid is not known (an
    # `unknown` send): one statement, because a batched webhook runs this once per status.
    """
    UPDATE delivery SET
      wamid = COALESCE(wamid, :wamid),
      status = CASE WHEN RANK_OF < :rank THEN :status ELSE status END,
      sent_at = CASE WHEN :status = 'sent' THEN LEAST(COALESCE(sent_at, :ts), :ts) ELSE sent_at END,
      delivered_at = CASE WHEN :status = 'delivered' THEN LEAST(COALESCE(delivered_at, :ts), :ts)
                     ELSE delivered_at END,
      read_at = CASE WHEN :status = 'read' THEN LEAST(COALESCE(read_at, :ts), :ts) ELSE read_at END,
      failed_at = CASE WHEN :status = 'failed' THEN LEAST(COALESCE(failed_at, :ts), :ts) ELSE failed_at END,
      error_code = CASE WHEN :status = 'failed' AND RANK_OF < :rank THEN :code
                        WHEN status = 'unknown' AND RANK_OF < :rank THEN NULL ELSE error_code END,
      error_title = CASE WHEN :status = 'failed' AND RANK_OF < :rank THEN :title
                         WHEN status = 'unknown' AND RANK_OF < :rank THEN NULL ELSE error_title END,
      updated_at = now()
    WHERE id = COALESCE(
            (SELECT x.id FROM delivery x WHERE x.wamid = CAST(:wamid AS text)),
            (SELECT x.id FROM delivery x
             WHERE x.id = CAST(:delivery_id AS bigint) AND (x.wamid IS NULL OR x.wamid = CAST(:wamid AS text))))
      AND status NOT IN ('cancelled', 'skipped')
    RETURNING status
    """.replace("RANK_OF", _RANK_SQL)
)


def _delivery_id(callback_data: str | None) -> int | None:
    """Our tracker is the delivery id; anything else (another app's data on the same number) matches nothing."""
    if callback_data and callback_data.isascii() and callback_data.isdigit() and len(callback_data) <= 18:
        return int(callback_data)
    return None


def _ts(raw: str | None) -> datetime:
    try:
        return datetime.fromtimestamp(int(raw or ""), UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.now(UTC)


async def apply_status(
    session: AsyncSession,
    *,
    wamid: str | None,
    status: str,
    timestamp: str | None,
    callback_data: str | None,
    errors: list[dict[str, Any]] | None,
) -> str:
    """Returns 'applied', 'ignored' (played/unknown status) or 'unmatched' (not ours, or never sent)."""
    if status not in META_STATUSES:
        return "ignored"
    delivery_id = _delivery_id(callback_data)
    if not wamid and delivery_id is None:
        return "unmatched"
    first = (errors or [{}])[0] if errors else {}
    code = first.get("code")
    # error_code is an int4: a code outside it (not Meta's) must not turn the whole webhook into an error.
    code = code if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < 2**31 else None
    title = first.get("title") if isinstance(first.get("title"), str) else None
    row = await session.execute(
        _APPLY,
        {
            "delivery_id": delivery_id,
            "wamid": wamid,
            "status": status,
            "rank": RANK[status],
            "ts": _ts(timestamp),
            "code": code,
            "title": title,
        },
    )
    return "applied" if row.first() is not None else "unmatched"
