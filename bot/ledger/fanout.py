"""Fan-out: freeze a due announcement's audience into ledger rows, once, even with racing dispatchers."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger(__name__)

_DUE = text("SELECT id FROM announcement WHERE status='scheduled' AND send_at <= now() ORDER BY send_at, id LIMIT :n")
_LOCK = text(
    "SELECT id, employer_id, audience FROM announcement WHERE id=:id AND status='scheduled' FOR UPDATE SKIP LOCKED"
)
# One statement freezes the audience; ON CONFLICT makes a second fan-out of the same announcement a no-op.
_INSERT = text(
    """
INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, skip_reason, next_attempt_at)
SELECT e.employer_id, :aid, e.id, 'announcement',
       CASE WHEN NOT e.active OR e.opted_out_at IS NOT NULL THEN 'skipped' ELSE 'pending' END,
       CASE WHEN NOT e.active THEN 'inactive' WHEN e.opted_out_at IS NOT NULL THEN 'opted_out' END,
       now()
FROM employee e
WHERE e.employer_id = :eid
  AND (
    (CAST(:all_ AS boolean) AND e.active)
    OR (CAST(:tags AS text[]) IS NOT NULL AND e.active AND e.tags && CAST(:tags AS text[]))
    OR (CAST(:ids AS bigint[]) IS NOT NULL AND e.id = ANY(CAST(:ids AS bigint[])))
  )
ON CONFLICT (announcement_id, employee_id) DO NOTHING
"""
)
_DISPATCHING = text("UPDATE announcement SET status='dispatching', dispatched_at=now() WHERE id=:id")


async def fan_out_due(sessionmaker: async_sessionmaker[AsyncSession], *, limit: int = 20) -> int:
    """Fan out every due announcement, each in its own transaction; returns how many were fanned out."""
    async with sessionmaker() as s:
        ids = [r[0] for r in (await s.execute(_DUE, {"n": limit})).all()]
    done = 0
    for aid in ids:
        async with sessionmaker() as s, s.begin():
            row = (await s.execute(_LOCK, {"id": aid})).first()
            if row is None:  # another dispatcher has it, or it was cancelled meanwhile
                continue
            aud = row.audience or {}
            inserted = await s.execute(
                _INSERT,
                {
                    "aid": aid,
                    "eid": row.employer_id,
                    "all_": bool(aud.get("all")),
                    "tags": list(aud["tags"]) if aud.get("tags") else None,
                    "ids": [int(i) for i in aud["employee_ids"]] if aud.get("employee_ids") else None,
                },
            )
            await s.execute(_DISPATCHING, {"id": aid})
            done += 1
        # After commit: an operator watching the log learns the audience was frozen, and how large it was.
        log.info("announcement %s: dispatching; audience of %d frozen into the ledger", aid, inserted.rowcount)  # type: ignore[attr-defined]
    return done
