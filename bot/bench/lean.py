"""The lean reference for `jem-bot bench webhook`: the least a status webhook can do, to measure jem-bot against.

One Litestar handler over a raw asyncpg pool doing the same work for each POST as jem-bot's webhook: HMAC-SHA256
of the raw body, a msgspec decode, a durable dedup insert of each status with its jsonb payload, a forward-only
update of the delivery by wamid, in one transaction, and 200 after the commit. Nothing else: no routing by
kind, no trackers, no metrics, no retries. jem-bot's figure is reported as a ratio of this one, measured in the
same run, on the same database and the same machine.

Run as its own process: `python -m bot.bench.lean PORT DSN SECRET`, or `python -m bot.bench.lean PORT` with the
DSN and the app secret in JEM_LEAN_DSN and JEM_LEAN_SECRET (how `jem-bot bench webhook` starts it: a command line
is visible to every local user in `ps`, a password in the DSN would be too).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import uvicorn
from litestar import Litestar, Request, Response, post
from litestar.datastructures import State

_INSERT = (
    "INSERT INTO webhook_event (key, kind, payload) VALUES ($1, 'status', $2::jsonb) "
    "ON CONFLICT (key) DO NOTHING RETURNING id"
)
_UPDATE = (
    "UPDATE delivery SET status = $2, updated_at = now() WHERE wamid = $1 AND delivery_rank(status) < delivery_rank($2)"
)


class _Status(msgspec.Struct):
    id: str
    status: str


class _Value(msgspec.Struct):
    statuses: list[msgspec.Raw] = []


class _Change(msgspec.Struct):
    value: _Value


class _Entry(msgspec.Struct):
    changes: list[_Change]


class _Envelope(msgspec.Struct):
    entry: list[_Entry]


@post("/webhooks/whatsapp", status_code=200)
async def receive(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    body = await request.body()
    given = request.headers.get("x-hub-signature-256", "").removeprefix("sha256=")
    expected = hmac.new(state.secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return Response(b"", status_code=403)
    envelope = msgspec.json.decode(body, type=_Envelope)
    async with state.pool.acquire() as conn, conn.transaction():
        for entry in envelope.entry:
            for change in entry.changes:
                for raw in change.value.statuses:
                    st = msgspec.json.decode(raw, type=_Status)
                    if await conn.fetchval(_INSERT, f"st:{st.id}:{st.status}", bytes(raw).decode()) is not None:
                        await conn.execute(_UPDATE, st.id, st.status)
    return Response(b"", status_code=200)


async def _reset_if_in_transaction(conn: asyncpg.Connection) -> None:
    """asyncpg's default reset (RESET ALL, UNLISTEN *, ...) is one more round trip per request that jem-bot's pool
    does not make either (bot/db/engine.py): with it, the reference would be slower than it needs to be and flatter
    jem-bot. The handler sets no session state; only an interrupted transaction needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def create_lean_app(dsn: str, secret: str) -> Litestar:
    @contextlib.asynccontextmanager
    async def pool(app: Litestar) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10, reset=_reset_if_in_transaction)
        app.state.secret = secret.encode()
        try:
            yield
        finally:
            await app.state.pool.close()

    return Litestar(route_handlers=[receive], lifespan=[pool], openapi_config=None, logging_config=None)


def main() -> None:
    port = int(sys.argv[1])
    dsn, secret = (
        (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else (os.environ["JEM_LEAN_DSN"], os.environ["JEM_LEAN_SECRET"])
    )
    uvicorn.run(create_lean_app(dsn, secret), host="127.0.0.1", port=port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
