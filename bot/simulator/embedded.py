"""`serve --simulator`: run the simulator in-process, on the port next to the API, calling our own webhook."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import uvicorn
from litestar import Litestar

from bot.runtime import bind_probe
from bot.settings import Settings
from bot.simulator.app import KEEP_ALIVE_SECONDS
from bot.simulator.numbers import SimulatedNumber
from bot.simulator.outage import OutageServer
from bot.simulator.phone import PHONE_NUMBER_ID, SimulatorConfig

DUMMY_SECRET = "simulator-app-secret"  # noqa: S105 - a placeholder for the local simulator, not a credential

log = logging.getLogger("jem.simulator")


class _NotFromTask(logging.Filter):
    """Drops what one asyncio task logs below WARNING.

    The simulator's uvicorn server runs in the same process as the API's and logs its start and stop on the same
    `uvicorn.error` logger: "Started server process [pid]", "Waiting for application startup." and the rest would
    each appear twice, the simulator's copy telling nothing new. Its warnings and errors still show.
    """

    def __init__(self, task: asyncio.Task[None]) -> None:
        super().__init__()
        self._task = task

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        try:
            return asyncio.current_task() is not self._task
        except RuntimeError:  # logged from a thread without an event loop: not the simulator
            return True


def simulator_url(settings: Settings) -> str:
    """Where the simulator of simulator_settings listens, e.g. http://127.0.0.1:8001."""
    return settings.whatsapp_api_url.rsplit("/", 1)[0]


class _QuietServer(OutageServer):
    """The outer server owns SIGINT/SIGTERM; this one must not replace (then restore) its handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def simulator_port(settings: Settings) -> int:
    """The port after the API's if it is free, else any free one (decided once, in simulator_settings)."""
    for port in (settings.port + 1, 0):
        try:
            return bind_probe(settings.host, port)
        except OSError:
            continue
    raise OSError("no free port for the simulator")


SIMULATED_WABA_ID = "200000000000001"


def simulator_settings(settings: Settings) -> Settings:
    """Point Graph at the simulator and fill in dummy credentials where none are set."""
    port = simulator_port(settings)
    return settings.replace(
        whatsapp_api_url=f"http://{settings.host}:{port}/v23.0",
        whatsapp_access_token=settings.whatsapp_access_token or "simulator-access-token",
        whatsapp_phone_number_id=settings.whatsapp_phone_number_id or PHONE_NUMBER_ID,
        whatsapp_app_secrets=settings.whatsapp_app_secrets or (DUMMY_SECRET,),
        whatsapp_verify_token=settings.whatsapp_verify_token or "simulator-verify-token",
        # The simulator serves the same template catalogue for any account id.
        whatsapp_waba_id=settings.whatsapp_waba_id or SIMULATED_WABA_ID,
    )


def simulator_lifespan(
    settings: Settings, config: SimulatorConfig | None = None, numbers: tuple[SimulatedNumber, ...] = ()
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A second uvicorn server in the same event loop; its callbacks go to this serve's webhook.

    `numbers`: the business numbers it plays besides the default one, each with its own token (and rate),
    when no `config` is given (a given `config` brings its own `numbers`).
    """
    from bot.simulator.app import create_simulator_app

    host, _, rest = settings.whatsapp_api_url.removeprefix("http://").partition(":")
    port = int(rest.split("/", 1)[0])
    webhook = f"http://{settings.host}:{settings.port}/webhooks/whatsapp"
    config = config or SimulatorConfig(
        webhook=webhook, app_secret=settings.whatsapp_app_secrets[0], seed=None, numbers=numbers
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        simulator = create_simulator_app(config)
        server = _QuietServer(
            uvicorn.Config(
                simulator,
                host=host,
                port=port,
                # No log_config/log_level: uvicorn.Config would reconfigure the process-wide uvicorn loggers
                # and silence the outer server's own start-up lines.
                log_config=None,
                access_log=False,
                lifespan="on",
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
            ),
            simulator.state.outage,
        )
        task = asyncio.create_task(server.serve())
        quiet = _NotFromTask(task)
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addFilter(quiet)  # before the task first runs: nothing of its start-up slips through
        try:
            while not server.started:
                if task.done():
                    task.result()  # start-up failed: raise its error
                    raise RuntimeError("the simulator stopped during start-up")
                await asyncio.sleep(0.02)
            app.state.simulator_url = f"http://{host}:{port}"
            log.info("WhatsApp simulator on http://%s:%d", host, port)
            try:
                yield
            finally:
                server.should_exit = True
                done, _ = await asyncio.wait({task}, timeout=5)
                if not done:
                    # A held "timeout" answer must not keep the whole serve from stopping.
                    server.force_exit = True
                    await asyncio.wait({task}, timeout=5)
                log.info("WhatsApp simulator stopped")
        finally:
            uvicorn_log.removeFilter(quiet)

    return lifespan
