"""Fan-out: freeze a due announcement's audience into ledger rows, once, even with racing dispatchers."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.queries import query

log = logging.getLogger(__name__)


async def fan_out_due(sessionmaker: async_sessionmaker[AsyncSession], *, limit: int = 20) -> int:
    """Fan out every due announcement, each in its own transaction; returns how many were fanned out."""
    async with sessionmaker() as s:
        ids = [r[0] for r in (await s.execute(query("fan_out_due"), {"n": limit})).all()]
    done = 0
    for aid in ids:
        async with sessionmaker() as s, s.begin():
            row = (await s.execute(query("fan_out_lock"), {"id": aid})).first()
            if row is None:  # another dispatcher has it, it was cancelled, or it was moved into the future
                continue
            # Which number the rows go out from is read from the employer's sender: a change to it waits for this
            # transaction (and this for the change), so no row is left waiting for a number that is gone.
            await s.execute(query("employer_lock_share"), {"e": row.employer_id})
            aud = row.audience or {}
            if row.reminder_of is not None:
                # A reminder's audience is decided now, not when it was created: whoever acknowledged meanwhile
                # is left out (docs/api.md#reminders).
                inserted = await s.execute(
                    query("reminder_fan_out_insert"),
                    {"aid": aid, "eid": row.employer_id, "original": row.reminder_of},
                )
            else:
                inserted = await s.execute(
                    query("fan_out_insert"),
                    {
                        "aid": aid,
                        "eid": row.employer_id,
                        "all_": bool(aud.get("all")),
                        "tags": list(aud["tags"]) if aud.get("tags") else None,
                        "ids": [int(i) for i in aud["employee_ids"]] if aud.get("employee_ids") else None,
                    },
                )
            await s.execute(query("fan_out_start"), {"id": aid})
            done += 1
        # After commit: an operator watching the log learns the audience was frozen, and how large it was.
        log.info("announcement %s: dispatching; audience of %d frozen into the ledger", aid, inserted.rowcount)  # type: ignore[attr-defined]
    return done
