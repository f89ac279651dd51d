"""`jem-bot bench webhook`: latency and throughput of signed status POSTs, over real HTTP, on the real app.

The server is ``jem-bot serve --no-dispatcher`` (uvicorn, exactly the production path) in a child process on a free
loopback port, against ``DATABASE_URL`` or the embedded database. The bench adds rows of its own there and deletes
them at the end, also after a failure or Ctrl+C: an employer ``bench-webhook-<run>``, employees on +999 numbers (an
unassigned country code, so no real inbound message can ever match them), one completed announcement and its
``sent`` deliveries with wamids ``wamid.bench-<run>-…``. Nothing else is read or written.

Each POST is signed like Meta's and carries status callbacks for those deliveries (sent, then delivered, then read,
spread over the deliveries so that concurrent requests touch different rows, as real traffic mostly does): every
event is new and is applied through the ledger. Two modes: one status per POST (Meta's usual shape) and
``--batch-size`` statuses per POST (Meta may batch). Latency is measured by the client from sending the request to
reading the whole response; "server ms" is the app's own mean (its webhook histogram), without HTTP and client
time. After each run the bench checks that every event was stored and every delivery reached the status its
events imply; a mismatch fails the command. (Being a normal `serve`, the server also runs the periodic purge of
expired idempotency keys and of dedup rows older than 8 days, as any running server does.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any

from bot.bench.common import free_port, int_list, last_line, percentile, terminate
from bot.dispatch.worker import run_event_loop
from bot.runtime import CommandFailedError, UsageError, preflight, run_with_engine
from bot.settings import Settings
from bot.webhook.signature import sign

MAX_REQUESTS = 100_000
MAX_CONCURRENCY = 1_000
MAX_BATCH = 1_000
MAX_EVENTS = 2_000_000
STATUSES = ("sent", "delivered", "read")
PATH = "/webhooks/whatsapp"


@dataclass(frozen=True, slots=True)
class RunResult:
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
    server_mean_ms: float


@dataclass(frozen=True, slots=True)
class _Plan:
    mode: str
    per_post: int
    concurrency: int
    warmup: int
    requests: int

    @property
    def events(self) -> int:
        return (self.warmup + self.requests) * self.per_post


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


def run(settings: Settings, args: argparse.Namespace) -> None:

    if not 1 <= args.requests <= MAX_REQUESTS:
        raise UsageError(f"--requests must be 1-{MAX_REQUESTS}, got {args.requests}")
    if any(not 1 <= c <= MAX_CONCURRENCY for c in args.concurrency):
        raise UsageError(f"--concurrency must be 1-{MAX_CONCURRENCY}")
    if not 0 <= args.batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size must be 0-{MAX_BATCH}, got {args.batch_size}")
    if not 1 <= args.batch_requests <= MAX_REQUESTS:
        raise UsageError(f"--batch-requests must be 1-{MAX_REQUESTS}, got {args.batch_requests}")
    plans = _plans(args.requests, args.concurrency, args.batch_size, args.batch_requests)
    if sum(p.events for p in plans) > MAX_EVENTS:
        raise UsageError(f"that would post more than {MAX_EVENTS} statuses: lower --requests or --batch-requests")

    # One clear line (exit 2) for an unreachable database or a schema that is behind, before anything is written.
    url = preflight(settings)
    database = "DATABASE_URL" if settings.database_url else f"embedded ({settings.data_dir})"
    announce = None if args.json else _print
    if announce is not None:
        announce(f"database: {database}")
    run_id, secret = secrets.token_hex(4), secrets.token_urlsafe(24)
    needed = sum(math.ceil(p.events / len(STATUSES)) for p in plans)
    data = run_with_engine(url, lambda engine: _seed(engine, run_id, needed))
    try:
        # The server stops before the clean-up, so no request still in flight can write after it.
        with _Server(url, secret) as server:
            if announce is not None:
                announce(f"server: jem-bot serve --no-dispatcher at {server.base} (uvicorn, its own process)")
                announce(_header())
            results = run_event_loop(_measure_all(url, server, secret, plans, data, announce))
    except _BenchFailedError as exc:
        raise CommandFailedError(str(exc)) from None
    finally:
        run_with_engine(url, lambda engine: _clean_up(engine, data))
    if args.json:
        print(json.dumps({"database": database, "runs": [asdict(r) for r in results]}, indent=2))


def _plans(requests: int, concurrency: Sequence[int], batch_size: int, batch_requests: int) -> list[_Plan]:
    plans: list[_Plan] = []
    for c in concurrency:
        # Warm-up (not measured): opens the connections and fills the server's statement caches.
        plans.append(_Plan("single", 1, c, warmup=min(max(2 * c, 50), 500), requests=requests))
        if batch_size:
            plans.append(_Plan("batch", batch_size, c, warmup=min(c, 20), requests=batch_requests))
    return plans


class _BenchFailedError(Exception):
    """The numbers would be meaningless: the server stopped, or answered 200 without recording everything."""


# --- the run --------------------------------------------------------------------------------------------------


async def _measure_all(
    url: str,
    server: _Server,
    secret: str,
    plans: list[_Plan],
    data: _Data,
    announce: Callable[[str], None] | None,
) -> list[RunResult]:
    """Each plan on deliveries of its own, verified before the next; ``announce`` streams the table rows."""
    from bot.db.engine import make_engine

    engine = make_engine(url, pool_size=1, max_overflow=0)
    results: list[RunResult] = []
    offset = 0
    try:
        for plan in plans:
            n = math.ceil(plan.events / len(STATUSES))
            deliveries = data.deliveries[offset : offset + n]
            offset += n
            result = await _measure(server, secret, plan, deliveries)
            results.append(result)
            if announce is not None:
                announce(_row(result))
            await _verify(engine, deliveries, plan)
    finally:
        await engine.dispose()
    return results


@dataclass(frozen=True, slots=True)
class _Delivery:
    id: int
    wamid: str
    phone_digits: str


@dataclass(frozen=True, slots=True)
class _Data:
    employer_id: int
    deliveries: list[_Delivery]


async def _seed(engine: Any, run_id: str, n: int) -> _Data:
    from sqlalchemy import text

    # One transaction: a failed seed leaves nothing behind to clean up.
    async with engine.begin() as conn:
        employer_id = (
            await conn.execute(
                text("INSERT INTO employer (slug, name, timezone) VALUES (:s, :n, 'UTC') RETURNING id"),
                {"s": f"bench-webhook-{run_id}", "n": "jem-bot bench webhook (temporary, safe to delete)"},
            )
        ).scalar_one()
        await conn.execute(
            text(
                "INSERT INTO employee (employer_id, phone, name) "
                "SELECT :e, '+999' || lpad(g::text, 11, '0'), 'Bench ' || g FROM generate_series(1, :n) AS g"
            ),
            {"e": employer_id, "n": n},
        )
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
        rows = (
            await conn.execute(
                text(
                    "INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, attempts, wamid) "
                    "SELECT :e, :a, id, 'announcement', 'sent', 1, :prefix || lpad(id::text, 12, '0') "
                    "FROM employee WHERE employer_id = :e ORDER BY id "
                    "RETURNING id, wamid, (SELECT phone FROM employee WHERE employee.id = delivery.employee_id)"
                ),
                {"e": employer_id, "a": announcement_id, "prefix": f"wamid.bench-{run_id}-"},
            )
        ).all()
    deliveries = sorted((_Delivery(int(r[0]), str(r[1]), str(r[2]).lstrip("+")) for r in rows), key=lambda d: d.id)
    return _Data(employer_id=int(employer_id), deliveries=deliveries)


def _events(deliveries: list[_Delivery], count: int) -> list[tuple[_Delivery, str]]:
    """`count` status events: every delivery's `sent`, then every `delivered`, then every `read`."""
    return [(deliveries[i % len(deliveries)], STATUSES[i // len(deliveries)]) for i in range(count)]


def _body(events: list[tuple[_Delivery, str]], ts: int) -> bytes:
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


async def _measure(server: _Server, secret: str, plan: _Plan, deliveries: list[_Delivery]) -> RunResult:
    import aiohttp

    events = _events(deliveries, plan.events)
    ts = int(time.time())
    # Bodies and signatures are made before the clock starts: only the HTTP round trip is measured.
    posts = [
        (body, sign(secret, body))
        for body in (_body(events[i : i + plan.per_post], ts) for i in range(0, len(events), plan.per_post))
    ]
    warmup, measured = posts[: plan.warmup], posts[plan.warmup :]
    connector = aiohttp.TCPConnector(limit=plan.concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        url = server.base + PATH
        try:
            await _Lanes(http, url, warmup).fire(plan.concurrency)
            before = await server.webhook_seconds(http)
            lanes = _Lanes(http, url, measured)
            started = time.perf_counter()
            await lanes.fire(plan.concurrency)
            seconds = time.perf_counter() - started
            after = await server.webhook_seconds(http)
        except aiohttp.ClientError:
            raise _BenchFailedError(f"the server stopped answering: {server.last_words() or 'no output'}") from None
    latencies = sorted(lanes.latencies)
    ok = len(latencies)
    served = after[1] - before[1]
    return RunResult(
        mode=plan.mode,
        statuses_per_post=plan.per_post,
        concurrency=plan.concurrency,
        requests=len(measured),
        errors=lanes.errors,
        seconds=round(seconds, 3),
        req_per_s=round(ok / seconds, 1) if seconds > 0 else 0.0,
        statuses_per_s=round(ok * plan.per_post / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=_ms(percentile(latencies, 0.50)),
        p95_ms=_ms(percentile(latencies, 0.95)),
        p99_ms=_ms(percentile(latencies, 0.99)),
        max_ms=_ms(latencies[-1] if latencies else 0.0),
        server_mean_ms=_ms((after[0] - before[0]) / served) if served else 0.0,
    )


class _Lanes:
    """Exactly ``concurrency`` coroutines taking the next POST until none is left."""

    def __init__(self, http: Any, url: str, posts: list[tuple[bytes, str]]) -> None:
        self._http = http
        self._url = url
        self._posts = iter(posts)
        self.latencies: list[float] = []
        self.errors = 0

    async def fire(self, concurrency: int) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(self._lane())

    async def _lane(self) -> None:
        import aiohttp

        for body, signature in self._posts:
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
            started = time.perf_counter()
            try:
                async with self._http.post(self._url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                self.errors += 1
                continue
            if status != 200:
                self.errors += 1
                continue
            self.latencies.append(time.perf_counter() - started)


async def _verify(engine: Any, deliveries: list[_Delivery], plan: _Plan) -> None:
    """Every posted event is stored once and moved its delivery forward: the 200s meant what they say."""
    from sqlalchemy import text

    events = _events(deliveries, plan.events)
    expected: dict[int, str] = {}
    for d, status in events:
        expected[d.id] = status  # each delivery's events arrive in sent < delivered < read order
    keys = [f"st:{d.wamid}:{status}" for d, status in events]
    async with engine.connect() as conn:
        stored = (
            await conn.execute(text("SELECT count(*) FROM webhook_event WHERE key = ANY(:k)"), {"k": keys})
        ).scalar_one()
        rows = (
            await conn.execute(text("SELECT id, status FROM delivery WHERE id = ANY(:ids)"), {"ids": list(expected)})
        ).all()
    wrong = sum(1 for r in rows if expected.get(int(r[0])) != r[1])
    if stored != len(keys) or wrong:
        raise _BenchFailedError(
            f"{plan.mode} run at concurrency {plan.concurrency}: {stored} of {len(keys)} status events stored, "
            f"{wrong} deliveries not at the status their events imply"
        )


async def _clean_up(engine: Any, data: _Data) -> None:
    """Delete exactly what this run created: its dedup keys, then its employer (which cascades to the rest)."""
    from sqlalchemy import text

    keys = [f"st:{d.wamid}:{status}" for d in data.deliveries for status in STATUSES]
    async with engine.begin() as conn:
        for start in range(0, len(keys), 50_000):
            await conn.execute(
                text("DELETE FROM webhook_event WHERE key = ANY(:k)"), {"k": keys[start : start + 50_000]}
            )
        await conn.execute(text("DELETE FROM employer WHERE id = :e"), {"e": data.employer_id})


# --- the server -----------------------------------------------------------------------------------------------


class _Server:
    """``jem-bot serve --no-dispatcher`` on a free loopback port with a bench-only app secret; stopped on exit."""

    def __init__(self, database_url: str, secret: str, *, startup_timeout: float = 60.0) -> None:
        self._database_url = database_url
        self._secret = secret
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.base = ""

    def __enter__(self) -> _Server:
        import httpx

        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no user input
            [sys.executable, "-m", "bot", "serve", "--no-dispatcher", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=self._env(),
        )
        deadline = time.monotonic() + self._startup_timeout
        while True:
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = last_line(self._log)
                self.__exit__(None, None, None)
                raise CommandFailedError(f"the server did not start: {tail or 'no output'}")
            try:
                if httpx.get(self.base + "/health", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def _env(self) -> dict[str, str]:
        # Only what this server needs: the user's own secrets and settings stay out of it. It sends nothing
        # (no dispatcher), so the Graph credentials are placeholders.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "DATABASE_URL", "JEM_"))}
        env |= {
            "DATABASE_URL": self._database_url,
            "WHATSAPP_APP_SECRET": self._secret,
            "WHATSAPP_VERIFY_TOKEN": secrets.token_urlsafe(16),
            "WHATSAPP_ACCESS_TOKEN": "bench-no-sends",
            "WHATSAPP_PHONE_NUMBER_ID": "100000000000001",
            "WHATSAPP_API_URL": "http://127.0.0.1:9/v23.0",
        }
        return env

    async def webhook_seconds(self, http: Any) -> tuple[float, float]:
        """(sum, count) of the app's webhook latency histogram, read from /metrics."""
        async with http.get(self.base + "/metrics") as response:
            body = await response.text()
        values = {"sum": 0.0, "count": 0.0}
        for line in body.splitlines():
            for name in values:
                if line.startswith(f"jem_webhook_request_seconds_{name} "):
                    values[name] = float(line.split()[-1])
        return values["sum"], values["count"]

    def last_words(self) -> str:
        return last_line(self._log) if self._log is not None else ""

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            terminate(self._process, grace=20)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


# --- numbers and the table ------------------------------------------------------------------------------------


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


_COLUMNS = (
    ("mode", 6),
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
)


def _header() -> str:
    return "  ".join(f"{name:>{width}}" for name, width in _COLUMNS)


def _row(r: RunResult) -> str:
    values = (
        r.mode,
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
    )
    return "  ".join(f"{v!s:>{width}}" for v, (_, width) in zip(values, _COLUMNS, strict=True))


def _print(line: str) -> None:
    # Rows stream as runs finish: a long comparison shows progress.
    print(line, flush=True)
