"""`jem-bot bench webhook`: signed status POSTs over real HTTP, on the real app, measured against a lean reference.

The server is ``jem-bot serve --no-dispatcher`` (uvicorn, exactly the production path, one server process) in a
child process on a free loopback port, against ``DATABASE_URL`` or the embedded database. Beside it, unless
``--no-reference``, runs the lean reference (bot/bench/lean.py: HMAC, decode, dedup insert, forward-only update, one
transaction, nothing else), started the same way: its own process, uvicorn, the same database. Every run is made
against both with identical load on rows prepared identically, and jem-bot's req/s and p99 are reported as ratios
of the reference's: a figure from a shared 2-core machine means little alone, the ratio says what jem-bot's own
machinery costs. So that neither server systematically inherits the other's aftermath (dead rows, autovacuum, a
checkpoint) or a busy moment of the machine, the runs alternate between them: counted runs in four chunks (A B B
A A B B A), timed runs in slices of 2-3 s, and which server goes first alternates from run to run.

The bench adds rows of its own and deletes them at the end, also after a failure or Ctrl+C: an employer
``bench-webhook-<run>``, employees on +999 numbers (an unassigned country code, so no real inbound message can ever
match them), one completed announcement and its ``sent`` deliveries with wamids ``wamid.bench-<run>-…``. Each run
gets fresh deliveries for each server, so neither ever sees the other's events as duplicates. Nothing else is read
or written. Each POST is signed like Meta's and carries status callbacks (sent, then delivered, then read, spread
over the deliveries so that concurrent requests touch different rows, as real traffic mostly does).

Three kinds of run:

- closed loop (``--concurrency``): N POSTs in flight, each sent when the previous one on its connection was
  answered; one status per POST (Meta's usual shape) and ``--batch-size`` statuses per POST (Meta may batch). The
  Python client; latency from sending to reading the whole answer.
- throughput (``--connections`` in flight for ``--duration`` s, one status per POST): driven by wrk when it is on
  PATH (an independent load generator in C, which leaves more of the machine to the servers), else by the Python
  client; the output says which.
- open loop (``--rate``): POSTs sent on a fixed schedule whatever the answers, each latency counted from the
  request's scheduled send time, so a slow server shows as growing latency and not as a lower rate (no coordinated
  omission). If the client itself falls behind its schedule, the output says so and by how much.

"server ms" is jem-bot's own mean (its webhook histogram), without HTTP and client time. After each run the bench
checks, for both servers, that every status answered 200 was stored, that nothing unposted was, and that every
delivery reached the status its stored events imply; a mismatch fails the command. (Being a normal `serve`,
jem-bot also runs the periodic purge of expired idempotency keys and of old dedup rows, as any server does.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from bot.bench.common import free_port, int_list, last_line, percentile, terminate
from bot.dispatch.worker import run_event_loop
from bot.runtime import CommandFailedError, UsageError, preflight, run_with_engine
from bot.settings import MAX_WORKERS, Settings
from bot.webhook.signature import sign

MAX_REQUESTS = 100_000
MAX_CONCURRENCY = 1_000
MAX_BATCH = 1_000
MAX_EVENTS = 2_000_000
MAX_RATE = 20_000
MAX_DURATION = 600
STATUSES = ("sent", "delivered", "read")
PATH = "/webhooks/whatsapp"
JEM_BOT, LEAN = "jem-bot", "lean"

# A request unanswered this long is given up (its connection aborted) and counted as an error.
REQUEST_TIMEOUT = 60.0
# Duration runs spread their statuses in blocks of this many deliveries (sent, delivered, read for each block in
# turn): a third of each kind whenever the run stops, and a delivery's next status is thousands of POSTs later.
BLOCK = 1_000
# The throughput run's statuses are made before it starts, each posted once: enough for this many times the best
# closed-loop rate the same server reached (wrk, in C, drives it harder than the Python client did), at least this
# many per second, at most this many in all.
THROUGHPUT_HEADROOM = 4
THROUGHPUT_FLOOR_PER_S = 2_000
THROUGHPUT_MAX_POSTS = 300_000
# The open loop opens connections as requests find none idle; beyond this many they wait for one (and that wait is
# part of their latency, which counts from the scheduled time).
OPEN_LOOP_MAX_CONNECTIONS = 512
# The open loop's client kept its schedule if it sent at 99 % of the rate or more, and 99 % of its sends were at
# most 5 ms late or at most a tenth of the p99 latency (which counts from the scheduled time, so includes that
# delay): beyond that, the latency figures would describe the client as much as the server.
SCHEDULE_RATE_SHARE = 0.99
SCHEDULE_LATE_P99 = 0.005
SCHEDULE_LATE_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class RunResult:
    """A closed-loop run against one server; jem-bot's rows carry their ratio to the reference's."""

    server: str
    client: str
    mode: str
    statuses_per_post: int
    concurrency: int
    requests: int
    errors: int
    seconds: float
    req_per_s: float
    statuses_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    server_mean_ms: float | None
    vs_lean_req_per_s: float | None = None
    vs_lean_p99: float | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class OpenLoopResult:
    """POSTs on a fixed schedule against one server; latency from each one's scheduled send time."""

    server: str
    target_per_s: int
    seconds: float
    requests: int
    errors: int
    sent_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    late_p99_ms: float
    late_max_ms: float
    schedule_kept: bool
    peak_in_flight: int
    vs_lean_p50: float | None = None
    vs_lean_p99: float | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    mode: str  # single | batch (closed loop, counted) | throughput (closed loop, timed) | open
    per_post: int
    concurrency: int = 0
    warmup: int = 0
    requests: int = 0
    seconds: int = 0
    rate: int = 0

    @property
    def events(self) -> int:
        return (self.warmup + self.requests) * self.per_post + self.rate * self.seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=2_000, help="single-status POSTs per run (default 2000)")
    parser.add_argument(
        "--concurrency",
        type=int_list,
        default=[1, 16],
        help="POSTs in flight; a comma list runs each (default 1,16)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=50, help="statuses per POST in the batched run; 0 skips it (default 50)"
    )
    parser.add_argument("--batch-requests", type=int, default=200, help="batched POSTs per run (default 200)")
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="POSTs in flight in the throughput run, which lasts --duration; 0 skips it (default 64)",
    )
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="what drives the throughput run: wrk if it is on PATH, else the Python client (default auto)",
    )
    parser.add_argument(
        "--rate",
        type=int,
        default=0,
        help="open loop: single-status POSTs per second on a fixed schedule for --duration; 0 skips it (default 0)",
    )
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds of the throughput and open-loop runs (default 10)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="jem-bot server processes (`serve --workers`; default 1, like the reference, so the ratio compares "
        "the work per request; with more, `server ms` is not shown, /metrics being per process)",
    )
    parser.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="skip the lean reference server (jem-bot alone, no ratios)",
    )


