"""`jem-bot bench fanout`: dispatch throughput through the real ledger against the simulator.

What runs, each in its own process so nothing shares an event loop or a core by accident:

* a **fresh database** (``jem_bench_<random>``) created on the DATABASE_URL server, or on the embedded server
  under JEM_DATA_DIR when DATABASE_URL is unset; migrated, seeded, and dropped at the end. The user's own
  database is never written to: a bench in it would let the bench's dispatchers claim (and send to the
  simulator) the user's own pending deliveries.
* the WhatsApp simulator (``jem-bot simulator --latency-ms …``, no callbacks);
* ``--workers`` dispatcher processes, each the same code as ``jem-bot worker`` (`serve_dispatcher`), with a
  timing wrapper around its Graph client.

The bench seeds ``--employees`` employees, waits until every worker has heartbeated, empties the shared send
budget, and creates one announcement to everyone, due now. It then waits for the announcement to complete,
stops the workers with SIGTERM, and reports:

* **sustained msg/s**: the steady state, without ramp-up and tail. The ledger's ``sent_at`` times are sorted and
  the sends between the 10th and the 90th percentile are divided by the time between those two sends.
* **average msg/s** and **total**: from the announcement's creation to the last delivery's outcome (includes
  fan-out, ramp-up and tail).
* **send p50/p99**: the Graph call as the dispatcher saw it (request to parsed answer), over every send.
* **busiest second**: the most rows claimed in any one-second window (each claim spends send tokens), which the
  rate cap bounds: at most one full bucket (`bot.ledger.budget.burst`) above ``--rate``.
* **claims/s**: claim transactions that returned rows, per second of the total, and rows per claim; **sent per
  write**: accepted sends recorded per batched outcome write.
* **cpu µs/msg** of the dispatcher processes (from their first send) and of the simulator, which shares the
  machine's cores: on a small machine a busy neighbour shows up here, not as a mystery.
* **duplicates** at the simulator (per recipient and callback data; must be 0), and the final delivery counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import NullPool, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.bench.common import free_port, last_line, percentile, terminate
from bot.runtime import CommandFailedError, UsageError, database_url
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.graph.client import SendResult

MAX_EMPLOYEES = 1_000_000
MAX_WORKERS = 16
MAX_CONCURRENCY = 2_000
PHONE_NUMBER_ID = "100000000000001"
BENCH_TOKEN = "bench-access-token"  # noqa: S105 - the simulator only checks that a bearer token is present
# "POST → first send" samples: enough for a p99 that means something, few enough to take a few seconds.
FIRST_SEND_SAMPLES = 50
# Between these percentiles of the send times the dispatcher is neither ramping up nor draining the tail.
STEADY_FROM, STEADY_TO = 0.10, 0.90


@dataclass(frozen=True, slots=True)
class FanoutResult:
    employees: int
    rate_cap: float
    latency_ms: float
    workers: int
    concurrency: int
    loop: str
    sustained_msg_per_s: float
    busiest_second: int
    average_msg_per_s: float
    total_seconds: float
    fan_out_seconds: float
    send_p50_ms: float
    send_p99_ms: float
    claims: int
    claims_per_s: float
    rows_per_claim: float
    sent_per_write: float
    worker_cpu_us_per_msg: float
    simulator_accepted: int
    simulator_cpu_us_per_msg: float
    duplicates: int
    statuses: dict[str, int] = field(default_factory=dict)
    timed_out: bool = False
    # "POST → first send": announcements to one employee each, due now, created as the API creates them.
    first_send_samples: int = 0
    first_send_p50_ms: float = 0.0
    first_send_p99_ms: float = 0.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--employees", type=int, default=10_000, help="audience size (default 10000)")
    parser.add_argument("--rate", type=float, default=1_000.0, help="JEM_SEND_RATE, the shared cap (default 1000)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="simulator answer delay (default 100)")
    parser.add_argument("--workers", type=int, default=1, help="dispatcher processes (default 1)")
    parser.add_argument("--concurrency", type=int, default=200, help="sends in flight per worker (default 200)")
    parser.add_argument(
        "--loop", choices=["uvloop", "asyncio"], default="uvloop", help="workers' event loop (default uvloop)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=300.0, help="give up waiting for completion after this (default 300)"
    )
    parser.add_argument(
        "--first-sends",
        type=int,
        default=FIRST_SEND_SAMPLES,
        help=f"announcements timed from creation to their first send, after the run (default {FIRST_SEND_SAMPLES})",
    )


def run(settings: Settings, args: argparse.Namespace) -> None:

    if not 1 <= args.employees <= MAX_EMPLOYEES:
        raise UsageError(f"--employees must be 1-{MAX_EMPLOYEES}, got {args.employees}")
    if not 0 < args.rate <= 10_000:
        raise UsageError(f"--rate must be more than 0 and at most 10000, got {args.rate}")
    if not 0 <= args.latency_ms <= 10_000:
        raise UsageError(f"--latency-ms must be 0-10000, got {args.latency_ms}")
    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be 1-{MAX_WORKERS}, got {args.workers}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be 1-{MAX_CONCURRENCY}, got {args.concurrency}")
    if not 0 < args.max_seconds <= 3_600:
        raise UsageError(f"--max-seconds must be 0-3600, got {args.max_seconds}")

    with bench_database(settings) as url, SimulatorProcess(latency_ms=args.latency_ms) as simulator:
        result = asyncio.run(_bench(url, simulator, args))
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(format_table(result))


# --- the database ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database(settings: Settings) -> Iterator[str]:
    """A migrated database of the bench's own on the configured (or embedded) server, dropped afterwards."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import create_async_engine

    from bot.db.migrate import upgrade

    server_url = database_url(settings)
    name = f"jem_bench_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction.
        engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        raise CommandFailedError(
            "the benchmark needs a database of its own and this DATABASE_URL may not create one: grant CREATEDB, "
            "or unset DATABASE_URL to benchmark on the embedded PostgreSQL"
        ) from None
    try:
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_EMPLOYER = text("INSERT INTO employer (slug, name, timezone) VALUES ('bench', 'Benchmark', 'UTC') RETURNING id")
# One statement: 10,000 rows in well under a second, and phones the simulator accepts as E.164.
_EMPLOYEES = text(
    "INSERT INTO employee (employer_id, phone, name) "
    "SELECT :e, '+2782' || lpad(g::text, 7, '0'), 'Bench ' || g FROM generate_series(1, :n) AS g"
)
# The bucket starts empty at the announcement, so idle polling before it cannot bank a burst into the window.
_EMPTY_BUDGET = text(
    "INSERT INTO send_budget (phone_number_id, tokens, refilled_at) VALUES (:p, 0, clock_timestamp()) "
    "ON CONFLICT (phone_number_id) DO UPDATE SET tokens = 0, refilled_at = clock_timestamp()"
)
_ANNOUNCEMENT = text(
    "INSERT INTO announcement (employer_id, message, send_at, audience) "
    "VALUES (:e, 'Benchmark announcement', now(), CAST('{\"all\": true}' AS jsonb)) RETURNING id"
)


