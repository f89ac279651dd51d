"""Run the service under uvicorn: API + webhook, plus the dispatcher and the simulator when asked.

With `workers` > 1 (`serve --workers N`, `JEM_WORKERS`; one per core by default) this process binds the port
once and supervises N server processes that all accept on it: the API and the webhook scale across cores. The
parts that must run once per `serve` (the dispatcher, housekeeping, the embedded simulator) run in the first of
them only; a server process that dies is started again, in the same role. The embedded PostgreSQL, when there
is one, belongs to this process and outlives the server processes.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

import uvicorn
from prometheus_client.multiprocess import mark_process_dead

from bot.logs import configure_logging, uvicorn_log_config
from bot.metrics import MULTIPROC_ENV
from bot.settings import Settings
from bot.state import Lifespan

log = logging.getLogger("jem.server")

# A server process that dies this soon after it started is not restarted in a loop: something is wrong with it.
RESTART_WINDOW_SECONDS = 5.0
MAX_QUICK_RESTARTS = 3
# How long the server processes get to finish their requests (and the dispatcher its sends) on a stop.
GRACEFUL_SECONDS = 15


def build_lifespans(settings: Settings, *, dispatcher: bool) -> list[Lifespan]:
    """Background parts of `serve`; imported lazily so `serve --no-dispatcher` needs none of them."""
    from bot.maintenance import maintenance_lifespan

    lifespans: list[Lifespan] = [maintenance_lifespan(settings)]
    if dispatcher:
        from bot.dispatch.lifespan import dispatcher_lifespan

        lifespans.append(dispatcher_lifespan(settings))
    return lifespans


def serve(settings: Settings, *, database_url: str, dispatcher: bool, simulator: bool, workers: int = 1) -> None:
    """With `simulator`, `settings` come from `bot.simulator.embedded.simulator_settings`: the simulator plays
    WhatsApp for this server (the Graph URL and credentials point at it; it posts its callbacks to our own
    webhook). The caller decides its port once, so that every server process agrees on it and the caller can say
    where it is."""
    configure_logging()
    if workers <= 1:
        run_server(settings, database_url, background=True, dispatcher=dispatcher, simulator=simulator)
        return
    Supervisor(settings, database_url, workers=workers, dispatcher=dispatcher, simulator=simulator).run()


def run_server(
    settings: Settings,
    database_url: str,
    *,
    background: bool,
    dispatcher: bool,
    simulator: bool,
    sock: socket.socket | None = None,
) -> None:
    """One uvicorn server in this process; with ``background``, also the parts that run once per `serve`."""
    from bot.app import create_app

    lifespans: list[Lifespan] = []
    if background:
        if simulator:
            from bot.simulator.embedded import simulator_lifespan

            lifespans.append(simulator_lifespan(settings))
        lifespans += build_lifespans(settings, dispatcher=dispatcher)
    app = create_app(settings, database_url=database_url, extra_lifespans=lifespans)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=uvicorn_log_config(),
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        lifespan="on",
    )
    # Modules and the app live as long as the process, yet every full garbage collection would walk them again:
    # out of its sight from here on (a few % of a busy process's CPU).
    gc.freeze()
    uvicorn.Server(config).run(sockets=None if sock is None else [sock])


def _server_process(
    settings: Settings, database_url: str, background: bool, dispatcher: bool, simulator: bool, sock: socket.socket
) -> None:
    """Entry point of a server process (spawned: it starts from a clean interpreter)."""
    from bot.runtime import stop_signals_exit_zero

    configure_logging()
    with stop_signals_exit_zero():
        run_server(settings, database_url, background=background, dispatcher=dispatcher, simulator=simulator, sock=sock)


class Supervisor:
    """Binds the port, starts the server processes, restarts one that dies, and stops them all on a signal."""

    def __init__(
        self, settings: Settings, database_url: str, *, workers: int, dispatcher: bool, simulator: bool
    ) -> None:
        self._settings = settings
        self._url = database_url
        self._workers = workers
        self._dispatcher = dispatcher
        self._simulator = simulator
        # spawn, not fork: a forked child would inherit this process's threads, locks and event-loop state.
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[BaseProcess | None] = [None] * workers
        self._started: list[float] = [0.0] * workers
        self._quick_restarts = 0
        self._stopping = False

    def run(self) -> None:
        config = uvicorn.Config("bot.app:create_app", host=self._settings.host, port=self._settings.port)
        sock = config.bind_socket()
        # One directory for every process's metric values: /metrics from any of them answers the sum (bot/metrics.py).
        # Set before the processes are spawned, which is when prometheus_client reads it.
        metrics_dir = tempfile.mkdtemp(prefix="jem-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        log.info("serving on %s:%d with %d server processes", self._settings.host, self._settings.port, self._workers)
        try:
            for index in range(self._workers):
                self._start(index, sock)
            while not self._stopping:
                self._watch(sock)
        finally:
            self._stop_all()
            sock.close()
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        # Ctrl+C reaches every process of the terminal's group; SIGTERM (systemd, kill) may reach only this one.
        self._stopping = True
        self._signal_all(signal.SIGTERM)

    def _start(self, index: int, sock: socket.socket) -> None:
        process = self._context.Process(
            target=_server_process,
            args=(self._settings, self._url, index == 0, self._dispatcher, self._simulator, sock),
            name=f"jem-bot-server-{index}",
        )
        process.start()
        self._processes[index] = process
        self._started[index] = time.monotonic()

    def _watch(self, sock: socket.socket) -> None:
        alive = [p for p in self._processes if p is not None]
        wait([p.sentinel for p in alive], timeout=0.5)
        for index, process in enumerate(self._processes):
            if process is None or process.is_alive() or self._stopping:
                continue
            quick = time.monotonic() - self._started[index] < RESTART_WINDOW_SECONDS
            self._quick_restarts = self._quick_restarts + 1 if quick else 0
            if self._quick_restarts > MAX_QUICK_RESTARTS:
                log.error("server process %d keeps exiting at start-up (status %s); stopping", index,
                          process.exitcode)  # fmt: skip
                self._stopping = True
                return
            if process.pid is not None:
                # Its counters stay in the sum (they counted real events); its live gauges go.
                mark_process_dead(process.pid, os.environ[MULTIPROC_ENV])  # type: ignore[no-untyped-call]
            role = " (with the dispatcher)" if index == 0 else ""
            log.warning("server process %d%s exited with status %s; starting it again", index, role, process.exitcode)
            self._start(index, sock)

    def _signal_all(self, signum: int) -> None:
        for process in self._processes:
            if process is not None and process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def _stop_all(self) -> None:
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + GRACEFUL_SECONDS + 5
        for process in self._processes:
            if process is not None:
                process.join(timeout=max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join()