def run(settings: Settings, args: argparse.Namespace) -> None:
    if not 1 <= args.requests <= MAX_REQUESTS:
        raise UsageError(f"--requests must be 1-{MAX_REQUESTS}, got {args.requests}")
    if any(not 1 <= c <= MAX_CONCURRENCY for c in args.concurrency):
        raise UsageError(f"--concurrency must be 1-{MAX_CONCURRENCY}")
    if not 0 <= args.batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size must be 0-{MAX_BATCH}, got {args.batch_size}")
    if not 1 <= args.batch_requests <= MAX_REQUESTS:
        raise UsageError(f"--batch-requests must be 1-{MAX_REQUESTS}, got {args.batch_requests}")
    if not 0 <= args.connections <= MAX_CONCURRENCY:
        raise UsageError(f"--connections must be 0-{MAX_CONCURRENCY}, got {args.connections}")
    if not 0 <= args.rate <= MAX_RATE:
        raise UsageError(f"--rate must be 0-{MAX_RATE}, got {args.rate}")
    if not 1 <= args.duration <= MAX_DURATION:
        raise UsageError(f"--duration must be 1-{MAX_DURATION}, got {args.duration}")
    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be 1-{MAX_WORKERS}, got {args.workers}")
    wrk = shutil.which("wrk") if args.connections and args.load_generator != "python" else None
    if args.load_generator == "wrk" and args.connections and wrk is None:
        raise UsageError("--load-generator wrk: wrk is not on PATH")
    plans = _plans(args)
    servers = (LEAN, JEM_BOT) if args.reference else (JEM_BOT,)
    if len(servers) * sum(p.events for p in plans) > MAX_EVENTS:
        raise UsageError(
            f"that would post more than {MAX_EVENTS} statuses: lower --requests, --batch-requests, --rate or --duration"
        )

    # One clear line (exit 2) for an unreachable database or a schema that is behind, before anything is written.
    url = preflight(settings)
    database = "DATABASE_URL" if settings.database_url else f"embedded ({settings.data_dir})"
    announce = None if args.json else _print
    run_id, secret = secrets.token_hex(4), secrets.token_urlsafe(24)
    data = run_with_engine(url, lambda engine: _create_employer(engine, run_id))
    throughput_client = None if not args.connections else "wrk" if wrk else "python"
    try:
        # The servers stop before the clean-up, so no request still in flight can write after it.
        with contextlib.ExitStack() as stack:
            started = {
                name: stack.enter_context(_Server(name, url, secret, workers=args.workers if name == JEM_BOT else 1))
                for name in servers
            }
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jem-bench-webhook-")))
            if announce is not None:
                announce(f"database: {database}")
                processes = "its own process" if args.workers == 1 else f"{args.workers} processes of its own"
                announce(f"server: jem-bot serve --no-dispatcher at {started[JEM_BOT].base} (uvicorn, {processes})")
                if LEAN in started:
                    announce(
                        f"reference: lean handler (python -m bot.bench.lean) at {started[LEAN].base} (uvicorn, its "
                        "own process, same database); 'vs lean': jem-bot's figure divided by the reference's"
                    )
                if throughput_client == "wrk":
                    announce(f"throughput run: wrk ({wrk}, 1 thread, {args.connections} connections)")
                elif throughput_client == "python":
                    why = "as asked" if args.load_generator == "python" else "wrk is not on PATH"
                    announce(f"throughput run: the Python client ({why}), {args.connections} connections")
            bench = _Bench(url, secret, data, tmp, wrk, announce)
            report = run_event_loop(bench.measure_all(list(started.values()), plans))
    except _BenchFailedError as exc:
        raise CommandFailedError(str(exc)) from None
    finally:
        run_with_engine(url, lambda engine: _clean_up(engine, data))
    if args.json:
        out = {
            "database": database,
            "reference": LEAN if args.reference else None,
            "throughput_client": throughput_client,
            "runs": [asdict(r) for r in report.runs],
            "open_loop": [asdict(r) for r in report.open_loop],
        }
        print(json.dumps(out, indent=2))


def _plans(args: argparse.Namespace) -> list[_Plan]:
    plans: list[_Plan] = []
    for c in args.concurrency:
        # Warm-up (not measured): opens the connections and fills the servers' statement caches.
        plans.append(_Plan("single", 1, c, warmup=min(max(2 * c, 50), 500), requests=args.requests))
        if args.batch_size:
            plans.append(_Plan("batch", args.batch_size, c, warmup=min(c, 20), requests=args.batch_requests))
    if args.connections:
        plans.append(_Plan("throughput", 1, args.connections, seconds=args.duration))
    if args.rate:
        plans.append(_Plan("open", 1, seconds=args.duration, rate=args.rate))
    return plans


class _BenchFailedError(Exception):
    """The numbers would be meaningless: a server stopped, or answered 200 without recording everything."""


# --- the rows ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Delivery:
    id: int
    wamid: str
    phone_digits: str


@dataclass(slots=True)
class _Data:
    """What this run created; every delivery is listed here as soon as it exists, for the clean-up."""

    run_id: str
    employer_id: int
    announcement_id: int
    deliveries: list[_Delivery] = field(default_factory=list)


async def _create_employer(engine: Any, run_id: str) -> _Data:
    from sqlalchemy import text

    async with engine.begin() as conn:
        employer_id = (
            await conn.execute(
                text("INSERT INTO employer (slug, name, timezone) VALUES (:s, :n, 'UTC') RETURNING id"),
                {"s": f"bench-webhook-{run_id}", "n": "jem-bot bench webhook (temporary, safe to delete)"},
            )
        ).scalar_one()
        # Completed, and its deliveries already `sent`: no dispatcher or reaper has anything to do with them.
        announcement_id = (
            await conn.execute(
                text(
                    "INSERT INTO announcement (employer_id, message, send_at, audience, status, dispatched_at, "
                    "completed_at) VALUES (:e, 'Benchmark', now(), '{\"all\": true}', 'completed', now(), now()) "
                    "RETURNING id"
                ),
                {"e": employer_id},
            )
        ).scalar_one()
    return _Data(run_id, int(employer_id), int(announcement_id))


