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

from bot.graph.client import SendResult
from bot.graph.errors import AmbiguousError, NotSentError, RejectedError, SendingPausedError
from bot.graph.retry import backoff_delay, pair_rate_delay
from bot.ledger import budget, claim, completion, fanout, outcome, reaper
from bot.settings import Settings

log = logging.getLogger(__name__)

# When the send budget is the limit, claim again after this long: ~20 rows per claim at 1,000 msg/s.
CLAIM_TICK = 0.02
# Accepted sends are written in batches collected for up to this long (and at most OUTCOME_BATCH rows).
OUTCOME_DELAY = 0.02
OUTCOME_BATCH = 500
# How long an account-level problem (bad token, locked account, unregistered number) stops every send.
PAUSE_SECONDS = 60.0
# Meta's pair rate: about one message every 6 s to the same recipient (WHATSAPP.md §6.3).
PAIR_RATE_MIN_DELAY = 6.0
# The loop retries a failed step (the database is down) after the poll interval, doubling up to this.
MAX_LOOP_RETRY = 30.0


class _SentWriter:
    """Records accepted sends in batches: one guarded statement per batch instead of one transaction per send.

    The first result into an empty batch waits ``delay`` for company, then writes the whole batch; a full batch
    is written at once. Every caller returns only after its own row is written, so a finished send task still
    means a durable outcome (`drain` relies on it). A failed write is retried (the statement is guarded, so
    writing twice changes nothing), then reported to every caller of the batch.
    """

    def __init__(self, sm: async_sessionmaker[AsyncSession], me: str, *, delay: float, limit: int) -> None:
        self._sm = sm
        self._me = me
        self._delay = delay
        self._limit = limit
        self._batch: list[tuple[int, str, asyncio.Future[None]]] = []
        self.writes = 0

    async def record(self, delivery_id: int, wamid: str) -> None:
        done = asyncio.get_running_loop().create_future()
        self._batch.append((delivery_id, wamid, done))
        if len(self._batch) >= self._limit:
            await self._flush()
        elif len(self._batch) == 1:
            await asyncio.sleep(self._delay)
            await self._flush()
        await done

    async def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        error: Exception | None = None
        for attempt in range(3):
            if attempt:
                await asyncio.sleep(0.2 * 4**attempt)
            try:
                await outcome.record_sent_many(self._sm, me=self._me, sent=[(i, w) for i, w, _ in batch])
                error = None
                break
            except Exception as exc:  # the database blinked: the same guarded write is safe to repeat
                error = exc
        self.writes += 1
        for _, _, done in batch:
            if not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)


