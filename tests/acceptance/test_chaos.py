"""Chaos: real `jem-bot worker` processes, `jem-bot serve` and `jem-bot simulator`, with faults injected mid-dispatch.

(a) the database is cut off (every connection dropped, new ones refused for a few seconds) while sends are in
    flight, twice, through a TCP proxy between the workers and PostgreSQL (tests/acceptance/chaos_proxy.py);
(b) the Graph API is unreachable for 60 s while an announcement drains (`POST /_simulator/outage`);
(c) employees send STOP, and others are deactivated, while a slow announcement drains;
(d) the same ~100 statuses are posted concurrently in opposite orders, round after round, to a real `serve`.

Every scenario then checks the promises: the simulator saw no duplicate; no row stayed `sending` past its lease
(plus a reaper round); nothing `failed` because of the fault; nobody opted out or deactivated was sent the
announcement after the fact; every delivery is terminal and every announcement `completed`; each message the
simulator accepted is one sent/delivered/read row, and a row still `unknown` is one the simulator never accepted
(the operator's resend-unknown, after checking that, is the reconciliation). Each scenario also fails when its
fault did not really happen, and prints one summary line (run with -s, or read the CI log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import LEASE_MARGIN
from bot.simulator.phone import inbound_body, sign, status_body
from bot.webhook.service import REPLIES
from tests.acceptance.chaos_proxy import PgProxy, Upstream, proxied_url
from tests.acceptance.test_never_twice import Fleet, free_port, poll, scalar
from tests.conftest import APP_SECRET, PHONE_NUMBER_ID, VERIFY_TOKEN, Tenant

pytestmark = pytest.mark.chaos

GRAPH_TIMEOUT = 2.0
HEARTBEAT = 0.25
STALE_AFTER = 2.0  # >= 3 heartbeats (Settings refuses less)
LEASE = GRAPH_TIMEOUT + LEASE_MARGIN  # the dispatcher's Settings.lease_seconds
# A `sending` row outlives its lease by at most one reaper round (every heartbeat, by every worker); the rest is
# slack for a 2-core machine running PostgreSQL, the simulator, serve, the workers and this test at once.
REAP_SLACK = 2.0
LATENCY_MS = 50
WORKERS = 2

TERMINAL = {"sent", "delivered", "read", "failed", "unknown", "skipped", "cancelled"}
REACHED = ("sent", "delivered", "read")


def phone(i: int) -> str:
    return f"+2783{i:07d}"


# ---------------------------------------------------------------------------------------------------------------
# The rig: processes, HTTP, the ledger, the simulator's view.


@dataclass
class Rig:
    fleet: Fleet
    http: httpx.AsyncClient
    db: async_sessionmaker[AsyncSession]
    tenant: Tenant
    api: str = ""
    sim: str = ""
    # The oldest claim seen in `sending` (seconds since claimed_at), sampled by every poll of `settle`/`watch`.
    oldest_sending: float = 0.0

    async def start(
        self, *, rate: float, employees: int, worker_database_url: str | None = None, webhook: bool = True
    ) -> None:
        """Simulator, `serve --no-dispatcher` and WORKERS workers; employees +2783000000..; all healthy."""
        api_port, sim_port = free_port(), free_port()
        self.api, self.sim = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
        env = self.fleet.env
        env["WHATSAPP_API_URL"] = f"{self.sim}/v23.0"
        env["JEM_SEND_RATE"] = str(rate)
        self.fleet.start(
            "simulator",
            *("simulator", "--port", str(sim_port), "--latency-ms", str(LATENCY_MS)),
            *(("--webhook", f"{self.api}/webhooks/whatsapp") if webhook else ()),
            # No replies: the only sends besides the announcements are answers to the test's own STOPs.
            *("--ack-rate", "0", "--reply-rate", "0", "--stop-rate", "0"),
        )
        self.fleet.start("serve", "serve", "--no-dispatcher", "--port", str(api_port))
        if worker_database_url is not None:
            self.fleet.env = {**env, "DATABASE_URL": worker_database_url}
        for _ in range(WORKERS):
            self.fleet.start("worker", "worker")
        self.fleet.env = env
        await poll("the API's /health", lambda: self.answers(f"{self.api}/health"), within=30, fleet=self.fleet)
        await poll("the simulator", lambda: self.answers(f"{self.sim}/_simulator/stats"), within=30, fleet=self.fleet)

        async def registered() -> bool:
            n = await scalar(self.db, "SELECT count(*) FROM worker WHERE stopped_at IS NULL AND expires_at > now()")
            return int(n) >= WORKERS

        await poll("every worker's first heartbeat", registered, within=30, fleet=self.fleet)
        people = [{"phone": phone(i), "name": f"Employee {i}"} for i in range(employees)]
        imported = await self.http.post(
            f"{self.api}/employees/import", json={"employees": people}, headers=self.tenant.headers
        )
        assert imported.status_code == 200, imported.text
        assert imported.json()["created"] == employees

    @contextlib.contextmanager
    def tails_on_failure(self) -> Iterator[None]:
        """On a failure, print the end of every process's output (pytest shows it with the failure)."""
        try:
            yield
        except BaseException:
            print(f"process output:\n{self.fleet.tails()}")
            raise

    async def answers(self, url: str) -> bool:
        try:
            return (await self.http.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    async def announce(self, message: str) -> int:
        created = await self.http.post(
            f"{self.api}/announcements",
            json={"message": message, "audience": {"all": True}},
            headers=self.tenant.headers,
        )
        assert created.status_code == 201, created.text
        return int(created.json()["id"])

    async def sim_stats(self) -> dict[str, Any]:
        response = await self.http.get(f"{self.sim}/_simulator/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    async def accepted(self, message: str) -> dict[str, list[float]]:
        """Recipient digits -> acceptance times (wall clock) of every accepted send of ``message``."""
        response = await self.http.get(f"{self.sim}/_simulator/sends")
        response.raise_for_status()
        out: dict[str, list[float]] = {}
        for recipient in response.json()["recipients"]:
            times = [float(m["at"]) for m in recipient["messages"] if m["text"] == message]
            if times:
                out[recipient["recipient"]] = times
        return out

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.db() as s:
            return list((await s.execute(text(sql), params)).all())

    async def counts(self) -> Counter[str]:
        rows = await self.rows("SELECT status, count(*) FROM delivery WHERE kind = 'announcement' GROUP BY 1")
        return Counter({str(status): int(n) for status, n in rows})

    async def watch(self) -> Counter[str]:
        """The ledger's counts; notes the oldest `sending` claim (a row stuck past its lease is a finding)."""
        async with self.db() as s:
            oldest = (
                await s.execute(
                    text("SELECT max(extract(epoch FROM now() - claimed_at)) FROM delivery WHERE status = 'sending'")
                )
            ).scalar()
        self.oldest_sending = max(self.oldest_sending, float(oldest or 0.0))
        return await self.counts()

    async def settle(self, ids: list[int], *, within: float) -> None:
        """Every delivery out of pending/sending (replies too) and every announcement completed."""

        async def done() -> bool:
            await self.watch()
            async with self.db() as s:
                open_rows, completed = (
                    await s.execute(
                        text("""SELECT (SELECT count(*) FROM delivery WHERE status IN ('pending', 'sending')),
                                       (SELECT count(*) FROM announcement
                                        WHERE id = ANY(:ids) AND status = 'completed')"""),
                        {"ids": ids},
                    )
                ).one()
            return open_rows == 0 and completed == len(ids)

        await poll("every delivery settled and every announcement completed", done, within=within, fleet=self.fleet)

    async def reconcile(self, aid: int, message: str, *, within: float = 30.0) -> Reconciled:
        """Let status callbacks settle what they can, then resend (the operator's decision) what is still
        `unknown`, after checking at the simulator that none of it was ever accepted."""
        ever = int(await scalar(self.db, "SELECT count(*) FROM delivery WHERE unknown_at IS NOT NULL"))

        async def callbacks_in() -> bool:
            # Every accepted send is a reached row (its own answer or its `sent` status), and no `unknown` row
            # can still be in a Graph call (its claim's lease is over), so the simulator's view is final.
            counts = await self.watch()
            reached = sum(counts[s] for s in REACHED)
            accepted = sum(len(t) for t in (await self.accepted(message)).values())
            live = await scalar(
                self.db,
                """SELECT count(*) FROM delivery
                   WHERE status = 'unknown' AND claimed_at > now() - make_interval(secs => :l)""",
                l=LEASE,
            )
            return reached == accepted and int(live) == 0

        await poll("status callbacks to settle every accepted send", callbacks_in, within=within, fleet=self.fleet)
        unknown = await self.rows(
            """SELECT d.id, e.phone, d.error_title, extract(epoch FROM d.unknown_at), extract(epoch FROM d.claimed_at)
               FROM delivery d JOIN employee e ON e.id = d.employee_id
               WHERE d.status = 'unknown' AND d.announcement_id = :a ORDER BY d.id""",
            a=aid,
        )
        result = Reconciled(ever=ever, after_callbacks=len(unknown), rows=[tuple(r) for r in unknown])
        if not unknown:
            return result
        accepted = await self.accepted(message)
        were_accepted = [r for r in unknown if r[1].removeprefix("+") in accepted]
        assert were_accepted == [], f"`unknown` rows the simulator accepted, never settled by a status: {were_accepted}"
        answer = await self.http.post(f"{self.api}/announcements/{aid}/resend-unknown", headers=self.tenant.headers)
        assert answer.status_code == 200, answer.text
        result.resent = int(answer.json()["resent"])
        assert result.resent == len(unknown), answer.text
        await self.settle([aid], within=within)
        result.after_resend = (await self.counts())["unknown"]
        return result


@dataclass
class Reconciled:
    ever: int  # rows that were `unknown` at some point
    after_callbacks: int  # still `unknown` once every status callback was in: never accepted by the simulator
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    resent: int = 0
    after_resend: int = 0

    def __str__(self) -> str:
        return f"unknown ever={self.ever} after_callbacks={self.after_callbacks} after_resend={self.after_resend}"


async def check_promises(
    rig: Rig, name: str, aid: int, message: str, *, sending_bound: float, summary: str
) -> dict[str, Any]:
    """The checks every scenario ends with; returns the simulator's stats."""
    await rig.settle([aid], within=30)
    stats = await rig.sim_stats()
    by_status = await rig.watch()
    shown = (await rig.http.get(f"{rig.api}/announcements/{aid}", headers=rig.tenant.headers)).json()
    accepted = await rig.accepted(message)
    deliveries = await rig.rows(
        """SELECT d.id, e.phone, d.status, d.skip_reason, extract(epoch FROM e.opted_out_at),
                  extract(epoch FROM e.deactivated_at)
           FROM delivery d JOIN employee e ON e.id = d.employee_id WHERE d.announcement_id = :a""",
        a=aid,
    )
    context = f"{name}: {summary} statuses={dict(sorted(by_status.items()))}"
    assert stats["duplicates"] == 0, context
    assert stats["duplicate_sends"] == 0, context
    assert stats["callbacks_failed"] == 0, context
    assert rig.oldest_sending <= sending_bound, f"a row stayed `sending` {rig.oldest_sending:.1f} s; {context}"
    assert by_status["sending"] == by_status["pending"] == 0, context
    assert by_status["failed"] == 0, context  # no fault here fails a recipient: an outage never may
    assert set(by_status) <= TERMINAL, context
    assert shown["status"] == "completed", context
    assert shown["counts"]["total"] == len(deliveries), context
    # Each accepted message is one reached row, and each reached row one accepted message, recipient by recipient.
    reached = {r[1].removeprefix("+") for r in deliveries if r[2] in REACHED}
    assert {who for who, times in accepted.items() if len(times) == 1} == reached, context
    assert all(len(times) == 1 for times in accepted.values()), context
    # Nobody opted out or deactivated is sent the announcement afterwards (times: the database's and the
    # simulator's clocks, both this machine's).
    late = []
    for delivery_id, employee_phone, status, _, opted_out_at, deactivated_at in deliveries:
        cutoffs = [float(x) for x in (opted_out_at, deactivated_at) if x is not None]
        times = accepted.get(employee_phone.removeprefix("+"), [])
        if cutoffs and any(t > min(cutoffs) for t in times):
            late.append((delivery_id, status, [round(t - min(cutoffs), 3) for t in times]))
    assert late == [], f"sent after opting out or deactivation: {late}; {context}"
    return stats


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


@pytest.fixture
async def rig(
    tmp_path: Path, database_url: str, db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> AsyncIterator[Rig]:
    # Nothing from the developer's environment may leak in: the processes see only this run's settings.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WHATSAPP_", "JEM_")) and k not in ("DATABASE_URL", "TEST_DATABASE_URL")
    }
    env |= {
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url,
        "JEM_DATA_DIR": str(tmp_path / "jem"),
        "WHATSAPP_ACCESS_TOKEN": "chaos-graph-token",
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
        "JEM_GRAPH_TIMEOUT": str(GRAPH_TIMEOUT),
        "JEM_DISPATCHER_HEARTBEAT": str(HEARTBEAT),
        "JEM_DISPATCHER_STALE_AFTER": str(STALE_AFTER),
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(logs, env)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            yield Rig(fleet, http, db, tenant)
    finally:
        fleet.stop_all()


async def until(what: str, check: Callable[[], Awaitable[Any]], rig: Rig, *, within: float) -> Any:
    return await poll(what, check, within=within, fleet=rig.fleet)


def first_after(times: Iterable[float], t: float) -> float | None:
    later = [x for x in times if x >= t]
    return min(later) if later else None


# ---------------------------------------------------------------------------------------------------------------
# (a) The database cut off during dispatch.

CUT_SECONDS = 3.0
CUTS = 2


async def test_database_cut_twice_during_dispatch(
    rig: Rig, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with rig.tails_on_failure():
        await db_cut(rig, database_url, capsys)


async def db_cut(rig: Rig, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    employees, rate = 600, 60.0
    started = time.monotonic()
    proxy = PgProxy(Upstream.from_url(database_url))
    await proxy.start()
    try:
        await rig.start(rate=rate, employees=employees, worker_database_url=proxied_url(database_url, proxy.port))
        message = "Chaos (a): the database goes away, twice"
        aid = await rig.announce(message)
        cuts: list[dict[str, Any]] = []
        for k in range(1, CUTS + 1):

            async def in_flight(k: int = k) -> int:
                counts = await rig.watch()
                reached = sum(counts[s] for s in REACHED)
                assert reached < employees, f"the announcement drained before cut {k}: nothing left to cut into"
                return counts["sending"] if reached >= employees * k / (CUTS + 1) else 0

            sending = await until(f"sends in flight for cut {k}", in_flight, rig, within=60)
            before = proxy.connections
            cut = await proxy.cut(CUT_SECONDS)
            ended = time.time()

            async def reconnected(before: int = before) -> bool:
                await rig.watch()
                return proxy.connections > before

            await until(f"the workers to reconnect after cut {k}", reconnected, rig, within=15)
            cuts.append({"sending": sending, "cut": cut.connections_cut, "refused": cut.refused, "ended": ended})
            # The fault really happened: live connections were dropped, and new ones refused while it lasted.
            assert cut.connections_cut > 0, cuts
            assert cut.refused > 0, cuts

        await rig.settle([aid], within=90)
        rec = await rig.reconcile(aid, message)
        accepted = await rig.accepted(message)
        all_times = sorted(t for times in accepted.values() for t in times)
        firsts = [first_after(all_times, c["ended"]) for c in cuts]
        recover = [None if f is None else round(f - c["ended"], 2) for f, c in zip(firsts, cuts, strict=True)]
        stats = await rig.sim_stats()
        summary = (
            f"messages={stats['messages_accepted']} faults=db_cuts:{len(cuts)}x{CUT_SECONDS:g}s "
            f"in_flight_at_cut={[c['sending'] for c in cuts]} connections_cut={[c['cut'] for c in cuts]} "
            f"refused_probes={[c['refused'] for c in cuts]} duplicates={stats['duplicates']} {rec} "
            f"resent={rec.resent} recover_s={recover} oldest_sending={rig.oldest_sending:.1f}s"
        )
        # No claim stays `sending` longer than its lease, a reaper round, and the cut during which nobody can reap.
        await check_promises(
            rig, "db-cut", aid, message, sending_bound=LEASE + CUT_SECONDS + REAP_SLACK, summary=summary
        )
        counts = await rig.counts()
        assert sum(counts[s] for s in REACHED) == employees, summary  # everyone reached in the end
        assert None not in recover, f"nothing was sent after a cut: {summary}"
        # The workers lived through the cuts and still stop cleanly (SIGTERM: exit 0).
        workers = [p for p in rig.fleet.procs if p.name == "worker"]
        await asyncio.to_thread(rig.fleet.stop_all)
        assert [p.popen.returncode for p in workers] == [0] * WORKERS, rig.fleet.tails()
        report(capsys, f"chaos db-cut: {summary} took={time.monotonic() - started:.1f}s")
    finally:
        # The workers stop cleanly (their last writes go through the proxy) before the proxy goes; in a thread,
        # so this event loop, which runs the proxy, keeps forwarding meanwhile.
        await asyncio.to_thread(rig.fleet.stop_all)
        await proxy.close()


# ---------------------------------------------------------------------------------------------------------------
# (b) Graph unreachable for 60 s while an announcement drains.

OUTAGE_SECONDS = 60


async def test_graph_outage_of_a_minute_fails_nobody_and_spends_no_attempts(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    with rig.tails_on_failure():
        await graph_outage(rig, capsys)


async def graph_outage(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    employees, rate = 400, 40.0
    started = time.monotonic()
    await rig.start(rate=rate, employees=employees)
    message = "Chaos (b): Graph is down for a minute"
    aid = await rig.announce(message)

    async def draining() -> int:
        counts = await rig.watch()
        reached = sum(counts[s] for s in REACHED)
        assert reached < employees, "the announcement drained before the outage"
        return reached if reached >= employees // 5 else 0

    reached_before = await until("a fifth of the audience reached", draining, rig, within=60)
    answer = await rig.http.post(f"{rig.sim}/_simulator/outage", json={"seconds": OUTAGE_SECONDS})
    assert answer.status_code == 200, answer.text
    outage_at = time.time()

    async def refused() -> bool:
        # A new connection, not the client's pool: the one that answered the POST has just been dropped.
        host, port = rig.sim.removeprefix("http://").split(":")
        try:
            _, probe = await asyncio.open_connection(host, int(port))
        except ConnectionRefusedError:
            return True
        probe.close()
        await probe.wait_closed()
        return False

    await until("the simulator to refuse connections", refused, rig, within=5)

    async def backed_off() -> str | None:
        await rig.watch()
        sender = (await rig.http.get(f"{rig.api}/sender", headers=rig.tenant.headers)).json()
        reason: str | None = sender.get("backoff_reason")
        return reason

    backoff_reason = await until("GET /sender to show the back-off", backed_off, rig, within=20)
    assert time.time() < outage_at + OUTAGE_SECONDS, "the back-off was seen only after the outage"
    # Sends were refused and put back as they were, waiting: pending with the reason, no attempt spent.
    waiting = await rig.rows(
        """SELECT count(*) FILTER (WHERE status = 'pending' AND error_title IS NOT NULL),
                  count(*) FILTER (WHERE status = 'failed'), max(attempts)
           FROM delivery WHERE announcement_id = :a""",
        a=aid,
    )
    refused_rows, failed_during, max_attempts_during = waiting[0]

    async def outage_over() -> bool:
        await rig.watch()
        failed = (await rig.counts())["failed"]
        assert failed == 0, f"{failed} delivery(ies) failed during the outage"
        return await rig.answers(f"{rig.sim}/_simulator/stats")

    await until("the outage to end", outage_over, rig, within=OUTAGE_SECONDS + 15)
    ended_at = time.time()
    stats = await rig.sim_stats()
    assert stats["outages"] == 1, stats
    assert not stats["outage_active"], stats

    await rig.settle([aid], within=60)
    # Only sends in flight when the connection dropped may be `unknown` (the request had left); a refused
    # connection proves nothing was sent, so every later send was given back, not marked unknown.
    early = await rig.rows(
        """SELECT id, extract(epoch FROM unknown_at), error_title FROM delivery
           WHERE announcement_id = :a AND unknown_at IS NOT NULL AND extract(epoch FROM unknown_at) > :t""",
        a=aid,
        t=outage_at + GRAPH_TIMEOUT + 1.0,
    )
    assert early == [], f"sends made `unknown` after the outage began (refusals must be retried): {early}"
    rec = await rig.reconcile(aid, message, within=60)
    accepted = await rig.accepted(message)
    all_times = sorted(t for times in accepted.values() for t in times)
    first = first_after(all_times, ended_at)
    assert first is not None, "nothing was sent after the outage"
    recover, last = first - ended_at, all_times[-1] - ended_at
    attempts = await rig.rows(
        "SELECT attempts, resend_count, count(*) FROM delivery WHERE announcement_id = :a GROUP BY 1, 2", a=aid
    )
    stats = await rig.sim_stats()
    summary = (
        f"messages={stats['messages_accepted']} faults=graph_outage:{OUTAGE_SECONDS}s(outages={stats['outages']}) "
        f"reached_before={reached_before} refused_rows_waiting={refused_rows} backoff_reason={backoff_reason!r} "
        f"duplicates={stats['duplicates']} {rec} resent={rec.resent} (unknown at the drop: {rec.rows}) "
        f"attempts={sorted((int(a), int(r), int(n)) for a, r, n in attempts)} "
        f"first_send_after_s={recover:.1f} last_send_after_s={last:.1f} oldest_sending={rig.oldest_sending:.1f}s"
    )
    await check_promises(rig, "graph-outage", aid, message, sending_bound=LEASE + REAP_SLACK, summary=summary)
    counts = await rig.counts()
    # The whole audience is reached, nobody failed, and the outage spent no attempt: one per delivery, plus one
    # for each send the operator explicitly resent (it was dropped in flight, `unknown`, never accepted).
    assert sum(counts[s] for s in REACHED) == employees, summary
    assert failed_during == 0, summary
    assert max_attempts_during == 1, summary
    assert [(a, r) for a, r, _ in attempts if a != 1 + r] == [], summary
    assert refused_rows > 0, summary  # the outage really refused sends
    report(capsys, f"chaos graph-outage: {summary} took={time.monotonic() - started:.1f}s")


# ---------------------------------------------------------------------------------------------------------------
# (c) STOP and deactivation during a slow drain.

STOPS = 20
DEACTIVATIONS = 5
# Chosen employees are at least this many rows behind the claim front (3 s at 20 msg/s): still `pending`, not
# claimed while the test posts their STOPs.
FRONT_MARGIN = 60


async def test_stop_and_deactivation_during_a_slow_drain_are_obeyed(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    with rig.tails_on_failure():
        await stop_and_deactivate(rig, capsys)


async def stop_and_deactivate(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    employees, rate = 200, 20.0
    started = time.monotonic()
    await rig.start(rate=rate, employees=employees)
    message = "Chaos (c): slow announcement, some say STOP"
    aid = await rig.announce(message)

    async def draining() -> bool:
        counts = await rig.watch()
        return sum(counts[s] for s in REACHED) >= 40

    await until("40 employees reached", draining, rig, within=60)
    queue = await rig.rows(
        """SELECT d.id, e.id, e.phone FROM delivery d JOIN employee e ON e.id = d.employee_id
           WHERE d.announcement_id = :a AND d.status = 'pending' ORDER BY d.next_attempt_at, d.id""",
        a=aid,
    )
    behind = queue[FRONT_MARGIN:]
    assert len(behind) >= STOPS + DEACTIVATIONS, f"only {len(queue)} pending: the drain is too fast for the test"
    chosen = random.Random().sample(behind, STOPS + DEACTIVATIONS)
    stop, deactivate = chosen[:STOPS], chosen[STOPS:]
    already = await rig.accepted(message)
    assert [c for c in chosen if c[2].removeprefix("+") in already] == [], "chose someone already sent"

    async def post_stop(employee_phone: str) -> float:
        body = json.dumps(
            inbound_body(employee_phone.removeprefix("+"), {"type": "text", "text": {"body": "STOP"}}),
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(APP_SECRET, body)}
        answer = await rig.http.post(f"{rig.api}/webhooks/whatsapp", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        return time.time()

    async def post_delete(employee_id: int) -> float:
        answer = await rig.http.delete(f"{rig.api}/employees/{employee_id}", headers=rig.tenant.headers)
        assert answer.status_code in (200, 204), answer.text
        return time.time()

    acked = await asyncio.gather(*(post_stop(c[2]) for c in stop), *(post_delete(c[1]) for c in deactivate))
    acked_at = {c[2].removeprefix("+"): t for c, t in zip(chosen, acked, strict=True)}
    states = await rig.rows("SELECT status FROM delivery WHERE id = ANY(:ids)", ids=[c[0] for c in chosen])
    in_flight = sum(1 for (s,) in states if s == "sending")

    await rig.settle([aid], within=60)
    rec = await rig.reconcile(aid, message)
    accepted = await rig.accepted(message)
    sent_after = {who: times for who, times in accepted.items() if who in acked_at}
    confirmations = await rig.accepted(REPLIES["stop"])
    skipped = await rig.rows(
        """SELECT e.phone, d.status, d.skip_reason FROM delivery d JOIN employee e ON e.id = d.employee_id
           WHERE d.announcement_id = :a AND d.id = ANY(:ids)""",
        a=aid,
        ids=[c[0] for c in chosen],
    )
    by_phone = {p.removeprefix("+"): (s, r) for p, s, r in skipped}
    stats = await rig.sim_stats()
    summary = (
        f"messages={stats['messages_accepted']} faults=stop:{STOPS},deactivated:{DEACTIVATIONS} "
        f"in_flight_when_acked={in_flight} stop_confirmations={sum(len(t) for t in confirmations.values())} "
        f"sent_after_ack={len(sent_after)} duplicates={stats['duplicates']} {rec} resent={rec.resent} "
        f"drain_s={max(t for times in accepted.values() for t in times) - min(acked):.1f} "
        f"oldest_sending={rig.oldest_sending:.1f}s"
    )
    await check_promises(rig, "stop", aid, message, sending_bound=LEASE + REAP_SLACK, summary=summary)
    # After the 200 (or 204), none of them was sent the announcement: at the simulator, the one that counts.
    late = {who: [round(t - acked_at[who], 3) for t in times] for who, times in sent_after.items()}
    assert late == {}, f"sent the announcement after their STOP/deactivation was acknowledged: {late}; {summary}"
    assert in_flight == 0, summary
    assert {by_phone[c[2].removeprefix("+")] for c in stop} == {("skipped", "opted_out")}, by_phone
    assert {by_phone[c[2].removeprefix("+")] for c in deactivate} == {("skipped", "inactive")}, by_phone
    # The STOPs really were processed: each was answered once (a plain text, not the announcement).
    assert {who: len(t) for who, t in confirmations.items()} == {c[2].removeprefix("+"): 1 for c in stop}, summary
    counts = await rig.counts()
    assert sum(counts[s] for s in REACHED) == employees - STOPS - DEACTIVATIONS, summary
    report(capsys, f"chaos stop: {summary} took={time.monotonic() - started:.1f}s")


# ---------------------------------------------------------------------------------------------------------------
# (d) The same statuses, concurrently, in opposite orders, at a real `serve`.

ROUNDS = 6
PER_ROUND = 50  # deliveries per round; each body carries two statuses for each: ~100 statuses
COPIES = 3  # of each order, all posted at once: 6 concurrent bodies of the same statuses


def _statuses_body(items: list[tuple[str, str, str, int]]) -> bytes:
    """One webhook body carrying every (wamid, status, recipient, unix time) status, in the order given."""
    statuses = []
    for wamid, status, recipient, ts in items:
        item = status_body(wamid, status, recipient, None)["entry"][0]["changes"][0]["value"]["statuses"][0]
        statuses.append({**item, "timestamp": str(ts)})
    envelope = status_body("wamid.x", "sent", "0", None)
    value = envelope["entry"][0]["changes"][0]["value"]
    value["statuses"] = statuses
    return json.dumps(envelope, separators=(",", ":")).encode()


async def test_concurrent_reversed_status_batches_apply_once_and_forward_only(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    with rig.tails_on_failure():
        await reversed_batches(rig, capsys)


async def reversed_batches(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    employees = ROUNDS * PER_ROUND
    started = time.monotonic()
    # No --webhook: the simulator posts no statuses of its own; the test's bodies are the only ones.
    await rig.start(rate=400.0, employees=employees, webhook=False)
    message = "Chaos (d): statuses arrive every which way"
    aid = await rig.announce(message)
    await rig.settle([aid], within=60)
    sent = await rig.rows(
        """SELECT d.id, d.wamid, e.phone, extract(epoch FROM d.sent_at) FROM delivery d
           JOIN employee e ON e.id = d.employee_id WHERE d.announcement_id = :a AND d.status = 'sent' ORDER BY d.id""",
        a=aid,
    )
    assert len(sent) == employees, f"{len(sent)} of {employees} sent before the webhook rounds"
    base = int(time.time()) - 3600  # statuses an hour old: earlier than any time the ledger already has
    posted = statuses_posted = 0
    answers: Counter[int] = Counter()
    rounds_s: list[float] = []

    async def post(body: bytes) -> None:
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(APP_SECRET, body)}
        answer = await rig.http.post(f"{rig.api}/webhooks/whatsapp", content=body, headers=headers)
        answers[answer.status_code] += 1

    async def ledger(ids: list[int]) -> dict[int, tuple[Any, ...]]:
        got = await rig.rows(
            """SELECT id, status, extract(epoch FROM sent_at), extract(epoch FROM delivered_at),
                      extract(epoch FROM read_at) FROM delivery WHERE id = ANY(:ids)""",
            ids=ids,
        )
        return {int(r[0]): tuple(r[1:]) for r in got}

    for r in range(ROUNDS):
        group = sent[r * PER_ROUND : (r + 1) * PER_ROUND]
        ids = [int(g[0]) for g in group]
        t0 = time.monotonic()
        # Phase 1: delivered and read for every delivery of the group; phase 2, later: their (lower) `sent`
        # statuses, new events that must not move anything backwards, with `delivered` again (duplicates).
        phases = [
            [
                (g[1], s, g[2].removeprefix("+"), base + 10 * r + k)
                for g in group
                for k, s in ((1, "delivered"), (2, "read"))
            ],
            [
                (g[1], s, g[2].removeprefix("+"), base + 10 * r + k)
                for g in group
                for k, s in ((0, "sent"), (1, "delivered"))
            ],
        ]
        for phase, items in enumerate(phases):
            forward, backward = _statuses_body(items), _statuses_body(items[::-1])
            await asyncio.gather(*(post(b) for _ in range(COPIES) for b in (forward, backward)))
            posted += 2 * COPIES
            statuses_posted += 2 * COPIES * len(items)
            now = await ledger(ids)
            # Forward only: every delivery is `read` after phase 1 and stays `read` after the lower statuses.
            assert {v[0] for v in now.values()} == {"read"}, (r, phase, Counter(v[0] for v in now.values()))
            for g in group:
                _, sent_at, delivered_at, read_at = now[int(g[0])]
                assert float(delivered_at) == base + 10 * r + 1, (r, phase, g[0], now[int(g[0])])
                assert float(read_at) == base + 10 * r + 2, (r, phase, g[0], now[int(g[0])])
                # sent_at: the worker's own time until the (earlier) `sent` status arrives in phase 2.
                expected = float(g[3]) if phase == 0 else base + 10 * r
                assert abs(float(sent_at) - expected) < 1e-3, (r, phase, g[0], now[int(g[0])], expected)
        rounds_s.append(round(time.monotonic() - t0, 2))

    # Applied once: each distinct status is one webhook_event, counted `new` once by serve; every copy of it a
    # duplicate, never applied again.
    events = int(await scalar(rig.db, "SELECT count(*) FROM webhook_event WHERE kind = 'status'"))
    distinct = ROUNDS * PER_ROUND * 3
    metrics = (await rig.http.get(f"{rig.api}/metrics")).text

    def metric(result: str) -> float:
        found = re.search(rf'^jem_webhook_events_total\{{kind="status",result="{result}"\}} (\S+)$', metrics, re.M)
        return float(found.group(1)) if found else 0.0

    retried = sum(
        p.log.read_text(errors="replace").count("transaction aborted") for p in rig.fleet.procs if p.name == "serve"
    )
    rec = await rig.reconcile(aid, message)
    stats = await rig.sim_stats()
    summary = (
        f"messages={stats['messages_accepted']} faults=bodies:{posted}x~{2 * PER_ROUND}_statuses"
        f"(forward+reversed,{2 * COPIES}_at_once,{ROUNDS}_rounds) statuses_posted={statuses_posted} "
        f"answers={dict(answers)} events_new={metric('new'):.0f}/{distinct} duplicates_seen={metric('duplicate'):.0f} "
        f"deadlock_retries={retried} duplicates={stats['duplicates']} {rec} rounds_s={rounds_s}"
    )
    assert answers == Counter({200: posted}), summary
    assert events == distinct, summary
    assert metric("new") == distinct, summary
    assert metric("duplicate") == statuses_posted - distinct, summary
    await check_promises(rig, "webhook", aid, message, sending_bound=LEASE + REAP_SLACK, summary=summary)
    assert (await rig.counts())["read"] == employees, summary
    report(capsys, f"chaos webhook: {summary} took={time.monotonic() - started:.1f}s")