async def _add_deliveries(engine: Any, data: _Data, n: int) -> list[_Delivery]:
    """``n`` new employees and their ``sent`` deliveries, in one transaction (a failure leaves none behind)."""
    from sqlalchemy import text

    first = len(data.deliveries) + 1
    prefix = f"wamid.bench-{data.run_id}-"
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                text(
                    "WITH new AS (INSERT INTO employee (employer_id, phone, name) "
                    "SELECT :e, '+999' || lpad(g::text, 11, '0'), 'Bench ' || g "
                    "FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g RETURNING id, phone) "
                    "INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, attempts, wamid) "
                    "SELECT :e, :a, id, 'announcement', 'sent', 1, :prefix || substr(phone, 5) FROM new "
                    "RETURNING id, wamid"
                ),
                {
                    "e": data.employer_id,
                    "a": data.announcement_id,
                    "first": first,
                    "last": first + n - 1,
                    "prefix": prefix,
                },
            )
        ).all()
    # The wamid ends in the employee's 11 digits after +999: the recipient is derived, not looked up.
    new = sorted((_Delivery(int(r[0]), str(r[1]), "999" + str(r[1])[len(prefix) :]) for r in rows), key=lambda d: d.id)
    data.deliveries += new
    return new


def _events(deliveries: list[_Delivery], count: int, block: int) -> list[tuple[_Delivery, str]]:
    """`count` status events, block by block of deliveries: every `sent` of a block, its `delivered`, its `read`."""
    events: list[tuple[_Delivery, str]] = []
    for start in range(0, len(deliveries), block):
        chunk = deliveries[start : start + block]
        for status in STATUSES:
            events += ((d, status) for d in chunk)
    return events[:count]


def _key(delivery: _Delivery, status: str) -> str:
    return f"st:{delivery.wamid}:{status}"


def _body(events: Sequence[tuple[_Delivery, str]], ts: int) -> bytes:
    statuses = [
        {
            "id": d.wamid,
            "status": status,
            "timestamp": str(ts),
            "recipient_id": d.phone_digits,
            "biz_opaque_callback_data": str(d.id),
            "pricing": {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "utility"},
        }
        for d, status in events
    ]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "100000000000001"},
        "statuses": statuses,
    }
    envelope = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "200000000000001", "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def _request(host: str, body: bytes, signature: str) -> bytes:
    """The whole HTTP/1.1 request, made before the clock starts: sending it is then one write."""
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- the run ------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Report:
    runs: list[RunResult] = field(default_factory=list)
    open_loop: list[OpenLoopResult] = field(default_factory=list)


@dataclass(slots=True)
class _Outcome:
    """What a client saw in a run, or in one slice of it. ``sent`` and ``ok`` are indices into the server's
    prepared POSTs (``ok`` is None for wrk, which reports counts only); ``latencies`` are the 200s' (from wrk,
    quantiles each standing for ``weight`` answers)."""

    seconds: float
    sent: set[int]
    ok: set[int] | None
    ok_count: int
    errors: int
    latencies: list[float] = field(default_factory=list)
    weight: float = 1.0
    top: float = 0.0  # wrk's maximum, beside its quantiles
    # wrk stops with up to this many requests unanswered: the server may or may not have stored them.
    unanswered_at_stop: int = 0
    notes: list[str] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    peak_in_flight: int = 0
    served: tuple[float, float] = (0.0, 0.0)  # jem-bot's webhook histogram over the run: (sum, count)


@dataclass(slots=True)
class _Merged:
    outcome: _Outcome
    samples: list[tuple[float, float]]  # (latency, weight), sorted

    def percentiles(self) -> tuple[float, float, float, float]:
        """p50, p95, p99 (nearest rank, weighted) and the maximum."""
        samples = self.samples
        if not samples:
            return 0.0, 0.0, 0.0, 0.0
        total = sum(w for _, w in samples)
        found: list[float] = []
        for q in (0.50, 0.95, 0.99):
            target, seen = q * total * (1 - 1e-12), 0.0
            value = samples[-1][0]
            for v, w in samples:
                seen += w
                if seen >= target:
                    value = v
                    break
            found.append(value)
        return found[0], found[1], found[2], samples[-1][0]


def _merge(parts: list[_Outcome]) -> _Merged:
    oks = [p.ok for p in parts]
    merged = _Outcome(
        seconds=sum(p.seconds for p in parts),
        sent=set().union(*(p.sent for p in parts)),
        ok=None if any(ok is None for ok in oks) else set().union(*(ok for ok in oks if ok is not None)),
        ok_count=sum(p.ok_count for p in parts),
        errors=sum(p.errors for p in parts),
        unanswered_at_stop=sum(p.unanswered_at_stop for p in parts),
        notes=list(dict.fromkeys(n for p in parts for n in p.notes)),
        late=[x for p in parts for x in p.late],
        peak_in_flight=max((p.peak_in_flight for p in parts), default=0),
        served=(sum(p.served[0] for p in parts), sum(p.served[1] for p in parts)),
    )
    samples = [(v, p.weight) for p in parts for v in p.latencies] + [(p.top, 0.0) for p in parts if p.top]
    return _Merged(merged, sorted(samples))


def _chunks(indices: range, parts: int = 4) -> list[range]:
    """A counted run against two servers alternates between them in four chunks (A B, B A, A B, B A), for the
    same reason as the slices of a timed run."""
    size = math.ceil(len(indices) / parts)
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def _slices(seconds: int) -> list[int]:
    """A timed run against two servers alternates between them in slices of 2-3 s (wrk counts whole seconds):
    both then see the same background, such as the autovacuum the previous run set off, or other processes on a
    shared machine, instead of one server getting all of it."""
    if seconds < 4:
        return [seconds]
    n = seconds // 2
    return [2] * (n - 1) + [seconds - 2 * (n - 1)]


@dataclass(slots=True)
class _Prepared:
    """One server's POSTs for a run: the events of each, signed bodies, whole requests for the Python client and a
    file of them for wrk; ``next`` is the first not yet handed to a client."""

    server: _Server
    groups: list[list[tuple[_Delivery, str]]]
    signed: list[tuple[bytes, str]]
    requests: list[bytes] = field(default_factory=list)
    bodies_file: Path | None = None
    next: int = 0
    parts: list[_Outcome] = field(default_factory=list)


