"""The dispatcher loop: fan out, claim (committed, leased), send concurrently, write outcomes, reap, complete.

The faults it is built against, and what it does about each, are listed in docs/architecture.md#fault-model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crypto import SecretKeyError, TokenBox
from bot.db.engine import asyncpg_dsn
from bot.db.queries import query
from bot.graph.client import SendResult
from bot.graph.errors import AmbiguousError, NotSentError, RejectedError, SendingPausedError
from bot.graph.protocol import GraphSender
from bot.graph.retry import pair_rate_delay
from bot.ledger import budget, claim, completion, fanout, outcome, reaper
from bot.ledger.tracker import Tracker, TrackerSource
from bot.metrics import Metrics
from bot.settings import Settings
from bot.templates.catalogue import TemplateCache, choose
from bot.templates.render import components

log = logging.getLogger(__name__)

# When the send budget is the limit, claim again after this long: ~20 rows per claim at 1,000 msg/s.
CLAIM_TICK = 0.02
# Accepted sends are written in batches collected for up to this long (and at most OUTCOME_BATCH rows).
OUTCOME_DELAY = 0.02
OUTCOME_BATCH = 500
# Graph's "template does not exist in this translation": for a template announcement, that delivery's problem.
TEMPLATE_MISSING = 132001
# How long an account-level problem (bad token, locked account, unregistered number) stops every send.
PAUSE_SECONDS = 60.0
# Meta's pair rate: about one message every 6 s to the same recipient (docs/whatsapp.md#throughput-and-pair-rate).
PAIR_RATE_MIN_DELAY = 6.0
# A send that failed on our side only (no free connection in our pool) is tried again after this long.
LOCAL_RETRY_DELAY = 1.0
# The loop retries a failed step (the database is down) after the poll interval, doubling up to this.
MAX_LOOP_RETRY = 5.0
# An outcome that could not be written is written again after this long, doubling up to the cap, for as long as
# it takes: a wamid in hand is the only proof that Meta accepted a send (docs/architecture.md#outcomes).
WRITE_RETRY_FIRST = 0.1
WRITE_RETRY_CAP = 2.0
# On a graceful stop, sends in flight and their outcome writes get this long to finish.
DRAIN_SECONDS = 30.0
# Where work that is due now is announced (bot/db/queries.sql `wake_dispatchers`).
WAKE_CHANNEL = "jem_dispatch"
# A listening connection that dropped is made again after this long, doubling up to the cap; polling covers
# the gap.
LISTEN_RETRY_FIRST = 0.5
LISTEN_RETRY_CAP = 10.0


def _why(exc: BaseException) -> str:
    """A database error in one line, without the statement or its parameters (they may carry phone numbers)."""
    orig = getattr(exc, "orig", None)
    return type(orig if orig is not None else exc).__name__


@dataclass(slots=True)
class Route:
    """A number deliveries go out from: the installation's shared one, or an employer's own."""

    phone_number_id: str
    rate: float
    graph: GraphSender
    # Its WhatsApp Business Account: where its templates come from.
    waba_id: str
    # Monotonic time before which claiming for this number is pointless (drained, backed off, paused).
    next_claim: float = 0.0


# Builds the Graph sender for an employer's own number from its id and (decrypted) access token.
SenderFactory = Callable[[str, str], GraphSender]


def _set_on_close(event: asyncio.Event, _conn: object) -> None:
    event.set()


class _SentWriter:
    """Records accepted sends in batches: one guarded statement per batch instead of one transaction per send.

    The first result into an empty batch waits ``delay`` for company, then writes the whole batch; a full batch
    is written at once. Every caller returns only after its own row is written, so a finished send task still
    means a durable outcome (`drain` relies on it). A write that fails is repeated until the database takes it
    (a wamid already recorded is kept, so writing twice changes nothing).
    """

    def __init__(
        self,
        write: Callable[[list[outcome.Accepted]], Awaitable[None]],
        durably: Callable[[str, Callable[[], Awaitable[object]]], Awaitable[None]],
        *,
        delay: float,
        limit: int,
    ) -> None:
        self._write = write
        self._durably = durably
        self._delay = delay
        self._limit = limit
        self._batch: list[tuple[outcome.Accepted, asyncio.Future[None]]] = []
        self.writes = 0

    async def record(self, accepted: outcome.Accepted) -> None:
        done = asyncio.get_running_loop().create_future()
        self._batch.append((accepted, done))
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
        rows = [accepted for accepted, _ in batch]
        try:
            await self._durably(f"{len(rows)} accepted send(s)", lambda: self._write(rows))
            error: BaseException | None = None
        except BaseException as exc:  # cancelled by a hard stop: every waiter learns it
            error = exc
        self.writes += 1
        for _, done in batch:
            if not done.done():
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)
        if isinstance(error, asyncio.CancelledError):
            raise error


class Dispatcher:
    """Claims due deliveries within the shared send budget and sends them, ``concurrency`` at a time.

    `run()` is the production loop; `run_once()` is one complete pass (housekeeping, claim, completion) for tests.
    The loop claims as soon as there are both free slots and send tokens: it waits for a slot when all are busy,
    for a claim tick when the budget is the limit, and for the poll interval only when nothing is due. Liveness
    (heartbeat and reaper) runs in a task of its own, so it goes on while the loop waits out a database error.
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        graph: GraphSender,
        *,
        metrics: Metrics | None = None,
        worker_id: str | None = None,
        concurrency: int | None = None,
        outcome_delay: float = OUTCOME_DELAY,
        listen_url: str | None = None,
        sender_factory: SenderFactory | None = None,
    ) -> None:
        self._settings = settings
        self._sm = sessionmaker
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
        # Claimed rows whose outcome is not durable yet (the call may be over): the rows this worker is sending.
        self._holding: set[int] = set()
        # A claim raised: it may have committed anyway, leaving rows in `sending` that nobody sends.
        self._orphans_possible = False
        self._rng = random.Random()
        self._next_housekeeping = 0.0
        self._sent = 0
        # When this worker last saw a send from each number go through: a back-off after that starts small again.
        self._ok_at: dict[str, datetime] = {}
        self.claims = 0  # claim transactions that returned rows (the benchmark reports claims/s)
        self.claimed = 0
        self._phone = settings.whatsapp_phone_number_id or "default"
        # The shared number first; employers' own numbers join from the database (`_refresh_routes`). Without a
        # factory (tests, benchmarks) only the shared number is served.
        self._routes: dict[str, Route] = {
            self._phone: Route(self._phone, settings.send_rate, graph, settings.whatsapp_waba_id)
        }
        self._templates = TemplateCache(sessionmaker)
        self._sender_factory = sender_factory
        self._own_tokens: dict[str, bytes] = {}
        self._trackers = TrackerSource(sessionmaker)
        self._tracker: Tracker | None = None
        self._writer = _SentWriter(self._write_sent, self._durably, delay=outcome_delay, limit=OUTCOME_BATCH)
        # LISTEN for work that is due now (None: poll only, e.g. behind PgBouncer in transaction mode).
        self._listen_url = listen_url
        self.wakeups = 0

    @property
    def outcome_writes(self) -> int:
        """Batched writes of accepted sends so far (the benchmark reports rows per write)."""
        return self._writer.writes

    @property
    def phone_number_id(self) -> str:
        return self._phone

    def describe(self) -> str:
        return f"dispatcher {self.worker_id}: {self._in_flight} in flight, {self._sent} sent"

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Look at the ledger now: fan out, claim (called when PostgreSQL says work is due)."""
        self.wakeups += 1
        self._next_housekeeping = 0.0
        for route in self._routes.values():
            route.next_claim = 0.0
        self._wake.set()

    async def run_once(self) -> int:
        """One full pass: heartbeat and reap, fan out, claim and start sends, complete announcements."""
        await self._liveness()
        await self._refresh_routes()
        await fanout.fan_out_due(self._sm)
        await claim.reroute_stranded(self._sm)
        for route in self._routes.values():  # a full pass looks at every number, drained or not
            route.next_claim = 0.0
        rows, _ = await self._claim()
        await completion.complete_finished(self._sm)
        return rows

    async def drain(self, limit: float = DRAIN_SECONDS) -> None:
        """Wait until every started send has answered and its outcome is written (or ``limit`` passes)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=limit)

    async def run(self) -> None:
        await self._durably("first heartbeat", self._liveness)
        log.info(
            "dispatcher %s started: %d sends in flight at most, %g msg/s shared by all dispatchers, leases of %g s",
            self.worker_id, self._concurrency, self._settings.send_rate, self._settings.lease_seconds,
        )  # fmt: skip
        beating = asyncio.create_task(self._beat_forever(), name=f"heartbeat {self.worker_id}")
        listening = (
            asyncio.create_task(self._listen_forever(self._listen_url), name=f"listen {self.worker_id}")
            if self._listen_url
            else None
        )
        retry_in = self._settings.dispatcher_poll_interval
        try:
            while not self._stop.is_set():
                try:
                    await self._step()
                except Exception as exc:
                    # A database blip must not end the loop: inside `serve` nobody would notice, and every
                    # announcement would wait forever. Sends already claimed carry on meanwhile.
                    log.warning("dispatcher %s: loop step failed (%s); retrying in %.1f s", self.worker_id, _why(exc),
                                retry_in)  # fmt: skip
                    self._next_housekeeping = time.monotonic() + retry_in
                    await self._sleep(retry_in)
                    retry_in = min(retry_in * 2, MAX_LOOP_RETRY)
                else:
                    retry_in = self._settings.dispatcher_poll_interval
            await self._finish()
        finally:
            for task in (beating, listening):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            with contextlib.suppress(Exception):
                await reaper.stopped(self._sm, me=self.worker_id)
            log.info("dispatcher %s stopped after %d sends", self.worker_id, self._sent)

    async def _finish(self) -> None:
        await self.drain()
        unfinished = [t for t in self._tasks if not t.done()]
        if unfinished:
            # The database stayed away for the whole drain: these outcomes are lost with this process. Their rows
            # become `unknown` when their leases expire, and Meta's status callbacks settle those that were sent.
            log.error("dispatcher %s: stopping with %d outcome(s) not recorded: deliveries %s", self.worker_id,
                      len(self._holding), sorted(self._holding)[:50])  # fmt: skip
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        with contextlib.suppress(Exception):
            await completion.complete_finished(self._sm)

    async def _beat_forever(self) -> None:
        while True:
            try:
                await self._liveness()
            except Exception as exc:
                log.warning("dispatcher %s: heartbeat failed (%s)", self.worker_id, _why(exc))
            await asyncio.sleep(self._settings.dispatcher_heartbeat_interval)

    async def _listen_forever(self, url: str) -> None:
        """Hold a LISTEN connection of its own; when it drops, make it again. Polling covers every gap."""
        delay = LISTEN_RETRY_FIRST
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
                lost = asyncio.Event()
                conn.add_termination_listener(partial(_set_on_close, lost))
                await conn.add_listener(WAKE_CHANNEL, lambda *_: self.wake())
                delay = LISTEN_RETRY_FIRST
                self.wake()  # whatever was announced while nobody listened
                await lost.wait()
            except Exception as exc:
                log.warning("dispatcher %s: not listening for work (%s); polling meanwhile", self.worker_id, _why(exc))
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_RETRY_CAP)

    async def _liveness(self) -> None:
        """Say we are alive (until our own stale-after), then reap expired leases and silent workers' claims."""
        await reaper.heartbeat(self._sm, me=self.worker_id, ttl=self._settings.dispatcher_stale_after)
        reaped = await reaper.reap(self._sm)
        if reaped:
            log.warning("%d delivery(ies) outlived their lease or their worker: marked unknown", reaped)

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
        # as many round trips as the claims themselves. The next time is set first: a wake-up that arrives while
        # this runs (work committed just after our fan-out looked) must not be overwritten.
        self._next_housekeeping = time.monotonic() + self._settings.dispatcher_poll_interval
        await self._refresh_routes()
        await fanout.fan_out_due(self._sm)
        await completion.complete_finished(self._sm)
        if self._sender_factory is not None and await claim.reroute_stranded(self._sm):
            log.warning("deliveries waiting for a number their employer no longer has were moved to its current one")
        # The fan-out may have made rows due on any number: each is looked at again now.
        for route in self._routes.values():
            route.next_claim = 0.0

    async def _refresh_routes(self) -> None:
        """Employers' own numbers, as the database has them now: a changed sender affects what is not yet sent."""
        if self._sender_factory is None:
            return
        async with self._sm() as s:
            rows = (await s.execute(query("senders_all"))).all()
        current = {r.phone_number_id: r for r in rows}
        for pnid in [p for p in self._routes if p != self._phone and p not in current]:
            del self._routes[pnid]
            self._own_tokens.pop(pnid, None)
        if not current:
            return
        if not self._settings.secret_key:
            log.error("employers have their own numbers but JEM_SECRET_KEY is not set: their deliveries wait")
            return
        box = TokenBox(self._settings.secret_key)
        for pnid, row in current.items():
            sealed = bytes(row.access_token)
            route = self._routes.get(pnid)
            if route is not None and self._own_tokens.get(pnid) == sealed:
                route.rate = float(row.rate)
                continue
            try:
                graph = self._sender_factory(pnid, box.open(sealed))
            except SecretKeyError as exc:
                log.error("own number of employer %s: %s; its deliveries wait", row.employer_id, exc)
                continue
            self._routes[pnid] = Route(
                pnid, float(row.rate), graph, row.waba_id, 0.0 if route is None else route.next_claim
            )
            self._own_tokens[pnid] = sealed

    async def _claim(self) -> tuple[int, float]:
        """Claim what the free slots and each number's budget allow and start sending it; returns (rows, seconds
        until claiming again could find anything)."""
        if self._tracker is None:
            self._tracker = await self._trackers.get()
        if self._orphans_possible:
            released = await reaper.release_orphans(self._sm, me=self.worker_id, keep=self._holding)
            self._orphans_possible = False
            if released:
                log.warning("dispatcher %s: %d claimed row(s) that were never sent went back to pending",
                            self.worker_id, len(released))  # fmt: skip
        claimed = 0
        for route in list(self._routes.values()):
            now = time.monotonic()
            if route.next_claim > now:
                continue
            room = self._concurrency - self._in_flight
            if room <= 0:
                break
            woken = self.wakeups
            rows, pause = await self._claim_for(route, min(self._settings.dispatcher_batch_size, room))
            claimed += rows
            # A wake-up that arrived during the claim (work committed after it looked) must not be overwritten.
            route.next_claim = now + pause if self.wakeups == woken else 0.0
        soonest = min(route.next_claim for route in self._routes.values())
        return claimed, max(0.0, soonest - time.monotonic())

    async def _claim_for(self, route: Route, want: int) -> tuple[int, float]:
        """One number's claim; returns (rows, seconds before claiming for it again is worthwhile)."""
        try:
            batch = await claim.claim_within_budget(
                self._sm,
                me=self.worker_id,
                n=want,
                phone_number_id=route.phone_number_id,
                default_phone_number_id=self._phone,
                rate=route.rate,
                lease=self._settings.lease_seconds,
            )
        except BaseException:
            # The claim may have committed although we saw it fail (the connection dropped during COMMIT).
            self._orphans_possible = True
            raise
        rows = batch.rows
        if rows:
            self.claims += 1
            self.claimed += len(rows)
        tracker = self._tracker
        assert tracker is not None
        for row in rows:
            self._in_flight += 1
            self._holding.add(row.id)
            task = asyncio.create_task(self._send(row, tracker, route))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if batch.skipped:
            log.info("%d delivery(ies) skipped at send time: the employee opted out or was deactivated", batch.skipped)
        poll = self._settings.dispatcher_poll_interval
        if batch.blocked_for > 0:  # backed off or paused: nothing can go before it ends
            return len(rows), min(poll, batch.blocked_for)
        if len(rows) + batch.skipped < batch.tokens:  # fewer rows due than tokens: the ledger is drained for now
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

    async def _durably(self, what: str, write: Callable[[], Awaitable[object]]) -> None:
        """Run ``write`` until the database takes it. Every write given here is guarded and safe to repeat."""
        delay = WRITE_RETRY_FIRST
        while True:
            try:
                await write()
                return
            except Exception as exc:
                log.warning("dispatcher %s: %s not written yet (%s); trying again in %.1f s",
                            self.worker_id, what, _why(exc), delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, WRITE_RETRY_CAP)

    async def _write_sent(self, rows: list[outcome.Accepted]) -> None:
        await outcome.record_sent_many(self._sm, sent=rows, default_phone_number_id=self._phone)

    async def _send(self, row: claim.Claimed, tracker: Tracker, route: Route) -> None:
        try:
            await self._send_and_record(row, tracker, route)
        finally:
            self._holding.discard(row.id)

    async def _call(self, row: claim.Claimed, tracker: Tracker, route: Route) -> tuple[SendResult, str | None]:
        """Send the row from the route's number; returns Graph's answer and the template translation used."""
        graph = route.graph
        res: SendResult
        try:
            if row.template is not None:
                return await self._send_template(row, tracker, route)
            if row.payload is not None:
                res = await graph.send_interactive(
                    to=row.phone,
                    interactive=row.payload,
                    callback_data=tracker.make(row.id),
                    recipient_user_id=row.recipient_user_id,
                )
            elif row.kind == "reply":
                res = await graph.send_text(
                    to=row.phone,
                    text=row.text,
                    callback_data=tracker.make(row.id),
                    recipient_user_id=row.recipient_user_id,
                )
            else:
                res = await graph.send_announcement(
                    to=row.phone, text=row.text, callback_data=tracker.make(row.id), ack_payload=f"ack:{row.id}"
                )
            return res, None
        finally:
            self._in_flight -= 1
            if self._waiting_for_slot and self._concurrency - self._in_flight >= self._min_room:
                self._wake.set()

    async def _send_template(self, row: claim.Claimed, tracker: Tracker, route: Route) -> tuple[SendResult, str | None]:
        """A template announcement in the employee's language, else the employer's, else any approved translation
        (docs/architecture.md#templates): one missing translation never fails the announcement."""
        template = row.template or {}
        name = str(template.get("name", ""))
        options = await self._templates.get(route.waba_id, name)
        chosen = choose(options, row.employee_language, row.employer_language)
        if chosen is None:
            raise RejectedError(f"template {name!r} has no approved translation in this account's catalogue")
        parts = components(chosen, list(template.get("parameters") or []), template.get("header"), f"ack:{row.id}")
        try:
            res = await route.graph.send_template(
                to=row.phone, name=name, language=chosen.language, components=parts, callback_data=tracker.make(row.id)
            )
        except SendingPausedError as exc:
            if exc.code != TEMPLATE_MISSING:
                raise
            # This template (or this translation) is gone from Meta's side: our catalogue is out of date. It fails
            # this delivery, not the whole number; the next sync brings the catalogue up to date.
            self._templates.forget(route.waba_id, name)
            raise RejectedError(f"{exc.title} (the template catalogue is out of date: POST /templates/sync)",
                                code=exc.code, http_status=exc.http_status) from None  # fmt: skip
        return res, chosen.language

    async def _send_and_record(self, row: claim.Claimed, tracker: Tracker, route: Route) -> None:
        sm, what, phone = self._sm, f"the outcome of delivery {row.id}", route.phone_number_id
        try:
            res, language = await self._call(row, tracker, route)
        except SendingPausedError as exc:
            pause = partial(budget.pause, sm, phone_number_id=phone, seconds=PAUSE_SECONDS, reason=exc.title)
            await self._durably("a sender pause", pause)
            log.error("sending from number %s paused by Meta (code %s: %s); retrying in %.0f s", phone, exc.code,
                      exc.title, PAUSE_SECONDS)  # fmt: skip
            # Due at once: the number's pause holds the row back, and only the pause. A new token (`PUT /sender`
            # ends the pause) or a move to another number then sends it without waiting out a delay of its own.
            retry = partial(self._retry, row, delay=0.0, spent=False, code=exc.code, title=exc.title)
            await self._durably(what, retry)
            self._count("paused")
            return
        except NotSentError as exc:
            await self._not_sent(row, exc, route)
            return
        except RejectedError as exc:
            fail = partial(outcome.record_failed, sm, id=row.id, claim=row.claim, code=exc.code, title=exc.title)
            await self._durably(what, fail)
            self._count("failed")
            return
        except AmbiguousError as exc:
            # The operator sees `unknown` in the ledger; the log says why (no phone, no wamid in the title).
            log.warning("delivery %s: %s; marked unknown, never resent automatically", row.id, exc.title)
            unknown = partial(outcome.record_unknown, sm, id=row.id, claim=row.claim, code=exc.code, title=exc.title)
            await self._durably(what, unknown)
            self._count("unknown")
            return
        except Exception:  # anything else may have reached Meta: never resend it
            log.exception("unexpected send error; delivery %s marked unknown", row.id)
            title = "unexpected error while sending"
            await self._durably(what, partial(outcome.record_unknown, sm, id=row.id, claim=row.claim, title=title))
            self._count("unknown")
            return
        # Pacing (held_for_quality_assessment, paused) is kept: the operator must not read it as a plain send.
        status = res.message_status if res.message_status not in (None, "accepted") else None
        self._ok_at[phone] = datetime.now(UTC)
        await self._writer.record(outcome.Accepted(row.id, res.wamid, res.user_id, phone, language, status))
        self._sent += 1
        self._count("sent")

    async def _not_sent(self, row: claim.Claimed, exc: NotSentError, route: Route) -> None:
        what = f"the outcome of delivery {row.id}"
        retry = partial(self._retry, row, code=exc.code, title=exc.title)
        if exc.scope == "sender":
            # Not this recipient's problem: the whole sender waits (shared by every worker), and the attempt is
            # given back, so an outage of any length fails nobody.
            reason = f"{exc.title} (code {exc.code})" if exc.code is not None else exc.title
            waits = await self._back_off(route.phone_number_id, reason, exc.retry_after)
            log.warning("sender backed off for %.1f s: %s", waits, reason)
            await self._durably(what, partial(retry, delay=waits, spent=False))
        elif exc.scope == "recipient":
            if row.attempts >= self._settings.max_send_attempts:
                fail = partial(outcome.record_failed, self._sm, id=row.id, claim=row.claim, code=exc.code,
                               title=exc.title)  # fmt: skip
                await self._durably(what, fail)
                self._count("failed")
                return
            # Meta's pair rate is about one message per 6 s to one person: retrying this recipient sooner only
            # earns another 131056. Everyone else keeps flowing.
            delay = max(PAIR_RATE_MIN_DELAY, exc.retry_after or 0.0, pair_rate_delay(row.attempts - 1))
            await self._durably(what, partial(retry, delay=delay, spent=True))
        else:
            await self._durably(what, partial(retry, delay=LOCAL_RETRY_DELAY, spent=False))
        self._count("retry")

    async def _back_off(self, phone_number_id: str, reason: str, retry_after: float | None) -> float:
        waits = 0.0

        async def write() -> None:
            nonlocal waits
            waits = await budget.back_off(
                self._sm,
                phone_number_id=phone_number_id,
                reason=reason,
                retry_after=retry_after,
                base=self._settings.sender_backoff_base,
                cap=self._settings.sender_backoff_cap,
                ok_at=self._ok_at.get(phone_number_id),
            )

        await self._durably("a sender back-off", write)
        return waits

    async def _retry(self, row: claim.Claimed, *, delay: float, spent: bool, code: int | None, title: str) -> int:
        return await outcome.record_retry(
            self._sm, id=row.id, claim=row.claim, delay=delay, spent=spent, code=code, title=title
        )