async def _bench(url: str, simulator: SimulatorProcess, args: argparse.Namespace) -> FanoutResult:
    from bot.db.engine import make_engine

    # Two connections: one the benchmark reads through, one for the announcements it creates as the API does.
    engine = make_engine(url, pool_size=2, max_overflow=0)
    try:
        async with engine.connect() as conn:
            async with conn.begin():
                employer_id = (await conn.execute(_EMPLOYER)).scalar_one()
                await conn.execute(_EMPLOYEES, {"e": employer_id, "n": args.employees})
            config = {
                "database_url": url,
                "api_url": simulator.api_url,
                "rate": args.rate,
                "concurrency": args.concurrency,
                "loop": args.loop,
            }
            with WorkerProcesses(args.workers, config) as workers:
                await _wait_for_heartbeats(conn, workers, args.workers)
                async with conn.begin():
                    await conn.execute(_EMPTY_BUDGET, {"p": PHONE_NUMBER_ID})
                    announcement_id = (await conn.execute(_ANNOUNCEMENT, {"e": employer_id})).scalar_one()
                simulator_cpu = simulator.cpu_seconds()
                timed_out = not await _wait_for_completion(conn, workers, announcement_id, args.max_seconds)
                simulator_cpu = simulator.cpu_seconds() - simulator_cpu
                stats = {**simulator.stats(), "cpu_s": simulator_cpu}
                # Read now: the idle time between the last send and the stop is not the run's.
                worker_cpu_at_end = workers.cpu_seconds()
                reports = workers.stop()
            first_sends: list[float] = []
            if args.first_sends > 0 and not timed_out:
                # A dispatcher of its own, so that none of this phase counts in the run's figures.
                with WorkerProcesses(1, config) as probe:
                    await _wait_for_heartbeats(conn, probe, 1)
                    first_sends = await _first_sends(engine, conn, probe, employer_id, args.first_sends)
                    probe.stop()
            result = await _result(conn, announcement_id, args, reports, stats, timed_out, worker_cpu_at_end)
            return dataclasses.replace(
                result,
                first_send_samples=len(first_sends),
                first_send_p50_ms=round(percentile(first_sends, 0.50), 1),
                first_send_p99_ms=round(percentile(first_sends, 0.99), 1),
            )
    finally:
        await engine.dispose()


