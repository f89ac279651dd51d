"""The embedded PostgreSQL path a new user takes: no DATABASE_URL, everything under JEM_DATA_DIR.

Independent of TEST_DATABASE_URL on purpose (CI runs it with that unset): every process here starts or joins
the embedded server on its own data directory, and the last one to leave stops it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

WHATSAPP_ENV = {
    "WHATSAPP_ACCESS_TOKEN": "embedded-graph-token",
    "WHATSAPP_PHONE_NUMBER_ID": "100000000000001",
    "WHATSAPP_APP_SECRET": "embedded-app-secret",
    "WHATSAPP_VERIFY_TOKEN": "embedded-verify-token",
}


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # A short path: PostgreSQL's unix socket path must stay under ~100 bytes.
    with tempfile.TemporaryDirectory(prefix="jem-emb-") as tmp:
        yield Path(tmp)
        # A failed test must not leave its server behind (the tests assert it stopped by itself).
        pid = postmaster_pid(Path(tmp))
        if pid is not None and psutil.pid_exists(pid):
            psutil.Process(pid).terminate()
            wait_until_gone(pid)


def embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "JEM_", "DATABASE_URL", "TEST_"))}
    env["JEM_DATA_DIR"] = str(data_dir)
    env.update(WHATSAPP_ENV)
    return env


def jem(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def wait_until_gone(pid: int, deadline_s: float = 10) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_processes_share_one_embedded_server_and_the_last_one_stops_it(data_dir: Path) -> None:
    env = embedded_env(data_dir)
    migrated = jem(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    # `migrate` was alone: its server stopped when it exited.
    first_pid = postmaster_pid(data_dir)
    if first_pid is not None:
        assert wait_until_gone(first_pid), "the embedded PostgreSQL outlived `jem-bot migrate`"

    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--no-dispatcher", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        health: httpx.Response | None = None
        while health is None and time.monotonic() < deadline:
            assert serve.poll() is None, serve.communicate()[1]
            try:
                health = httpx.get(f"{base}/health", timeout=2)
            except httpx.TransportError:
                time.sleep(0.1)
        assert health is not None, "serve did not answer in time"
        assert health.status_code == 200
        assert health.json()["database"] == "ok"
        server_pid = postmaster_pid(data_dir)
        assert server_pid is not None

        # While serve runs, other processes join the same server (same postmaster) and the same data.
        created = jem(env, "employer", "create", "embedded-co", "--name", "Embedded Co")
        assert created.returncode == 0, created.stderr
        token_run = jem(env, "token", "create", "--employer", "embedded-co")
        assert token_run.returncode == 0, token_run.stderr
        token = token_run.stdout.strip()
        assert postmaster_pid(data_dir) == server_pid
        # Their exit did not stop the server serve still uses.
        assert psutil.pid_exists(server_pid)

        me = httpx.get(f"{base}/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.status_code == 200
        assert me.json()["employer"]["id"] == int(created.stdout)
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            status = serve.wait(timeout=15)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.communicate()
            raise
    _, stderr = serve.communicate()
    assert status == 0, stderr
    assert wait_until_gone(server_pid), "the embedded PostgreSQL is still running after every process exited"


def test_a_killed_user_does_not_keep_the_server_running(data_dir: Path) -> None:
    """A process SIGKILLed while using the server never unregisters; the next one to exit still stops it."""
    env = embedded_env(data_dir)
    hold = (
        "import sys, time; from pathlib import Path; from bot.db.embedded import start_embedded; "
        "start_embedded(Path(sys.argv[1])); print('up', flush=True); time.sleep(60)"
    )
    victim = subprocess.Popen(
        [sys.executable, "-c", hold, str(data_dir)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert victim.stdout is not None
        assert victim.stdout.readline().strip() == "up", victim.stderr.read() if victim.stderr else ""
    finally:
        victim.kill()
        victim.communicate()
    server_pid = postmaster_pid(data_dir)
    assert server_pid is not None
    assert psutil.pid_exists(server_pid)  # the killed process could not stop it

    use = (
        "import sys; from pathlib import Path; from bot.db.embedded import start_embedded; "
        "start_embedded(Path(sys.argv[1]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", use, str(data_dir)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert wait_until_gone(server_pid), "the embedded PostgreSQL kept running for a process that no longer exists"
