"""Acknowledgements: an employee's tap or reply to an announcement, counted once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query


async def acknowledge(session: AsyncSession, delivery_id: int) -> bool:
    return (await session.execute(query("acknowledge"), {"id": delivery_id})).scalar() is not None