async def _first_sends(
    engine: AsyncEngine, conn: AsyncConnection, workers: WorkerProcesses, employer_id: int, samples: int
) -> list[float]:
    """Milliseconds from the commit of an announcement due now to the claim of its delivery (its send leaves
    right after the claim commits), one announcement at a time, each to one new employee, created by the same
    code as `POST /announcements` (its NOTIFY wakes the dispatchers; without it they would find the
    announcement at their next poll)."""
    from bot.announcements import service
    from bot.contracts import AnnouncementIn, Audience
    from bot.db.engine import make_sessionmaker

    async with conn.begin():
        ids = list(
            (
                await conn.execute(
                    text(
                        "INSERT INTO employee (employer_id, phone, name) SELECT :e, '+2784' || lpad(g::text, 7, '0'), "
                        "'First send ' || g FROM generate_series(1, :n) AS g RETURNING id"
                    ),
                    {"e": employer_id, "n": samples},
                )
            ).scalars()
        )
    sessions = make_sessionmaker(engine)
    latencies = []
    for employee_id in ids:
        async with sessions() as session:
            created = await service.create(
                session,
                employer_id,
                None,
                AnnouncementIn(message="First send", audience=Audience(employee_ids=[employee_id])),
            )
            await session.commit()
        committed = time.time()
        deadline = time.monotonic() + 10
        while (
            claimed := await _scalar(
                conn,
                "SELECT extract(epoch FROM claimed_at)::float8 FROM delivery WHERE announcement_id = :a",
                a=created.id,
            )
        ) is None:
            workers.check_alive()
            if time.monotonic() > deadline:
                raise CommandFailedError("an announcement due now was not sent within 10 s")
            await asyncio.sleep(0.002)
        latencies.append(max(0.0, (claimed - committed) * 1000))
    return sorted(latencies)


async def _scalar(conn: AsyncConnection, sql: str, **params: Any) -> Any:
    # Autocommit reads: a transaction left open would pin an old snapshot (and see no progress).
    async with conn.begin():
        return (await conn.execute(text(sql), params)).scalar()


async def _wait_for_heartbeats(conn: AsyncConnection, workers: WorkerProcesses, n: int, limit: float = 60.0) -> None:

    deadline = time.monotonic() + limit
    while await _scalar(conn, "SELECT count(*) FROM worker WHERE stopped_at IS NULL") < n:
        workers.check_alive()
        if time.monotonic() > deadline:
            raise CommandFailedError(f"the dispatcher workers did not start within {limit:.0f} s")
        await asyncio.sleep(0.1)


async def _wait_for_completion(
    conn: AsyncConnection, workers: WorkerProcesses, announcement_id: int, limit: float
) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await _scalar(conn, "SELECT status FROM announcement WHERE id = :a", a=announcement_id) == "completed":
            return True
        workers.check_alive()
        await asyncio.sleep(0.2)
    return False


async def _epochs(conn: AsyncConnection, column: str, announcement_id: int) -> list[float]:
    # `column` is one of ours (sent_at, claimed_at), never user input.
    sql = (
        f"SELECT extract(epoch FROM {column})::float8 FROM delivery "  # noqa: S608
        f"WHERE announcement_id = :a AND {column} IS NOT NULL ORDER BY 1"
    )
    async with conn.begin():
        return [float(r[0]) for r in (await conn.execute(text(sql), {"a": announcement_id})).all()]