class _Bench:
    def __init__(
        self, url: str, secret: str, data: _Data, tmp: Path, wrk: str | None, announce: Callable[[str], None] | None
    ) -> None:
        self._url = url
        self._secret = secret
        self._data = data
        self._tmp = tmp
        self._wrk = wrk
        self._announce = announce
        self._engine: Any = None

    async def measure_all(self, servers: list[_Server], plans: list[_Plan]) -> _Report:
        """Each plan against every server, on deliveries of its own for each, verified before the next plan;
        ``announce`` streams the rows (the reference's first, so jem-bot's can carry the ratios)."""
        from bot.db.engine import make_engine

        self._engine = make_engine(self._url, pool_size=1, max_overflow=0)
        report = _Report()
        try:
            for number, plan in enumerate(plans):
                # Which server goes first alternates from plan to plan: neither always inherits the other's
                # aftermath (dead rows, a checkpoint, autovacuum).
                order = servers if number % 2 == 0 else servers[::-1]
                if plan.seconds:
                    merged = await self._timed(order, plan, report.runs)
                else:
                    merged = await self._counted(order, plan)
                if plan.mode == "open":
                    self._say(
                        f"\nopen loop: {plan.rate} single-status POSTs/s for {plan.seconds} s on a fixed schedule, "
                        "whatever the answers; latency counts from each POST's scheduled send time"
                    )
                    opened = _open_ratios([_open_result(s, plan, merged[s.name]) for s in servers])
                    report.open_loop += opened
                    for row in opened:
                        self._say(_open_row(row))
                    for row in opened:
                        if not row.schedule_kept:
                            self._say(_behind(row))
                    continue
                if number == 0:
                    self._say(_header(_COLUMNS))
                client = "wrk" if plan.mode == "throughput" and self._wrk else "python"
                closed = _closed_ratios([_closed_result(s, plan, merged[s.name], client) for s in servers])
                report.runs += closed
                for result in closed:
                    self._say(_closed_row(result))
                    if result.note:
                        self._say(f"  {result.server}: {result.note}")
        finally:
            await self._engine.dispose()
        return report

    def _say(self, line: str) -> None:
        if self._announce is not None:
            if line.startswith("\n"):
                self._announce("")
                line = line[1:]
            self._announce(line)

    async def _prepare(self, server: _Server, plan: _Plan, posts: int) -> _Prepared:
        count = posts * plan.per_post
        deliveries = await _add_deliveries(self._engine, self._data, math.ceil(count / len(STATUSES)))
        events = _events(deliveries, count, BLOCK if plan.seconds else len(deliveries))
        groups = [events[i : i + plan.per_post] for i in range(0, len(events), plan.per_post)]
        ts = int(time.time())
        # Bodies and signatures are made before the clock starts: only the HTTP round trips are measured.
        signed = [(body, sign(self._secret, body)) for body in (_body(g, ts) for g in groups)]
        prepared = _Prepared(server, groups, signed)
        if plan.mode == "throughput" and self._wrk is not None:
            prepared.bodies_file = self._tmp / f"bodies-{server.name}.txt"
            with prepared.bodies_file.open("wb") as lines:
                for body, sig in signed:
                    lines.write(sig.encode() + b"\t" + body + b"\n")
        else:
            prepared.requests = [_request(server.host, body, sig) for body, sig in signed]
        return prepared

    async def _counted(self, order: list[_Server], plan: _Plan) -> dict[str, _Merged]:
        """A closed-loop run of a fixed number of POSTs after a warm-up (not measured), in chunks alternating
        between the servers, each on connections it keeps throughout."""
        runs = {server.name: await self._prepare(server, plan, plan.warmup + plan.requests) for server in order}
        async with contextlib.AsyncExitStack() as stack:
            lanes: dict[str, list[_Http]] = {}
            clients: dict[str, _HttpClient] = {}
            for server in order:
                prepared = runs[server.name]
                client = clients[server.name] = await stack.enter_async_context(_HttpClient(server))
                lanes[server.name] = await client.open(plan.concurrency)
                prepared.parts.append(
                    await _closed_loop(client, lanes[server.name], prepared.requests, range(plan.warmup), None)
                )
            chunks = _chunks(range(plan.warmup, plan.warmup + plan.requests)) if len(order) > 1 else []
            for number, chunk in enumerate(chunks or [range(plan.warmup, plan.warmup + plan.requests)]):
                for server in order if number % 2 == 0 else order[::-1]:
                    prepared = runs[server.name]
                    before = await server.webhook_seconds()
                    part = await _closed_loop(clients[server.name], lanes[server.name], prepared.requests, chunk, None)
                    after = await server.webhook_seconds()
                    part.served = (after[0] - before[0], after[1] - before[1])
                    prepared.parts.append(part)
        merged: dict[str, _Merged] = {}
        for server in order:
            server.check_alive()
            prepared = runs[server.name]
            # The warm-up's POSTs (the first part) were stored too: the check covers them, the figures do not.
            await self._verify(server, plan, prepared.groups, _merge(prepared.parts).outcome)
            merged[server.name] = _merge(prepared.parts[1:])
        return merged

    async def _timed(self, order: list[_Server], plan: _Plan, earlier: list[RunResult]) -> dict[str, _Merged]:
        """A throughput or open-loop run of ``plan.seconds``, in slices alternating between the servers."""
        runs: dict[str, _Prepared] = {}
        for server in order:
            if plan.mode == "open":
                posts = plan.rate * plan.seconds
            else:
                best = max((r.req_per_s for r in earlier if r.server == server.name and r.mode == "single"), default=0)
                posts = math.ceil(plan.seconds * max(THROUGHPUT_HEADROOM * best, THROUGHPUT_FLOOR_PER_S))
                posts = min(posts, THROUGHPUT_MAX_POSTS)
            runs[server.name] = await self._prepare(server, plan, posts)
        slices = _slices(plan.seconds) if len(order) > 1 else [plan.seconds]
        for number, seconds in enumerate(slices):
            for server in order if number % 2 == 0 else order[::-1]:
                prepared = runs[server.name]
                prepared.parts.append(await self._slice(prepared, plan, seconds))
        merged: dict[str, _Merged] = {}
        for server in order:
            prepared = runs[server.name]
            if prepared.bodies_file is not None:
                prepared.bodies_file.unlink(missing_ok=True)
            merged[server.name] = _merge(prepared.parts)
            await self._verify(server, plan, prepared.groups, merged[server.name].outcome)
        return merged

    async def _slice(self, prepared: _Prepared, plan: _Plan, seconds: int) -> _Outcome:
        server, total = prepared.server, len(prepared.signed)
        if prepared.next >= total:
            return _Outcome(seconds=0.0, sent=set(), ok=set(), ok_count=0, errors=0)
        before = await server.webhook_seconds()
        if plan.mode == "open":
            indices = range(prepared.next, min(total, prepared.next + plan.rate * seconds))
            async with _HttpClient(server) as client:
                outcome = await _open_loop(client, prepared.requests, indices, plan.rate)
        elif prepared.bodies_file is not None:
            assert self._wrk is not None
            outcome = await _run_wrk(
                self._wrk, server, prepared.bodies_file, prepared.next, total, plan.concurrency, seconds
            )
        else:
            async with _HttpClient(server) as client:
                conns = await client.open(plan.concurrency)
                deadline = time.perf_counter() + seconds
                outcome = await _closed_loop(client, conns, prepared.requests, range(prepared.next, total), deadline)
        prepared.next = max(outcome.sent, default=prepared.next - 1) + 1
        server.check_alive()
        after = await server.webhook_seconds()
        outcome.served = (after[0] - before[0], after[1] - before[1])
        return outcome

    async def _verify(
        self, server: _Server, plan: _Plan, groups: list[list[tuple[_Delivery, str]]], outcome: _Outcome
    ) -> None:
        """The 200s meant what they say: each answered event is stored and moved its delivery forward, and nothing
        that was not posted was stored. wrk reports counts, not which POSTs were answered: for its runs the stored
        events must cover every 200 and leave out at most the POSTs that failed or were cut off at the stop."""
        owner: dict[str, tuple[int, int]] = {}
        for group in groups:
            for d, status in group:
                owner[_key(d, status)] = (d.id, STATUSES.index(status))
        sent = {_key(d, s) for i in outcome.sent for d, s in groups[i]}
        stored = await _stored(self._engine, list(owner), len(sent))
        problems: list[str] = []
        if stray := len(stored - sent):
            problems.append(f"{stray} events stored that were never posted")
        if outcome.ok is not None:
            if missing := sum(1 for i in outcome.ok for d, s in groups[i] if _key(d, s) not in stored):
                problems.append(f"{missing} events answered 200 but not stored")
        else:
            if len(stored) < outcome.ok_count * plan.per_post:
                problems.append(f"{len(stored)} events stored for {outcome.ok_count * plan.per_post} answered 200")
            unexplained = len(sent) - len(stored) - (outcome.errors + outcome.unanswered_at_stop) * plan.per_post
            if unexplained > 0:
                problems.append(f"{unexplained} events posted, neither stored nor failed")
        expected: dict[int, int] = {d.id: 0 for group in groups for d, _ in group}
        for key in stored:
            delivery_id, rank = owner[key]
            expected[delivery_id] = max(expected[delivery_id], rank)
        actual = await _statuses(self._engine, list(expected))
        if wrong := sum(1 for i, rank in expected.items() if actual.get(i) != STATUSES[rank]):
            problems.append(f"{wrong} deliveries not at the status their stored events imply")
        if problems:
            where = f"{plan.mode} run" + (f" at {plan.concurrency} in flight" if plan.concurrency else "")
            raise _BenchFailedError(f"{server.name}, {where}: " + "; ".join(problems))


