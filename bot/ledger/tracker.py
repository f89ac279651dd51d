"""Our tracker in `biz_opaque_callback_data`: `jem:<delivery id>:<mac>`, unforgeable and unambiguous.

Meta echoes the tracker on every status of a send, which is how a send whose answer we never got (`unknown`)
is proven (docs/architecture.md#evidence). Other integrations on the same number put their own data there, so
a bare delivery id ("2") would let their callbacks move our rows: ours is namespaced and authenticated with a
key that only this installation knows (kept in its database, so every process agrees without configuration).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.queries import query

PREFIX = "jem:"
SECRET_NAME = "tracker"  # noqa: S105 - the name of the secret row, not a secret
# 80 bits: guessing one valid tracker takes ~2**79 forged webhooks, each of which must also carry Meta's signature.
MAC_HEX_CHARS = 20
# Delivery ids are bigints: 19 digits at most.
MAX_ID_DIGITS = 19


@dataclass(frozen=True, slots=True, repr=False)
class Tracker:
    key: bytes

    def make(self, delivery_id: int) -> str:
        return f"{PREFIX}{delivery_id}:{self._mac(delivery_id)}"

    def parse(self, data: str | None) -> int | None:
        """The delivery id in a tracker we wrote; None for anything else (another app's data, a forgery)."""
        if not data or not data.startswith(PREFIX):
            return None
        digits, sep, mac = data[len(PREFIX) :].partition(":")
        if not sep or not digits.isascii() or not digits.isdigit() or len(digits) > MAX_ID_DIGITS:
            return None
        delivery_id = int(digits)
        if delivery_id >= 2**63 or not hmac.compare_digest(mac.encode(), self._mac(delivery_id).encode()):
            return None
        return delivery_id

    def _mac(self, delivery_id: int) -> str:
        return hmac.new(self.key, f"{PREFIX}{delivery_id}".encode(), hashlib.sha256).hexdigest()[:MAC_HEX_CHARS]

    def __repr__(self) -> str:  # never show the key
        return "Tracker(…)"


async def load_tracker(sm: async_sessionmaker[AsyncSession]) -> Tracker:
    """The installation's tracker, creating its key on first use (the first process to ask wins the race)."""
    async with sm() as s, s.begin():
        await s.execute(query("secret_ensure"), {"name": SECRET_NAME, "value": secrets.token_bytes(32)})
        key = (await s.execute(query("secret_get"), {"name": SECRET_NAME})).scalar_one()
    return Tracker(bytes(key))


class TrackerSource:
    """Loads the tracker once, on first use (the key never changes), for a process's lifetime."""

    def __init__(self, sm: async_sessionmaker[AsyncSession]) -> None:
        self._sm = sm
        self._tracker: Tracker | None = None

    async def get(self) -> Tracker:
        if self._tracker is None:
            self._tracker = await load_tracker(self._sm)
        return self._tracker