class Dispatcher:
    """Claims due deliveries within the shared send budget and sends them, ``concurrency`` at a time.

    `run()` is the production loop; `run_once()` is one complete pass (housekeeping, claim, completion) for tests.
    The loop claims as soon as there are both free slots and send tokens: it waits for a slot when all are busy,
    for a claim tick when the budget is the limit, and for the poll interval only when nothing is due.
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        graph: Any,
        *,
        metrics: Any = None,
        worker_id: str | None = None,
        concurrency: int | None = None,
        outcome_delay: float = OUTCOME_DELAY,
    ) -> None:
        self._settings = settings
        self._sm = sessionmaker
        self._graph = graph
        self._metrics = metrics
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:12]}"
        self._concurrency = concurrency or settings.dispatcher_concurrency
        # Claiming one row per freed slot would cost one transaction per send; a tenth of the slots is a batch.
        self._min_room = max(1, min(self._concurrency // 10, settings.dispatcher_batch_size))
        self._stop = asyncio.Event()
        # Set by stop(), and by a finished Graph call while the loop waits for a free slot.
        self._wake = asyncio.Event()
        self._waiting_for_slot = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Claimed rows whose Graph call has not answered yet: what `concurrency` bounds.
        self._in_flight = 0
        self._rng = random.Random()
        self._last_beat = 0.0
        self._next_housekeeping = 0.0
        self._sent = 0
        self.claims = 0  # claim transactions that returned rows (the benchmark reports claims/s)
        self.claimed = 0
        self._phone = settings.whatsapp_phone_number_id or "default"
        self._writer = _SentWriter(sessionmaker, self.worker_id, delay=outcome_delay, limit=OUTCOME_BATCH)

    @property
    def outcome_writes(self) -> int:
        """Batched writes of accepted sends so far (the benchmark reports rows per write)."""
        return self._writer.writes

    def describe(self) -> str:
        return f"dispatcher {self.worker_id}: {self._in_flight} in flight, {self._sent} sent"

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run_once(self) -> int:
        """One full pass: heartbeat and reap when due, fan out, claim and start sends, complete announcements."""
        await self._beat_if_due()
        await fanout.fan_out_due(self._sm)
        rows, _ = await self._claim()
        await completion.complete_finished(self._sm)
        return rows

    async def drain(self, limit: float = 30.0) -> None:
        """Wait until every started send has answered and its outcome is written (or ``limit`` passes)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=limit)

    async def run(self) -> None:
        await reaper.heartbeat(self._sm, me=self.worker_id)
        log.info(
            "dispatcher %s started: %d sends in flight at most, %g msg/s shared by all dispatchers",
            self.worker_id, self._concurrency, self._settings.send_rate,
        )  # fmt: skip
        self._last_beat = time.monotonic()
        retry_in = self._settings.dispatcher_poll_interval
        try:
            while not self._stop.is_set():
                try:
                    await self._step()
                except Exception:
                    # A database blip must not end the loop: inside `serve` nobody would notice, and every
                    # announcement would wait forever. Sends already claimed carry on meanwhile.
                    log.exception("dispatcher %s: loop failed; retrying in %.1f s", self.worker_id, retry_in)
                    self._next_housekeeping = time.monotonic() + retry_in
                    await self._sleep(retry_in)
                    retry_in = min(retry_in * 2, MAX_LOOP_RETRY)
                else:
                    retry_in = self._settings.dispatcher_poll_interval
            await self.drain()
            await completion.complete_finished(self._sm)
        finally:
            await reaper.stopped(self._sm, me=self.worker_id)
            log.info("dispatcher %s stopped after %d sends", self.worker_id, self._sent)

    async def _step(self) -> None:
        if time.monotonic() >= self._next_housekeeping:
            await self._housekeeping()
        if self._concurrency - self._in_flight < self._min_room:
            await self._sleep(self._settings.dispatcher_poll_interval, for_slot=True)
            return
        _, pause = await self._claim()
        if pause > 0:
            await self._sleep(pause)

    async def _housekeeping(self) -> None:
        # Announcement-level work, cheap to delay by a poll interval; run per claim (dozens a second) it cost
        # as many round trips as the claims themselves.
        await self._beat_if_due()
        await fanout.fan_out_due(self._sm)
        await completion.complete_finished(self._sm)
        self._next_housekeeping = time.monotonic() + self._settings.dispatcher_poll_interval

    async def _beat_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_beat >= self._settings.dispatcher_heartbeat_interval:
            await reaper.heartbeat(self._sm, me=self.worker_id)
            await reaper.reap(self._sm, stale_after=self._settings.dispatcher_stale_after)
            self._last_beat = now

    async def _claim(self) -> tuple[int, float]:
        """Claim what the free slots and the budget allow and start sending it; returns (rows, seconds to pause)."""
        want = min(self._settings.dispatcher_batch_size, self._concurrency - self._in_flight)
        batch = await claim.claim_within_budget(
            self._sm, me=self.worker_id, n=want, phone_number_id=self._phone, rate=self._settings.send_rate
        )
        rows = batch.rows
        if rows:
            self.claims += 1
            self.claimed += len(rows)
        for row in rows:
            self._in_flight += 1
            task = asyncio.create_task(self._send(row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        poll = self._settings.dispatcher_poll_interval
        if batch.blocked_for > 0:  # backed off or paused: nothing can go before it ends
            return len(rows), min(poll, batch.blocked_for)
        if len(rows) < batch.tokens:  # fewer rows due than tokens: the ledger is drained for now
            return len(rows), poll
        if batch.tokens < want:  # the budget is the limit: let it refill a little
            return len(rows), CLAIM_TICK
        return len(rows), 0.0

    async def _sleep(self, seconds: float, *, for_slot: bool = False) -> None:
        """Sleep, but never past the next housekeeping; wake early on stop() (and on a free slot if asked)."""
        seconds = min(seconds, max(0.0, self._next_housekeeping - time.monotonic()))
        self._wake.clear()
        if self._stop.is_set():
            return
        self._waiting_for_slot = for_slot
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        finally:
            self._waiting_for_slot = False

    def _count(self, what: str) -> None:
        if self._metrics is not None:
            self._metrics.sends.labels(what).inc()

    async def _send(self, row: claim.Claimed) -> None:
        try:
            await self._send_and_record(row)
        except Exception:
            # Only an outcome write can get here (every send error is classified below). The row stays
            # `sending`; when this worker stops, the reaper makes it `unknown`, which is the truth we can prove.
            log.exception("could not record the outcome of delivery %s", row.id)

    async def _call(self, row: claim.Claimed) -> SendResult:
        res: SendResult
        try:
            if row.kind == "reply":
                res = await self._graph.send_text(to=row.phone, text=row.text, callback_data=str(row.id))
            else:
                res = await self._graph.send_announcement(to=row.phone, text=row.text, callback_data=str(row.id))
            return res
        finally:
            self._in_flight -= 1
            if self._waiting_for_slot and self._concurrency - self._in_flight >= self._min_room:
                self._wake.set()

    async def _send_and_record(self, row: claim.Claimed) -> None:
        me, sm = self.worker_id, self._sm
        try:
            res = await self._call(row)
        except SendingPausedError as exc:
            await budget.pause(sm, phone_number_id=self._phone, seconds=PAUSE_SECONDS, reason=exc.title)
            log.error("sending paused by Meta (code %s: %s); retrying in %.0f s", exc.code, exc.title, PAUSE_SECONDS)
            await outcome.record_retry(
                sm, id=row.id, me=me, delay=PAUSE_SECONDS, exhausted=False, code=exc.code, title=exc.title
            )
            self._count("paused")
            return
        except NotSentError as exc:
            if exc.scope == "recipient":
                # Meta's pair rate is about one message per 6 s to one person: retrying this recipient sooner
                # (4**0 = 1 s) only earns another 131056. Everyone else keeps flowing.
                delay = max(PAIR_RATE_MIN_DELAY, pair_rate_delay(row.attempts - 1))
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
        except AmbiguousError as exc:
            # The operator sees `unknown` in the ledger; the log says why (no phone, no wamid in the title).
            log.warning("delivery %s: %s; marked unknown, never resent automatically", row.id, exc.title)
            await outcome.record_unknown(sm, id=row.id, me=me, code=exc.code, title=exc.title)
            self._count("unknown")
            return
        except Exception:  # anything else may have reached Meta: never resend it
            log.exception("unexpected send error; delivery %s marked unknown", row.id)
            await outcome.record_unknown(sm, id=row.id, me=me, title="unexpected error while sending")
            self._count("unknown")
            return
        await self._writer.record(row.id, res.wamid)
        self._sent += 1
        self._count("sent")