async def _result(
    conn: AsyncConnection,
    announcement_id: int,
    args: argparse.Namespace,
    reports: list[dict[str, Any]],
    simulator_stats: dict[str, Any],
    timed_out: bool,
    worker_cpu_at_end: float,
) -> FanoutResult:
    async with conn.begin():
        created, dispatched, last = (
            await conn.execute(
                text(
                    "SELECT extract(epoch FROM a.created_at)::float8, extract(epoch FROM a.dispatched_at)::float8, "
                    "(SELECT extract(epoch FROM max(GREATEST(d.sent_at, d.failed_at, d.unknown_at, d.cancelled_at)))"
                    "::float8 FROM delivery d WHERE d.announcement_id = a.id) "
                    "FROM announcement a WHERE a.id = :a"
                ),
                {"a": announcement_id},
            )
        ).one()
        statuses = {
            str(r[0]): int(r[1])
            for r in (
                await conn.execute(
                    text("SELECT status, count(*) FROM delivery WHERE announcement_id = :a GROUP BY status ORDER BY 1"),
                    {"a": announcement_id},
                )
            ).all()
        }
    sent_times = await _epochs(conn, "sent_at", announcement_id)
    claimed_times = await _epochs(conn, "claimed_at", announcement_id)
    total = (last - created) if last is not None else 0.0
    latencies = sorted(ms for report in reports for ms in report["latencies_ms"])
    claims = sum(int(report["claims"]) for report in reports)
    claimed = sum(int(report["claimed"]) for report in reports)
    # From each worker's first send to the end of the run (the idle time after it is not the run's).
    cpu = worker_cpu_at_end - sum(float(report["cpu_first"]) for report in reports)
    writes = sum(int(report["outcome_writes"]) for report in reports)
    return FanoutResult(
        employees=args.employees,
        rate_cap=args.rate,
        latency_ms=args.latency_ms,
        workers=args.workers,
        concurrency=args.concurrency,
        loop=args.loop,
        sustained_msg_per_s=round(steady_rate(sent_times), 1),
        busiest_second=busiest_second(claimed_times),
        average_msg_per_s=round(len(sent_times) / total, 1) if total > 0 else 0.0,
        total_seconds=round(total, 2),
        fan_out_seconds=round(dispatched - created, 2) if dispatched is not None else 0.0,
        send_p50_ms=round(percentile(latencies, 0.50), 1),
        send_p99_ms=round(percentile(latencies, 0.99), 1),
        claims=claims,
        claims_per_s=round(claims / total, 1) if total > 0 else 0.0,
        rows_per_claim=round(claimed / claims, 1) if claims else 0.0,
        sent_per_write=round(len(sent_times) / writes, 1) if writes else 0.0,
        worker_cpu_us_per_msg=round(cpu / len(sent_times) * 1e6, 1) if sent_times else 0.0,
        simulator_accepted=int(simulator_stats.get("messages_accepted", 0)),
        simulator_cpu_us_per_msg=round(simulator_stats["cpu_s"] / len(sent_times) * 1e6, 1) if sent_times else 0.0,
        duplicates=int(simulator_stats.get("duplicates", 0)),
        statuses=statuses,
        timed_out=timed_out,
    )


def steady_rate(times: list[float]) -> float:
    """Sends per second between the STEADY_FROM and STEADY_TO percentiles of the sorted send times."""
    if len(times) < 10:
        return 0.0
    lo, hi = int(len(times) * STEADY_FROM), int(len(times) * STEADY_TO) - 1
    span = times[hi] - times[lo]
    return (hi - lo) / span if span > 0 else 0.0


