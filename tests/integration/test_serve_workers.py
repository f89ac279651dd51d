"""`jem-bot serve --workers N`: several server processes on one port, the dispatcher once per serve."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.integration.test_cli import WHATSAPP_ENV, cli_env, free_port, stop, wait_for_health


def server_processes(parent: subprocess.Popen[str]) -> list[psutil.Process]:
    """The spawned server processes (not multiprocessing's resource tracker)."""
    children = psutil.Process(parent.pid).children(recursive=True)
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


def wait_until(check: object, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_two_server_processes_share_the_port_and_run_one_dispatcher(
    database_url: str, db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    port = free_port()
    env = cli_env(database_url, tmp_path, **WHATSAPP_ENV, JEM_PORT=str(port), JEM_DISPATCHER_HEARTBEAT="0.2",
                  JEM_DISPATCHER_STALE_AFTER="1")  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--workers", "2"], env=env, stdout=sink, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, proc)
        wait_until(lambda: len(server_processes(proc)) == 2, "two server processes")
        wait_until(lambda: httpx.get(f"{base}/health", timeout=5).json()["dispatchers_alive"] == 1, "the dispatcher")
        answered_by: set[str | None] = set()
        alive: set[int] = set()
        for _ in range(40):  # each request on a new connection, so both processes get some
            health = httpx.get(f"{base}/health", timeout=5).json()
            answered_by.add(health["dispatcher"] and "with the dispatcher")
            alive.add(health["dispatchers_alive"])
        assert answered_by == {"with the dispatcher", None}  # both processes answer; one runs the dispatcher
        assert alive == {1}  # once per serve, not once per process
        # Metrics are the sum over the processes, whichever answers: 40 unsigned webhook POSTs (401), each on a new
        # connection so both processes take some, are 40 in every answer.
        for _ in range(40):
            assert httpx.post(f"{base}/webhooks/whatsapp", content=b"{}", timeout=5).status_code == 401
        counted = {
            re.search(r'^jem_webhook_requests_total\{status="401"\} (\S+)$', httpx.get(f"{base}/metrics").text, re.M)
            for _ in range(10)
        }
        assert {float(m.group(1)) if m else None for m in counted} == {40.0}
        # A server process that dies is started again, in its role.
        victim = server_processes(proc)[1]
        victim.kill()
        wait_until(lambda: victim.pid not in {p.pid for p in server_processes(proc)}, "the dead process to go")
        wait_until(lambda: len(server_processes(proc)) == 2, "a replacement server process")
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
        children = server_processes(proc)
    finally:
        status = stop(proc, signal.SIGTERM, timeout=30)
    assert status == 0, log.read_text()
    assert not [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
