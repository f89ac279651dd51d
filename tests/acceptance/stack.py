"""The stack the end-to-end tests run against: `jem-bot serve` (with its dispatcher) and `jem-bot simulator`.

Each test names only what makes it different (the simulator's flags, extra environment, its access token); how
the processes are started, found healthy and stopped is the same for all, and so is how an employee's message is
posted through the simulator.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.conftest import APP_SECRET, PHONE_NUMBER_ID, VERIFY_TOKEN
from tests.integration.test_cli import free_port

T = TypeVar("T")

# Enough of the processes' shared log to see why a start failed, without burying pytest's own report.
LOG_TAIL = 8000


async def poll(what: str, check: Callable[[], Awaitable[T]], within: float = 30.0) -> T:
    """Wait until ``check()`` answers something true and return it; fail naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return result


def start(env: dict[str, str], logs: Path, *commands: list[str]) -> list[subprocess.Popen[bytes]]:
    """Start one `python -m bot` process per command, all writing to the one log file."""
    with logs.open("wb") as sink:
        return [
            subprocess.Popen([sys.executable, "-m", "bot", *args], env=env, stdout=sink, stderr=subprocess.STDOUT)
            for args in commands
        ]


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    # Terminate all first, then wait: the processes shut down side by side rather than one after the other.
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@asynccontextmanager
async def serve_and_simulator(
    tmp_path: Path,
    database_url: str,
    *,
    access_token: str,
    simulator_flags: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[str, str]]:
    """Run `serve` and a simulator that calls its webhook; yield their base URLs (API, simulator) once both answer.

    ``simulator_flags`` are the simulator's options other than its port and webhook; ``env`` adds to (or overrides)
    the environment both processes share. The caller's own environment is passed on without its WHATSAPP_, JEM_
    and DATABASE_URL settings, so a developer's configuration cannot leak into the test.
    """
    api_port, sim_port = free_port(), free_port()
    api, sim = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "JEM_", "DATABASE_URL"))}
    environment |= {
        "DATABASE_URL": database_url,
        "JEM_DATA_DIR": str(tmp_path / "jem"),
        "WHATSAPP_API_URL": f"{sim}/v23.0",
        "WHATSAPP_ACCESS_TOKEN": access_token,
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
        "JEM_WORKERS": "1",
        **(env or {}),
    }
    logs = tmp_path / "logs.txt"
    sim_args = ["--port", str(sim_port), "--webhook", f"{api}/webhooks/whatsapp", *simulator_flags]
    procs = start(environment, logs, ["simulator", *sim_args], ["serve", "--port", str(api_port)])
    try:
        async with httpx.AsyncClient(timeout=5) as http:

            async def up() -> bool:
                try:
                    codes = [(await http.get(u)).status_code for u in (f"{api}/health", f"{sim}/_simulator/stats")]
                except httpx.HTTPError:
                    return False
                return codes == [200, 200]

            await poll("serve and the simulator", up)
        yield api, sim
    except BaseException:
        print(logs.read_text(errors="replace")[-LOG_TAIL:])
        raise
    finally:
        stop(procs)


async def write_inbound(http: httpx.AsyncClient, sim: str, phone: str, text: str | None = None, **extra: Any) -> None:
    """An employee writes (through the simulator, which signs it and posts it to our webhook, as Meta would).

    Returns once our webhook has answered the simulator; ``extra`` carries the simulator's other inbound fields
    (``username``, ``context_wamid``, ``to_number``, ...).
    """
    body = {"phone": phone, **({"text": text} if text is not None else {}), **extra}
    posted = await http.post(f"{sim}/_simulator/inbound", json=body)
    assert posted.status_code == 200, posted.text