def busiest_second(times: list[float]) -> int:
    """The most claims (each used one send token) in any one-second window: what the rate cap bounds."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def format_table(r: FanoutResult) -> str:
    rows = [
        ("sustained msg/s", f"{r.sustained_msg_per_s}", "sends between the 10th and 90th percentile send times"),
        ("busiest second", f"{r.busiest_second}", "most rows claimed in any 1 s window (the cap bounds it)"),
        ("average msg/s", f"{r.average_msg_per_s}", "all sends / total"),
        ("total s", f"{r.total_seconds}{' (timed out)' if r.timed_out else ''}", "announcement created → last outcome"),
        ("fan-out s", f"{r.fan_out_seconds}", "announcement created → dispatching"),
        ("send p50 ms", f"{r.send_p50_ms}", "Graph call seen by the dispatcher"),
        ("send p99 ms", f"{r.send_p99_ms}", ""),
        ("claims/s", f"{r.claims_per_s}", f"{r.claims} claims, {r.rows_per_claim} rows each"),
        ("sent per write", f"{r.sent_per_write}", "accepted sends recorded per batched outcome write"),
        ("worker cpu µs/msg", f"{r.worker_cpu_us_per_msg}", "dispatcher process CPU per send, all workers"),
        ("simulator accepted", f"{r.simulator_accepted}", ""),
        ("simulator cpu µs/msg", f"{r.simulator_cpu_us_per_msg}", "it shares the machine's cores with the workers"),
        ("duplicates", f"{r.duplicates}", "recipients sent the same delivery twice (must be 0)"),
        (
            "first send p50/p99 ms",
            f"{r.first_send_p50_ms}/{r.first_send_p99_ms}",
            f"announcement committed → its send claimed ({r.first_send_samples} due now, one at a time)",
        ),
        ("deliveries", ", ".join(f"{k} {v}" for k, v in r.statuses.items()) or "none", ""),
    ]
    header = (
        f"fanout: {r.employees} employees, cap {r.rate_cap:g} msg/s, latency {r.latency_ms:g} ms, "
        f"{r.workers} worker(s) x {r.concurrency} in flight, {r.loop}"
    )
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = [header]
    lines += [f"  {name:<{width}}  {value:>{value_width}}  {note}".rstrip() for name, value, note in rows]
    return "\n".join(lines)


# --- the simulator and the workers -------------------------------------------------------------------------


def _bench_env() -> dict[str, str]:
    # The children get everything they need as arguments; a user's WhatsApp or database settings must not leak
    # into a process that sends (to the simulator) or writes (to the bench database).
    return {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "DATABASE_URL", "JEM_"))}


class SimulatorProcess:
    """``jem-bot simulator`` on a free loopback port, without callbacks; stopped on exit."""

    def __init__(self, *, latency_ms: float, startup_timeout: float = 30.0) -> None:
        self._latency_ms = latency_ms
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.base_url = ""

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v23.0"

    def __enter__(self) -> SimulatorProcess:
        import httpx

        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no user input
            [sys.executable, "-m", "bot", "simulator", "--port", str(port), "--latency-ms", str(self._latency_ms)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=_bench_env(),
        )
        deadline = time.monotonic() + self._startup_timeout
        while True:
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = last_line(self._log)
                self.__exit__(None, None, None)
                raise CommandFailedError(f"the simulator did not start: {tail or 'no output'}")
            try:
                httpx.get(f"{self.base_url}/_simulator/stats", timeout=1.0).raise_for_status()
                return self
            except httpx.HTTPError:
                time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """The simulator process's CPU so far: the bench reports its share, since it runs on the same machine."""
        import psutil

        if self._process is None:
            return 0.0
        times = psutil.Process(self._process.pid).cpu_times()
        return float(times.user + times.system)

    def stats(self) -> dict[str, Any]:
        import httpx

        response = httpx.get(f"{self.base_url}/_simulator/stats", timeout=10.0)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            terminate(self._process)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


