"""One webhook body, one transaction: dedup every event, apply only the new ones (DESIGN.md §4)."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger.acks import acknowledge
from bot.ledger.replies import queue_reply
from bot.ledger.statuses import apply_status
from bot.metrics import Metrics
from bot.phones import from_wa_id, mask_id
from bot.webhook.payloads import Envelope, Message, Status

log = logging.getLogger("jem.webhook")

_DEDUP = text(
    "INSERT INTO webhook_event (key, kind, payload) VALUES (:k, :kind, CAST(:p AS jsonb)) "
    "ON CONFLICT (key) DO NOTHING RETURNING id"
)

_INBOUND = text(
    """
    INSERT INTO inbound_message (wamid, employer_id, employee_id, from_phone, type, text, context_wamid,
                                 announcement_id, delivery_id, payload)
    SELECT :wamid, e.employer_id, e.id, :phone, :type, :text, :ctx, d.announcement_id, d.id, CAST(:p AS jsonb)
    FROM (SELECT 1) one
    LEFT JOIN delivery d ON d.wamid = :ctx AND d.kind = 'announcement'
    LEFT JOIN LATERAL (
        SELECT emp.id, emp.employer_id FROM employee emp
        LEFT JOIN LATERAL (SELECT max(created_at) AS last FROM delivery x WHERE x.employee_id = emp.id) l ON true
        WHERE emp.phone = :phone
        ORDER BY (emp.employer_id = d.employer_id) DESC NULLS LAST, l.last DESC NULLS LAST, emp.id DESC
        LIMIT 1
    ) e ON true
    ON CONFLICT (wamid) DO NOTHING
    RETURNING employer_id, employee_id, delivery_id
    """
)


def _hash_key(prefix: str, item: Any) -> str:
    digest = hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()
    return f"{prefix}:{digest}"


async def _new(session: AsyncSession, metrics: Metrics, key: str, kind: str, item: Any) -> bool:
    new = (await session.execute(_DEDUP, {"k": key, "kind": kind, "p": json.dumps(item)})).scalar() is not None
    metrics.webhook_events.labels(kind, "new" if new else "duplicate").inc()
    return new


async def process(session: AsyncSession, metrics: Metrics, envelope: Envelope) -> None:
    for entry in envelope.entry or []:
        for change in entry.changes or []:
            value = change.value or {}
            if change.field != "messages":
                await _new(session, metrics, _hash_key("ev", [change.field, value]), change.field or "unknown", value)
                continue
            for raw in value.get("statuses") or []:
                st = msgspec.convert(raw, Status) if isinstance(raw, dict) else Status()
                key = f"st:{st.id}:{st.status}" if st.id and st.status else _hash_key("st", raw)
                if not await _new(session, metrics, key, "status", raw):
                    continue
                result = await apply_status(
                    session,
                    wamid=st.id,
                    status=st.status or "",
                    timestamp=st.timestamp,
                    callback_data=st.biz_opaque_callback_data,
                    errors=st.errors,
                )
                if result == "unmatched":
                    log.info("status for an unknown message %s", mask_id(st.id or ""))
            for raw in value.get("messages") or []:
                msg = msgspec.convert(raw, Message) if isinstance(raw, dict) else Message()
                key = f"msg:{msg.id}" if msg.id else _hash_key("msg", raw)
                if not await _new(session, metrics, key, "message", raw) or not msg.id or not msg.from_:
                    continue
                body = msg.text.body if msg.text else (msg.button.text if msg.button else None)
                row = (
                    await session.execute(
                        _INBOUND,
                        {
                            "wamid": msg.id,
                            "phone": from_wa_id(msg.from_),
                            "type": msg.type or "unknown",
                            "text": body,
                            "ctx": msg.context.id if msg.context else None,
                            "p": json.dumps(raw),
                        },
                    )
                ).first()
                if row is not None:
                    await _interpret(session, msg, phone=from_wa_id(msg.from_), text_=body, row=row)
            for raw in value.get("errors") or []:
                await _new(session, metrics, _hash_key("err", raw), "error", raw)


STOP_WORDS = {"STOP", "UNSUBSCRIBE"}
REPLIES = {
    "stop": "You will no longer receive announcements. Reply START to subscribe again.",
    "start": "You are subscribed to announcements again. Reply STOP to unsubscribe.",
    "help": "This number sends announcements from your employer. Reply STOP to unsubscribe, START to resubscribe.",
}


async def _interpret(session: AsyncSession, msg: Message, *, phone: str, text_: str | None, row: Any) -> None:
    employer_id, employee_id, delivery_id = row
    if delivery_id is not None:
        # A tap or any reply whose context is one of our announcements acknowledges it.
        await acknowledge(session, delivery_id)
    word = (text_ or "").strip().upper() if msg.type == "text" else ""
    action = "stop" if word in STOP_WORDS else word.lower() if word in ("START", "HELP") else None
    if action is None or employee_id is None:
        return
    if action == "stop":
        await session.execute(
            text(
                "UPDATE employee SET opted_out_at = now(), updated_at = now() WHERE phone = :p AND opted_out_at IS NULL"
            ),
            {"p": phone},
        )
    elif action == "start":
        await session.execute(
            text("UPDATE employee SET opted_out_at = NULL, updated_at = now() WHERE phone = :p"), {"p": phone}
        )
    await queue_reply(
        session, employer_id=employer_id, employee_id=employee_id, reply_key=f"{action}:{msg.id}", body=REPLIES[action]
    )