def _closed_result(server: _Server, plan: _Plan, merged: _Merged, client: str) -> RunResult:
    outcome, seconds = merged.outcome, merged.outcome.seconds
    p50, p95, p99, top = merged.percentiles()
    total, count = outcome.served
    return RunResult(
        server=server.name,
        client=client,
        mode=plan.mode,
        statuses_per_post=plan.per_post,
        concurrency=plan.concurrency,
        requests=outcome.ok_count + outcome.errors,
        errors=outcome.errors,
        seconds=round(seconds, 3),
        req_per_s=round(outcome.ok_count / seconds, 1) if seconds > 0 else 0.0,
        statuses_per_s=round(outcome.ok_count * plan.per_post / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=_ms(p50),
        p95_ms=_ms(p95),
        p99_ms=_ms(p99),
        max_ms=_ms(top),
        server_mean_ms=(_ms(total / count) if count else 0.0) if server.metrics else None,
        note="; ".join(outcome.notes) or None,
    )


def _open_result(server: _Server, plan: _Plan, merged: _Merged) -> OpenLoopResult:
    outcome = merged.outcome
    p50, p95, p99, top = merged.percentiles()
    late = sorted(outcome.late)
    late_p99 = percentile(late, 0.99)
    posts = len(late)
    sent_per_s = round(posts / outcome.seconds, 1) if outcome.seconds > 0 else 0.0
    return OpenLoopResult(
        server=server.name,
        target_per_s=plan.rate,
        seconds=round(outcome.seconds, 3),
        requests=posts,
        errors=outcome.errors,
        sent_per_s=sent_per_s,
        p50_ms=_ms(p50),
        p95_ms=_ms(p95),
        p99_ms=_ms(p99),
        max_ms=_ms(top),
        late_p99_ms=_ms(late_p99),
        late_max_ms=_ms(late[-1] if late else 0.0),
        schedule_kept=sent_per_s >= SCHEDULE_RATE_SHARE * plan.rate
        and (late_p99 <= SCHEDULE_LATE_P99 or late_p99 <= SCHEDULE_LATE_SHARE * p99),
        peak_in_flight=outcome.peak_in_flight,
    )


async def _stored(engine: Any, keys: list[str], sent: int) -> set[str]:
    """The stored ones among ``keys``, read until the count settles: a POST cut off by a client (wrk stopping, a
    timeout) can still be committed by the server a moment later."""
    from sqlalchemy import text

    previous = -1
    for _ in range(50):
        stored: set[str] = set()
        async with engine.connect() as conn:
            for start in range(0, len(keys), 50_000):
                rows = await conn.execute(
                    text("SELECT key FROM webhook_event WHERE key = ANY(:k)"), {"k": keys[start : start + 50_000]}
                )
                stored.update(str(r[0]) for r in rows)
        if len(stored) in (sent, previous):
            break
        previous = len(stored)
        await asyncio.sleep(0.1)
    return stored


async def _statuses(engine: Any, ids: list[int]) -> dict[int, str]:
    from sqlalchemy import text

    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, status FROM delivery WHERE id = ANY(:ids)"), {"ids": ids})
        return {int(r[0]): str(r[1]) for r in rows}


async def _clean_up(engine: Any, data: _Data) -> None:
    """Delete exactly what this run created: its dedup keys, then its employer (which cascades to the rest)."""
    from sqlalchemy import text

    keys = [_key(d, status) for d in data.deliveries for status in STATUSES]
    async with engine.begin() as conn:
        for start in range(0, len(keys), 50_000):
            await conn.execute(
                text("DELETE FROM webhook_event WHERE key = ANY(:k)"), {"k": keys[start : start + 50_000]}
            )
        await conn.execute(text("DELETE FROM employer WHERE id = :e"), {"e": data.employer_id})


# --- the Python client --------------------------------------------------------------------------------------------


class _Http(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, on asyncio's protocol callbacks.

    A general client (aiohttp, httpx) spends far more CPU per request, CPU the servers need on a small machine, and
    at an open loop's 1,500/s it falls behind its schedule. The answers here are uvicorn's: a status line, headers
    with Content-Length, the body; anything else is an error.
    """

    def __init__(self, on_answer: Callable[[_Http, int, int], None]) -> None:
        self.on_answer = on_answer
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.tag = -1  # the request being answered; -1 when idle
        self.since = 0.0
        self.closed = False
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def send(self, request: bytes, tag: int) -> None:
        assert self.transport is not None
        self.tag = tag
        self.since = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        start = head.find(b"\r\ncontent-length:")
        try:
            if self.tag < 0 or start < 0 or not head.startswith(b"http/1.1 "):
                raise ValueError(head[:80])
            stop = head.find(b"\r\n", start + 2)
            length = int(head[start + 17 : stop if stop >= 0 else len(head)])
            status = int(head[9:12])
        except ValueError:
            self.abort()
            return
        if len(buffer) < end + 4 + length:
            return
        del buffer[: end + 4 + length]
        if b"\r\nconnection: close" in head:
            self.closed = True
            self.abort()
        tag, self.tag = self.tag, -1
        self.on_answer(self, tag, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tag >= 0:
            tag, self.tag = self.tag, -1
            self.on_answer(self, tag, -1)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _wake(conn: _Http, _tag: int, status: int) -> None:
    if conn.waiter is not None and not conn.waiter.done():
        conn.waiter.set_result(status)


class _HttpClient:
    """The connections of one run, and a watchdog that gives up on a request unanswered after REQUEST_TIMEOUT."""

    def __init__(self, server: _Server) -> None:
        self._port = server.port
        self.conns: set[_Http] = set()
        self._watchdog: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _HttpClient:
        self._watchdog = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.abort()
        self.conns.clear()

    async def connect(self, on_answer: Callable[[_Http, int, int], None]) -> _Http:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Http(on_answer), "127.0.0.1", self._port)
        self.conns.add(conn)
        return conn

    async def open(self, n: int) -> list[_Http]:
        """``n`` connections made before the clock starts, as a warm client would have them."""
        try:
            return list(await asyncio.gather(*(self.connect(_wake) for _ in range(n))))
        except OSError as exc:
            raise _BenchFailedError(f"could not connect to the server: {exc}") from None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.perf_counter()
            for conn in list(self.conns):
                if conn.closed:
                    self.conns.discard(conn)
                elif conn.tag >= 0 and now - conn.since > REQUEST_TIMEOUT:
                    conn.abort()


async def _closed_loop(
    client: _HttpClient, conns: list[_Http], requests: list[bytes], indices: range, deadline: float | None
) -> _Outcome:
    """One lane per connection, each taking the next POST when its previous one was answered, until none is left
    (or, with a deadline, until it passes)."""
    loop = asyncio.get_running_loop()
    queue: Iterator[int] = iter(indices)
    sent: set[int] = set()
    ok: set[int] = set()
    outcome = _Outcome(seconds=0.0, sent=sent, ok=ok, ok_count=0, errors=0)

    async def lane(slot: int) -> None:
        conn = conns[slot]
        for i in queue:
            if deadline is not None and time.perf_counter() >= deadline:
                return
            if conn.closed:
                try:
                    conn = conns[slot] = await client.connect(_wake)
                except OSError:
                    outcome.errors += 1
                    continue
            conn.waiter = loop.create_future()
            started = time.perf_counter()
            sent.add(i)
            conn.send(requests[i], i)
            status = await conn.waiter
            if status == 200:
                outcome.latencies.append(time.perf_counter() - started)
                ok.add(i)
            else:
                outcome.errors += 1

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for slot in range(len(conns)):
            group.create_task(lane(slot))
    outcome.seconds = time.perf_counter() - started
    outcome.ok_count = len(ok)
    if deadline is not None and len(sent) == len(indices) and time.perf_counter() < deadline:
        outcome.notes.append("posted all its prepared statuses before the time was up: a shorter run")
    return outcome


async def _open_loop(client: _HttpClient, requests: list[bytes], indices: range, rate: int) -> _Outcome:
    """The j-th of ``indices`` is due at t0 + j/rate and handed to an idle connection then, whatever became of the
    earlier ones (a new connection is opened when none is idle). Its latency counts from t0 + j/rate, so time spent
    waiting for a connection, or for a client that fell behind, is part of it; how late each was handed over is
    kept apart."""
    loop = asyncio.get_running_loop()
    n, interval = len(indices), 1.0 / rate
    sent: set[int] = set()
    ok: set[int] = set()
    outcome = _Outcome(seconds=0.0, sent=sent, ok=ok, ok_count=0, errors=0)
    idle: list[_Http] = []
    waiting: deque[int] = deque()
    opening: set[asyncio.Task[None]] = set()
    finished: asyncio.Future[None] = loop.create_future()
    in_flight, left, t0 = 0, n, 0.0

    def start(conn: _Http, j: int) -> None:
        nonlocal in_flight
        in_flight += 1
        sent.add(indices[j])
        conn.send(requests[indices[j]], j)

    def settle() -> None:
        nonlocal left
        left -= 1
        if left == 0 and not finished.done():
            finished.set_result(None)

    def give(conn: _Http) -> None:
        if conn.closed:
            return
        if waiting:
            start(conn, waiting.popleft())
        else:
            idle.append(conn)

    def answered(conn: _Http, j: int, status: int) -> None:
        nonlocal in_flight
        in_flight -= 1
        if status == 200:
            outcome.latencies.append(time.perf_counter() - (t0 + j * interval))
            ok.add(indices[j])
        else:
            outcome.errors += 1
        settle()
        give(conn)

    async def open_one() -> None:
        try:
            conn = await client.connect(answered)
        except OSError:
            # No connection for the request that asked for one: it fails, rather than waiting for ever.
            if waiting:
                waiting.popleft()
                outcome.errors += 1
                settle()
            return
        give(conn)

    def dispatch(j: int) -> None:
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed by the server
            if not conn.closed:
                start(conn, j)
                return
        waiting.append(j)
        if in_flight + len(opening) < OPEN_LOOP_MAX_CONNECTIONS:
            task = loop.create_task(open_one())
            opening.add(task)
            task.add_done_callback(opening.discard)

    # Connections for the first ~10 ms of traffic, opened before the schedule starts.
    for conn in await client.open(min(OPEN_LOOP_MAX_CONNECTIONS, max(4, math.ceil(rate / 100)))):
        conn.on_answer = answered
        idle.append(conn)
    t0 = time.perf_counter() + 0.01
    j = 0
    last = t0
    while j < n:
        now = time.perf_counter()
        due = min(n, math.floor((now - t0) * rate) + 1) if now >= t0 else 0
        while j < due:
            outcome.late.append(now - (t0 + j * interval))
            dispatch(j)
            j += 1
            outcome.peak_in_flight = max(outcome.peak_in_flight, in_flight + len(waiting))
        last = now
        if j < n:
            await asyncio.sleep(t0 + j * interval - time.perf_counter())
    # The rate the client kept: n requests handed over between t0 and the last hand-over (n - 1 intervals).
    outcome.seconds = (last - t0) * n / (n - 1) if n > 1 else interval
    try:
        await asyncio.wait_for(asyncio.shield(finished), REQUEST_TIMEOUT + 5)
    except TimeoutError:
        outcome.errors += len(waiting)
    outcome.ok_count = len(ok)
    return outcome


# --- wrk --------------------------------------------------------------------------------------------------------------

# One thread: at a few thousand requests per second wrk's event loop needs a sliver of a core, and one thread posts
# the bodies in file order, so the POSTs made are exactly the `issued` ones after the offset.
WRK_QUANTILES = 1_000
_WRK_SCRIPT = """\
-- Written by `jem-bot bench webhook` for one run: each request posts the next pre-signed body (one status, never
-- twice), so the server does the whole work of a new event every time. Arguments: the bodies file, and how many
-- of its lines earlier slices of the run posted already.
local sigs, bodies, n, threads = {}, {}, 0, {}
issued, non200, exhausted = 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local skip = tonumber(args[2])
  for line in io.lines(args[1]) do
    if skip > 0 then
      skip = skip - 1
    else
      local tab = string.find(line, "\\t", 1, true)
      n = n + 1
      sigs[n] = string.sub(line, 1, tab - 1)
      bodies[n] = string.sub(line, tab + 1)
    end
  end
end

function request()
  local i = issued + 1
  if i > n then
    -- Out of distinct statuses: stop. This last request repeats one, which the server answers from its dedup table.
    exhausted = 1
    wrk.thread:stop()
    i = n
  else
    issued = i
  end
  return wrk.format("POST", "%(path)s",
    {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = sigs[i]}, bodies[i])
end

function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

-- Counts, then %(quantiles)d latency quantiles (each standing for an equal share of the answers) and the maximum,
-- in microseconds: the bench merges the slices of a run into one distribution.
function done(summary, latency, requests)
  local t, e = threads[1], summary.errors
  io.write(string.format("JEMBENCH %%d %%d %%d %%d %%d %%d %%d %%d %%d\\n",
    t:get("issued"), t:get("non200"), t:get("exhausted"), summary.requests, summary.duration,
    e.connect, e.read, e.write, e.timeout))
  local q = {}
  for k = 1, %(quantiles)d do
    q[k] = string.format("%%d", latency:percentile((k - 0.5) * 100 / %(quantiles)d))
  end
  io.write("JEMLATENCY " .. table.concat(q, " ") .. string.format(" %%d\\n", latency.max))
end
"""


async def _run_wrk(
    wrk: str, server: _Server, bodies: Path, offset: int, total: int, connections: int, seconds: int
) -> _Outcome:
    script = bodies.with_suffix(".lua")
    script.write_text(_WRK_SCRIPT % {"path": PATH, "quantiles": WRK_QUANTILES})
    process = await asyncio.create_subprocess_exec(
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={int(REQUEST_TIMEOUT)}s",
        "-s",
        str(script),
        server.base,
        "--",
        str(bodies),
        str(offset),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = {
        x.split(" ", 1)[0]: x.split()[1:] for x in out.decode(errors="replace").splitlines() if x.startswith("JEM")
    }
    if process.returncode != 0 or "JEMBENCH" not in lines or "JEMLATENCY" not in lines:
        why = (err or out).decode(errors="replace").strip().splitlines()
        raise _BenchFailedError(f"wrk failed against {server.name}: {why[-1] if why else f'exit {process.returncode}'}")
    issued, non200, exhausted, answered, duration_us, *socket_errors = (int(x) for x in lines["JEMBENCH"])
    ok = answered - non200
    *quantiles, top = (int(x) / 1e6 for x in lines["JEMLATENCY"])
    took = duration_us / 1e6
    return _Outcome(
        seconds=took,
        sent=set(range(offset, offset + issued)),
        ok=None,
        ok_count=ok,
        errors=non200 + sum(socket_errors),
        latencies=quantiles if ok else [],
        weight=ok / len(quantiles) if quantiles else 0.0,
        top=top if ok else 0.0,
        unanswered_at_stop=connections,
        notes=[f"ran out of its {total} prepared statuses: a shorter run"] if exhausted else [],
    )


# --- the servers ----------------------------------------------------------------------------------------------------


class _Server:
    """jem-bot (``serve --no-dispatcher``) or the lean reference, on a free loopback port with a bench-only app
    secret, in a child process under uvicorn; stopped on exit."""

    def __init__(
        self, name: str, database_url: str, secret: str, *, workers: int = 1, startup_timeout: float = 60.0
    ) -> None:
        self.name = name
        self._workers = workers
        # "server ms" comes from /metrics, which is per process: a second process would answer some reads.
        self.metrics = name == JEM_BOT and workers == 1
        self._database_url = database_url
        self._secret = secret
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.port = 0
        self.host = ""
        self.base = ""

    def __enter__(self) -> _Server:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.base = f"http://{self.host}"
        self._log = tempfile.TemporaryFile()
        if self.name == JEM_BOT:
            command = ["-m", "bot", "serve", "--no-dispatcher", "--host", "127.0.0.1", "--port", str(self.port)]
        else:
            command = ["-m", "bot.bench.lean", str(self.port)]
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules, no user input
            [sys.executable, *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=self._env(),
        )
        deadline = time.monotonic() + self._startup_timeout
        try:
            while not self._ready():
                if self._process.poll() is not None or time.monotonic() > deadline:
                    tail = last_line(self._log)
                    raise CommandFailedError(f"the {self.name} server did not start: {tail or 'no output'}")
                time.sleep(0.1)
        except BaseException:
            # Not started, so no `with` will stop it: a Ctrl+C here must not leave it running.
            self.__exit__(None, None, None)
            raise
        return self

    def _ready(self) -> bool:
        import httpx

        try:
            if self.name == JEM_BOT:
                return httpx.get(self.base + "/health", timeout=2.0).status_code == 200
            # The reference has no routes but the webhook: an unsigned POST answered 403 means it is up.
            return httpx.post(self.base + PATH, content=b"{}", timeout=2.0).status_code == 403
        except httpx.HTTPError:
            return False

    def _env(self) -> dict[str, str]:
        # Only what this server needs: the user's own secrets and settings stay out of it. It sends nothing
        # (no dispatcher), so the Graph credentials are placeholders.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "DATABASE_URL", "JEM_"))}
        if self.name == LEAN:
            from bot.db.engine import asyncpg_dsn

            # In the environment, not on the command line, where any local user could read them in `ps`.
            return env | {"JEM_LEAN_DSN": asyncpg_dsn(self._database_url), "JEM_LEAN_SECRET": self._secret}
        return env | {
            # One server process unless asked, like the reference: the ratio then compares the work each does per
            # request, not how many cores each was given (and /metrics, read for "server ms", is per process).
            "JEM_WORKERS": str(self._workers),
            "DATABASE_URL": self._database_url,
            "WHATSAPP_APP_SECRET": self._secret,
            "WHATSAPP_VERIFY_TOKEN": secrets.token_urlsafe(16),
            "WHATSAPP_ACCESS_TOKEN": "bench-no-sends",
            "WHATSAPP_PHONE_NUMBER_ID": "100000000000001",
            "WHATSAPP_API_URL": "http://127.0.0.1:9/v23.0",
        }

    async def webhook_seconds(self) -> tuple[float, float]:
        """(sum, count) of jem-bot's webhook latency histogram, read from /metrics; (0, 0) for the reference."""
        if not self.metrics:
            return 0.0, 0.0
        import aiohttp

        try:
            async with aiohttp.ClientSession() as http, http.get(self.base + "/metrics") as response:
                body = await response.text()
        except aiohttp.ClientError:
            raise _BenchFailedError(f"the server stopped answering: {self.last_words() or 'no output'}") from None
        values = {"sum": 0.0, "count": 0.0}
        for line in body.splitlines():
            for name in values:
                if line.startswith(f"jem_webhook_request_seconds_{name} "):
                    values[name] = float(line.split()[-1])
        return values["sum"], values["count"]

    def check_alive(self) -> None:
        """A server that died mid-run turns every later POST into an error: the figures would mean nothing."""
        if self._process is not None and self._process.poll() is not None:
            raise _BenchFailedError(f"the {self.name} server stopped: {self.last_words() or 'no output'}")

    def last_words(self) -> str:
        return last_line(self._log) if self._log is not None else ""

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            terminate(self._process, grace=20)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


# --- numbers and the tables -------------------------------------------------------------------------------------------


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _ratio(mine: float, reference: float) -> float | None:
    return round(mine / reference, 2) if reference > 0 else None


def _closed_ratios(results: list[RunResult]) -> list[RunResult]:
    lean = next((r for r in results if r.server == LEAN), None)
    if lean is None:
        return results
    return [
        dataclasses.replace(
            r, vs_lean_req_per_s=_ratio(r.req_per_s, lean.req_per_s), vs_lean_p99=_ratio(r.p99_ms, lean.p99_ms)
        )
        if r.server == JEM_BOT
        else r
        for r in results
    ]


def _open_ratios(results: list[OpenLoopResult]) -> list[OpenLoopResult]:
    lean = next((r for r in results if r.server == LEAN), None)
    if lean is None:
        return results
    return [
        dataclasses.replace(r, vs_lean_p50=_ratio(r.p50_ms, lean.p50_ms), vs_lean_p99=_ratio(r.p99_ms, lean.p99_ms))
        if r.server == JEM_BOT
        else r
        for r in results
    ]


_COLUMNS = (
    ("server", 7),
    ("mode", 10),
    ("client", 6),
    ("statuses/POST", 13),
    ("in flight", 9),
    ("requests", 8),
    ("errors", 6),
    ("req/s", 8),
    ("statuses/s", 10),
    ("p50 ms", 8),
    ("p95 ms", 8),
    ("p99 ms", 8),
    ("max ms", 8),
    ("server ms", 9),
    ("req/s vs lean", 13),
    ("p99 vs lean", 11),
)

_OPEN_COLUMNS = (
    ("server", 7),
    ("target/s", 8),
    ("sent/s", 8),
    ("requests", 8),
    ("errors", 6),
    ("p50 ms", 8),
    ("p95 ms", 8),
    ("p99 ms", 8),
    ("max ms", 8),
    ("late p99 ms", 11),
    ("late max ms", 11),
    ("peak in flight", 14),
    ("p50 vs lean", 11),
    ("p99 vs lean", 11),
)


def _header(columns: Sequence[tuple[str, int]]) -> str:
    return "  ".join(f"{name:>{width}}" for name, width in columns)


def _cells(values: Sequence[object], columns: Sequence[tuple[str, int]]) -> str:
    shown = (
        "-" if v is None else f"{v}x" if name.endswith("vs lean") else v
        for v, (name, _) in zip(values, columns, strict=True)
    )
    return "  ".join(f"{v!s:>{width}}" for v, (_, width) in zip(shown, columns, strict=True))


def _closed_row(r: RunResult) -> str:
    values = (
        r.server,
        r.mode,
        r.client,
        r.statuses_per_post,
        r.concurrency,
        r.requests,
        r.errors,
        r.req_per_s,
        r.statuses_per_s,
        r.p50_ms,
        r.p95_ms,
        r.p99_ms,
        r.max_ms,
        r.server_mean_ms,
        r.vs_lean_req_per_s,
        r.vs_lean_p99,
    )
    return _cells(values, _COLUMNS)


def _open_row(r: OpenLoopResult) -> str:
    values = (
        r.server,
        r.target_per_s,
        r.sent_per_s,
        r.requests,
        r.errors,
        r.p50_ms,
        r.p95_ms,
        r.p99_ms,
        r.max_ms,
        r.late_p99_ms,
        r.late_max_ms,
        r.peak_in_flight,
        r.vs_lean_p50,
        r.vs_lean_p99,
    )
    return _cells(values, _OPEN_COLUMNS)


def _behind(r: OpenLoopResult) -> str:
    return (
        f"  {r.server}: the Python client fell behind its schedule: it sent {r.sent_per_s}/s of {r.target_per_s}/s, "
        f"99 % of POSTs at most {r.late_p99_ms} ms after their time, the latest {r.late_max_ms} ms after; the "
        "latencies count from the scheduled times, so they include that delay and overstate the server's"
    )


def _print(line: str) -> None:
    # Rows stream as runs finish: a long comparison shows progress.
    print(line, flush=True)