class WorkerProcesses:
    """``n`` dispatcher processes running `_worker`; `stop` sends SIGTERM and collects their reports."""

    def __init__(self, n: int, config: dict[str, Any]) -> None:
        self._n = n
        self._config = config
        self._processes: list[tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]] = []

    def __enter__(self) -> WorkerProcesses:
        code = "from bot.bench.fanout import _worker; _worker()"
        for _ in range(self._n):
            out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no user input
                [sys.executable, "-c", code, json.dumps(self._config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=_bench_env(),
            )
            self._processes.append((process, out, err))
        return self

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the workers have used so far: the clock their `time.process_time` reads."""
        import psutil

        total = 0.0
        for process, _, _ in self._processes:
            times = psutil.Process(process.pid).cpu_times()
            total += times.user + times.system
        return total

    def check_alive(self) -> None:

        for process, _, err in self._processes:
            if process.poll() is not None:
                raise CommandFailedError(f"a dispatcher worker exited with {process.returncode}: {last_line(err)}")

    def stop(self) -> list[dict[str, Any]]:

        for process, _, _ in self._processes:
            process.send_signal(signal.SIGTERM)
        reports = []
        for process, out, err in self._processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                terminate(process)
            out.seek(0)
            lines = out.read().decode(errors="replace").strip().splitlines()
            if process.returncode != 0 or not lines:
                raise CommandFailedError(f"a dispatcher worker failed ({process.returncode}): {last_line(err)}")
            reports.append(json.loads(lines[-1]))
        return reports

    def __exit__(self, *exc: object) -> None:
        for process, out, err in self._processes:
            if process.poll() is None:
                terminate(process)
            out.close()
            err.close()
        self._processes = []


# --- the worker child process -----------------------------------------------------------------------------


class _TimedGraph:
    """Wraps the real GraphClient and records how long each send took, as the dispatcher saw it."""

    def __init__(self, graph: Any) -> None:
        self._graph = graph
        self.latencies: list[float] = []
        # Process CPU from the first send on (the caller reads the clock again at the end): the worker's cost per
        # send without its start-up. Read once, not per send: the CPU clock is a real system call.
        self.cpu_first: float | None = None

    async def send_announcement(
        self, *, to: str, text: str, callback_data: str, ack_payload: str | None = None
    ) -> SendResult:
        return await self._timed(
            self._graph.send_announcement, to=to, text=text, callback_data=callback_data, ack_payload=ack_payload
        )

    async def send_text(
        self, *, to: str, text: str, callback_data: str, recipient_user_id: str | None = None
    ) -> SendResult:
        return await self._timed(
            self._graph.send_text, to=to, text=text, callback_data=callback_data, recipient_user_id=recipient_user_id
        )

    async def send_interactive(
        self, *, to: str, interactive: dict[str, Any], callback_data: str, recipient_user_id: str | None = None
    ) -> SendResult:
        return await self._timed(
            self._graph.send_interactive,
            to=to,
            interactive=interactive,
            callback_data=callback_data,
            recipient_user_id=recipient_user_id,
        )

    async def send_template(
        self, *, to: str, name: str, language: str, components: list[dict[str, Any]], callback_data: str
    ) -> SendResult:
        return await self._timed(
            self._graph.send_template,
            to=to,
            name=name,
            language=language,
            components=components,
            callback_data=callback_data,
        )

    async def _timed(self, send: Any, **kwargs: Any) -> SendResult:
        if self.cpu_first is None:
            self.cpu_first = time.process_time()
        started = time.perf_counter()
        try:
            result: SendResult = await send(**kwargs)
            return result
        finally:
            self.latencies.append(time.perf_counter() - started)


def _worker() -> None:
    """Child-process entry: the `jem-bot worker` code path until SIGTERM, then one JSON report on stdout."""
    from bot.dispatch.worker import run_event_loop, serve_dispatcher
    from bot.logs import configure_logging

    config = json.loads(sys.argv[1])
    configure_logging()
    settings = Settings(
        database_url=config["database_url"],
        data_dir=Path(tempfile.gettempdir()),
        whatsapp_api_url=config["api_url"],
        whatsapp_access_token=BENCH_TOKEN,
        whatsapp_phone_number_id=PHONE_NUMBER_ID,
        send_rate=float(config["rate"]),
        dispatcher_concurrency=int(config["concurrency"]),
    )
    timed: list[_TimedGraph] = []

    def wrap(graph: Any) -> _TimedGraph:
        timed.append(_TimedGraph(graph))
        return timed[0]

    main = serve_dispatcher(settings, config["database_url"], wrap_graph=wrap)
    d = run_event_loop(main) if config["loop"] == "uvloop" else asyncio.run(main)
    cpu_end = time.process_time()
    first = timed[0].cpu_first if timed else None
    report = {
        "claims": d.claims,
        "claimed": d.claimed,
        "outcome_writes": d.outcome_writes,
        # Includes the idle polling between the last send and SIGTERM (well under a second of a sleeping loop).
        "cpu_s": round(cpu_end - first, 3) if first is not None else 0.0,
        # The process's CPU clock at its first send: the parent reads the same clock when the run ends.
        "cpu_first": first if first is not None else cpu_end,
        "latencies_ms": [round(s * 1000, 2) for s in (timed[0].latencies if timed else [])],
    }
    print(json.dumps(report), flush=True)
