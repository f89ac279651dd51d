"""The dispatcher loop: fan out, claim (committed), send concurrently, write outcomes, reap, complete."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.graph.errors import AmbiguousError, NotSentError, RejectedError, SendingPausedError
from bot.graph.retry import backoff_delay, pair_rate_delay
from bot.ledger import budget, claim, completion, fanout, outcome, reaper
from bot.settings import Settings

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        graph: Any,
        *,
        metrics: Any = None,
        worker_id: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        self._settings = settings
        self._sm = sessionmaker
        self._graph = graph
        self._metrics = metrics
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:12]}"
        self._concurrency = concurrency or settings.dispatcher_concurrency
        self._sem = asyncio.Semaphore(self._concurrency)
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self._last_beat = 0.0
        self._sent = 0
        self._phone = settings.whatsapp_phone_number_id or "default"

    def describe(self) -> str:
        return f"dispatcher {self.worker_id}: {len(self._tasks)} in flight, {self._sent} sent"

    def stop(self) -> None:
        self._stop.set()

    async def run_once(self) -> int:
        now = time.monotonic()
        if now - self._last_beat >= self._settings.dispatcher_heartbeat_interval:
            await reaper.heartbeat(self._sm, me=self.worker_id)
            await reaper.reap(self._sm, stale_after=self._settings.dispatcher_stale_after)
            self._last_beat = now
        await fanout.fan_out_due(self._sm)
        room = min(self._settings.dispatcher_batch_size, self._concurrency - len(self._tasks))
        room = await budget.take(self._sm, phone_number_id=self._phone, want=room, rate=self._settings.send_rate)
        rows = await claim.claim(self._sm, me=self.worker_id, n=room)
        for row in rows:
            task = asyncio.create_task(self._send(row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await completion.complete_finished(self._sm)
        return len(rows)

    async def drain(self, limit: float = 30.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=limit)

    async def run(self) -> None:
        await reaper.heartbeat(self._sm, me=self.worker_id)
        try:
            while not self._stop.is_set():
                n = await self.run_once()
                if n == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self._settings.dispatcher_poll_interval)
            await self.drain()
            await completion.complete_finished(self._sm)
        finally:
            await reaper.stopped(self._sm, me=self.worker_id)

    def _count(self, what: str) -> None:
        if self._metrics is not None:
            self._metrics.sends.labels(what).inc()

    async def _send(self, row: claim.Claimed) -> None:
        me, sm = self.worker_id, self._sm
        async with self._sem:
            try:
                if row.kind == "reply":
                    res = await self._graph.send_text(to=row.phone, text=row.text, callback_data=str(row.id))
                else:
                    res = await self._graph.send_announcement(to=row.phone, text=row.text, callback_data=str(row.id))
            except SendingPausedError as exc:
                await budget.pause(sm, phone_number_id=self._phone, seconds=60.0, reason=exc.title)
                log.error("sending paused by Meta (code %s: %s); retrying in 60 s", exc.code, exc.title)
                await outcome.record_retry(
                    sm, id=row.id, me=me, delay=60.0, exhausted=False, code=exc.code, title=exc.title
                )
                self._count("paused")
                return
            except NotSentError as exc:
                if exc.scope == "recipient":
                    delay = pair_rate_delay(row.attempts - 1)
                else:
                    delay = exc.retry_after or backoff_delay(row.attempts - 1, rng=self._rng)
                if exc.scope == "global":  # 130429: everyone waits, not just this delivery
                    await budget.back_off(sm, phone_number_id=self._phone, seconds=delay)
                await outcome.record_retry(
                    sm,
                    id=row.id,
                    me=me,
                    delay=delay,
                    exhausted=row.attempts >= self._settings.max_send_attempts,
                    code=exc.code,
                    title=exc.title,
                )
                self._count("retry")
                return
            except RejectedError as exc:
                await outcome.record_failed(sm, id=row.id, me=me, code=exc.code, title=exc.title)
                self._count("failed")
                return
            except AmbiguousError:
                await outcome.record_unknown(sm, id=row.id, me=me)
                self._count("unknown")
                return
            except Exception:  # anything else may have reached Meta: never resend it
                log.exception("unexpected send error; delivery %s marked unknown", row.id)
                await outcome.record_unknown(sm, id=row.id, me=me)
                self._count("unknown")
                return
            await outcome.record_sent(sm, id=row.id, me=me, wamid=res.wamid)
            self._sent += 1
            self._count("sent")
