"""`jem-bot bench client`: GraphClient throughput per httpx transport against a local fake Graph.

The fake Graph runs in a separate process (its own core and event loop) on 127.0.0.1 and answers every
``POST /{version}/{phone_number_id}/messages`` like the Cloud API after ``--latency-ms``. The client fires
``--requests`` sends through the real `GraphClient` keeping ``--concurrency`` in flight, and reports
msg/s and latency percentiles per transport. Bounded: at most `MAX_REQUESTS` sends and ``--max-seconds``
per run; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import select
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from bot.bench.common import int_list, percentile
from bot.graph.client import GraphClient, http_limits, make_http_client
from bot.graph.errors import GraphError
from bot.graph.transport import FAST_TRANSPORT, TRANSPORTS
from bot.runtime import UsageError
from bot.settings import Settings

MAX_REQUESTS = 200_000
MAX_CONCURRENCY = 2_000
PHONE_NUMBER_ID = "100000000000001"


@dataclass(frozen=True, slots=True)
class RunResult:
    transport: str
    loop: str
    in_flight: int
    latency_ms: float
    requests: int
    errors: int
    seconds: float
    msg_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_msg: float = 0.0
    timed_out: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=5_000, help="sends per run (default 5000)")
    parser.add_argument(
        "--concurrency", type=int_list, default=[150], help="requests in flight; a comma list runs each (default 150)"
    )
    parser.add_argument("--latency-ms", type=float, default=100.0, help="fake Graph answer delay (default 100)")
    parser.add_argument(
        "--transport",
        action="append",
        choices=[*TRANSPORTS, "all"],
        help=f"transport to measure; repeat, or 'all' (default: all; production uses {FAST_TRANSPORT!r})",
    )
    parser.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio", help="client event loop (default asyncio)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="per run: stop starting sends after this long and report what completed (marked *) (default 60)",
    )


def run(settings: Settings, args: argparse.Namespace) -> None:

    if not 1 <= args.requests <= MAX_REQUESTS:
        raise UsageError(f"--requests must be 1-{MAX_REQUESTS}, got {args.requests}")
    if any(not 1 <= c <= MAX_CONCURRENCY for c in args.concurrency):
        raise UsageError(f"--concurrency must be 1-{MAX_CONCURRENCY}")
    if not 0 <= args.latency_ms <= 10_000:
        raise UsageError(f"--latency-ms must be 0-10000, got {args.latency_ms}")
    if not 0 < args.max_seconds <= 3_600:
        raise UsageError(f"--max-seconds must be 0-3600, got {args.max_seconds}")
    chosen = args.transport or ["all"]
    transports = list(TRANSPORTS) if "all" in chosen else list(dict.fromkeys(chosen))

    results: list[RunResult] = []
    with FakeGraphProcess(latency_ms=args.latency_ms) as server:
        for concurrency in args.concurrency:
            for name in transports:
                result = run_one(
                    server.url,
                    transport=name,
                    requests=args.requests,
                    concurrency=concurrency,
                    latency_ms=args.latency_ms,
                    loop=args.loop,
                    max_seconds=args.max_seconds,
                )
                results.append(result)
                if not args.json:
                    # Stream rows so a long comparison shows progress.
                    if len(results) == 1:
                        print(_header())
                    print(_row(result), flush=True)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))


def run_one(
    api_url: str,
    *,
    transport: str,
    requests: int,
    concurrency: int,
    latency_ms: float,
    loop: str = "asyncio",
    max_seconds: float = 60.0,
) -> RunResult:
    """One measured run in a fresh event loop (so transports do not share pools or loop state).

    A run that reaches ``max_seconds`` stops starting sends, lets the ones in flight finish, and reports
    what it completed (``timed_out``), so a collapsing transport shows up as a slow row, not a crash.
    """
    main = _measure(api_url, transport, requests, concurrency, latency_ms, loop, max_seconds)
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


async def _measure(
    api_url: str, transport: str, requests: int, concurrency: int, latency_ms: float, loop: str, max_seconds: float
) -> RunResult:
    settings = Settings(whatsapp_api_url=api_url, graph_timeout=30.0)
    limits = http_limits(concurrency)
    http = make_http_client(settings, transport=TRANSPORTS[transport](limits), max_in_flight=concurrency)
    async with http:
        graph = GraphClient(
            http,
            api_url=api_url,
            phone_number_id=PHONE_NUMBER_ID,
            access_token="bench-token",  # noqa: S106 - the fake server ignores it
            template=None,
        )
        # Warm-up: open the connections and pay first-call costs outside the measured window.
        warm_up = _Lanes(min(requests, concurrency), deadline=time.perf_counter() + max_seconds)
        await warm_up.fire(graph, concurrency)
        started = time.perf_counter()
        cpu_started = time.process_time()
        lanes = _Lanes(requests, deadline=started + max_seconds)
        await lanes.fire(graph, concurrency)
        seconds = time.perf_counter() - started
        # Client CPU per send: unlike msg/s, barely disturbed by other load on the machine.
        cpu = time.process_time() - cpu_started
    latencies = sorted(lanes.latencies)
    return RunResult(
        transport=transport,
        loop=loop,
        in_flight=concurrency,
        latency_ms=latency_ms,
        requests=lanes.started,
        errors=lanes.errors,
        seconds=round(seconds, 3),
        msg_per_s=round(len(latencies) / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(percentile(latencies, 0.50) * 1000, 1),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 1),
        cpu_us_per_msg=round(cpu / lanes.started * 1e6, 1) if lanes.started else 0.0,
        timed_out=lanes.started < requests,
    )


class _Lanes:
    """Exactly ``concurrency`` coroutines pulling sends from a shared counter until done or past the deadline."""

    def __init__(self, requests: int, *, deadline: float) -> None:
        self.remaining = requests
        self.deadline = deadline
        self.started = 0
        self.errors = 0
        self.latencies: list[float] = []

    async def fire(self, graph: GraphClient, concurrency: int) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, self.remaining)):
                group.create_task(self._lane(graph))

    async def _lane(self, graph: GraphClient) -> None:
        while self.remaining > 0 and time.perf_counter() < self.deadline:
            self.remaining -= 1
            self.started += 1
            n = self.remaining
            t0 = time.perf_counter()
            try:
                await graph.send_text(to=f"+2782{n:07d}", text="bench", callback_data=str(n))
            except GraphError:
                self.errors += 1
                continue
            self.latencies.append(time.perf_counter() - t0)


_COLUMNS = (
    "transport",
    "loop",
    "in-flight",
    "latency ms",
    "requests",
    "errors",
    "msg/s",
    "p50 ms",
    "p99 ms",
    "client cpu µs",
)


def _header() -> str:
    return "  ".join(f"{c:>13}" for c in _COLUMNS)


def _row(r: RunResult) -> str:
    requests = f"{r.requests}*" if r.timed_out else r.requests
    values = (
        r.transport,
        r.loop,
        r.in_flight,
        r.latency_ms,
        requests,
        r.errors,
        r.msg_per_s,
        r.p50_ms,
        r.p99_ms,
        r.cpu_us_per_msg,
    )
    return "  ".join(f"{v!s:>13}" for v in values)


# --- the fake Graph server process ---------------------------------------------------------------------


class FakeGraphProcess:
    """A child process serving a Graph-like ``/messages`` endpoint on 127.0.0.1 (an ephemeral port)."""

    def __init__(self, *, latency_ms: float, startup_timeout: float = 15.0) -> None:
        self._latency = latency_ms / 1000.0
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> FakeGraphProcess:
        # A fresh interpreter (not fork, not multiprocessing-spawn): no inherited loop, threads or __main__.
        code = f"from bot.bench.client import _serve; _serve({self._latency!r})"
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no user input
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], self._startup_timeout)
        line = self._process.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            self.__exit__(None, None, None)
            raise RuntimeError("the fake Graph server did not start")
        self.url = f"http://127.0.0.1:{int(line)}/v23.0"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None


def _serve(latency: float) -> None:
    """Child-process entry point: answer like the Cloud API after ``latency`` seconds, until terminated."""
    import uvloop
    from aiohttp import web

    counter = 0

    async def messages(request: web.Request) -> web.Response:
        nonlocal counter
        body = await request.json()
        counter += 1
        if latency > 0:
            await asyncio.sleep(latency)
        payload = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body.get("to", ""), "wa_id": str(body.get("to", "")).lstrip("+")}],
            "messages": [{"id": f"wamid.bench{counter:012d}"}],
        }
        return web.json_response(payload)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/{version}/{phone_number_id}/messages", messages)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        print(sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())
