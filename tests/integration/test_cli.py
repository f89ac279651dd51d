"""The `jem-bot` command line, run as real subprocesses against a database of their own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from bot.auth import hash_token
from bot.db.migrate import upgrade
from tests.conftest import APP_SECRET, PHONE_NUMBER_ID, VERIFY_TOKEN
from tests.db import fresh_database

GRAPH_TOKEN = "graph-secret-value-1234"
WHATSAPP_ENV = {
    "WHATSAPP_ACCESS_TOKEN": GRAPH_TOKEN,
    "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
    "WHATSAPP_APP_SECRET": APP_SECRET,
    "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
}


def cli_env(database_url: str | None, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "JEM_", "DATABASE_URL"))}
    env["JEM_DATA_DIR"] = str(tmp / "jem-data")
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def jem(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def jem_in_process(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> subprocess.CompletedProcess[str]:
    """`jem-bot` through the same `main()` in this process: the many error cases cost no interpreter start-up.

    A few cases of each kind also run as real subprocesses (above), which proves the exit statuses survive.
    """
    from bot.cli import main

    for name in list(os.environ):
        if name not in env:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    try:
        main(list(args))
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), status, out, err)


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("jem-bot: error: ")
    assert result.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def migrated_url(admin_url: str) -> Iterator[str]:
    with fresh_database(admin_url, prefix="jem_cli") as url:
        upgrade(url)
        yield url


@pytest.fixture
def empty_url(admin_url: str) -> Iterator[str]:
    with fresh_database(admin_url, prefix="jem_cli_empty") as url:
        yield url


async def token_hashes(url: str) -> list[bytes]:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        return [bytes(r["token_hash"]) for r in await conn.fetch("SELECT token_hash FROM api_token")]
    finally:
        await conn.close()


def test_migrate_twice_succeeds(empty_url: str, tmp_path: Path) -> None:
    env = cli_env(empty_url, tmp_path)
    first = jem(env, "migrate")
    assert first.returncode == 0, first.stderr
    second = jem(env, "migrate")
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout


def test_employer_create_prints_an_id_and_refuses_duplicates(migrated_url: str, tmp_path: Path) -> None:
    env = cli_env(migrated_url, tmp_path)
    created = jem(env, "employer", "create", "acme-1", "--name", "Acme", "--timezone", "Africa/Johannesburg")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().isdigit()
    assert created.stdout.count("\n") == 1
    again = jem(env, "employer", "create", "acme-1", "--name", "Acme again")
    line = assert_one_line_error(again, 1)
    assert "acme-1" in line
    assert "already exists" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("employer", "create", "Bad Slug", "--name", "X"), "slug"),
        (("employer", "create", "-x", "--name", "X"), "error"),
        (("employer", "create", "ok-slug", "--name", "X", "--timezone", "Mars/Olympus"), "timezone"),
        (("employer", "create", "ok-slug", "--name", "  "), "--name"),
        (("employer", "create", "ok-slug"), "--name"),
        (("token", "create", "--employer", "nobody-here"), "nobody-here"),
        (("token", "create"), "--employer"),
        (("serve", "--port", "0"), "--port"),
        (("no-such-command",), "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    migrated_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    needle: str,
) -> None:
    env = cli_env(migrated_url, tmp_path, **WHATSAPP_ENV)
    result = jem_in_process(env, capsys, monkeypatch, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert result.stdout == ""


def test_usage_errors_exit_2_from_a_real_process(migrated_url: str, tmp_path: Path) -> None:
    env = cli_env(migrated_url, tmp_path)
    line = assert_one_line_error(jem(env, "employer", "create", "Bad Slug", "--name", "X"), 2)
    assert "slug" in line


def test_token_create_prints_only_the_token_and_stores_its_hash(migrated_url: str, tmp_path: Path) -> None:
    import asyncio

    env = cli_env(migrated_url, tmp_path)
    assert jem(env, "employer", "create", "tok-co", "--name", "Tok Co").returncode == 0
    result = jem(env, "token", "create", "--employer", "tok-co")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    assert result.stdout.count("\n") == 1
    token = result.stdout.strip()
    assert token.startswith("jem_")
    assert token not in result.stderr
    assert hash_token(token) in asyncio.run(token_hashes(migrated_url))


UNREACHABLE = "postgresql://jem:hunter2secret@127.0.0.1:1/jem"


@pytest.mark.parametrize(
    "command",
    [("migrate",), ("employer", "create", "x", "--name", "X"), ("token", "create", "--employer", "x"), ("serve",)],
)
def test_unreachable_database_exits_2_without_echoing_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    env = cli_env(UNREACHABLE, tmp_path, **WHATSAPP_ENV)
    result = jem_in_process(env, capsys, monkeypatch, *command)
    line = assert_one_line_error(result, 2)
    assert "database" in line.lower() or "connect" in line.lower()
    assert "hunter2secret" not in result.stderr
    assert GRAPH_TOKEN not in result.stderr


def test_unreachable_database_from_a_real_process(tmp_path: Path) -> None:
    result = jem(cli_env(UNREACHABLE, tmp_path, **WHATSAPP_ENV), "serve", "--no-dispatcher")
    assert_one_line_error(result, 2)
    assert "hunter2secret" not in result.stderr


def test_serve_without_whatsapp_settings_names_them_and_no_secret(migrated_url: str, tmp_path: Path) -> None:
    env = cli_env(migrated_url, tmp_path, WHATSAPP_ACCESS_TOKEN=GRAPH_TOKEN, WHATSAPP_APP_SECRET=APP_SECRET)
    line = assert_one_line_error(jem(env, "serve", "--no-dispatcher"), 2)
    assert "WHATSAPP_PHONE_NUMBER_ID" in line
    assert "WHATSAPP_VERIFY_TOKEN" in line
    assert "WHATSAPP_ACCESS_TOKEN" not in line
    assert GRAPH_TOKEN not in line
    assert APP_SECRET not in line


def test_serve_on_a_port_in_use_says_so_in_one_line(
    migrated_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = cli_env(migrated_url, tmp_path, **WHATSAPP_ENV)
        line = assert_one_line_error(jem_in_process(env, capsys, monkeypatch, "serve", "--port", str(port)), 2)
    assert f"127.0.0.1:{port}" in line
    assert "--port" in line
    line = assert_one_line_error(
        jem_in_process(env, capsys, monkeypatch, "serve", "--host", "no-such-host.invalid", "--port", "8000"), 2
    )
    assert "no-such-host.invalid" in line


def test_serve_on_a_schema_that_is_behind_says_migrate(
    empty_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cli_env(empty_url, tmp_path, **WHATSAPP_ENV)
    line = assert_one_line_error(jem(env, "serve", "--no-dispatcher", "--port", str(free_port())), 2)
    assert "jem-bot migrate" in line
    # The other commands that need the schema say the same.
    for args in (("employer", "create", "early", "--name", "Early"), ("token", "create", "--employer", "early")):
        line = assert_one_line_error(jem_in_process(env, capsys, monkeypatch, *args), 2)
        assert "jem-bot migrate" in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JEM_PORT", "eighty"),
        ("JEM_PORT", "70000"),
        ("JEM_SEND_RATE", "fast"),
        ("JEM_GRAPH_TIMEOUT", "0"),
        ("JEM_DISPATCHER_STALE_AFTER", "never"),
        ("WHATSAPP_TEMPLATE", "no-language"),
        ("DATABASE_URL", "mysql://u:p@h/db"),
        ("WHATSAPP_API_URL", "graph.facebook.com"),
    ],
)
def test_config_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env = cli_env(None, tmp_path, **{variable: value})
    line = assert_one_line_error(jem_in_process(env, capsys, monkeypatch, "migrate"), 2)
    assert variable in line


def test_config_error_from_a_real_process(tmp_path: Path) -> None:
    line = assert_one_line_error(jem(cli_env(None, tmp_path, JEM_PORT="eighty"), "serve"), 2)
    assert "JEM_PORT" in line


def test_help_lists_every_contract_environment_variable(tmp_path: Path) -> None:
    result = jem(cli_env(None, tmp_path), "--help")
    assert result.returncode == 0
    for variable in (
        "DATABASE_URL",
        "JEM_DATA_DIR",
        "JEM_HOST",
        "JEM_PORT",
        "WHATSAPP_API_URL",
        "WHATSAPP_ACCESS_TOKEN",
        "WHATSAPP_PHONE_NUMBER_ID",
        "WHATSAPP_APP_SECRET",
        "WHATSAPP_VERIFY_TOKEN",
        "WHATSAPP_TEMPLATE",
        "JEM_SEND_RATE",
    ):
        assert variable in result.stdout, variable
    for command in ("migrate", "serve", "worker", "employer", "token", "simulator", "demo", "bench"):
        assert command in result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_health(base: str, proc: subprocess.Popen[str], deadline_s: float = 30) -> httpx.Response:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"serve exited early with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            return httpx.get(f"{base}/health", timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("serve did not answer /health in time")


STOP_TIMED_OUT = -999


def stop(proc: subprocess.Popen[str], stop_signal: signal.Signals, timeout: float = 10) -> int:
    """Send the signal and wait; a process that does not stop in time is killed and reported as STOP_TIMED_OUT."""
    proc.send_signal(stop_signal)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return STOP_TIMED_OUT


def test_serve_answers_health_and_stops_cleanly(migrated_url: str, tmp_path: Path) -> None:
    """Two `serve` processes side by side (one stopped by SIGTERM, one by Ctrl+C) on one database."""
    env = cli_env(migrated_url, tmp_path, **WHATSAPP_ENV)
    assert jem(env, "employer", "create", "serve-co", "--name", "Serve Co").returncode == 0
    token = jem(env, "token", "create", "--employer", "serve-co").stdout.strip()
    servers: dict[signal.Signals, tuple[subprocess.Popen[str], str]] = {}
    statuses: dict[signal.Signals, int] = {}
    try:
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", "--no-dispatcher", "--port", str(port)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            servers[stop_signal] = (proc, f"http://127.0.0.1:{port}")
        for proc, base in servers.values():
            health = wait_for_health(base, proc)
            assert health.status_code == 200
            assert health.json()["database"] == "ok"
            me = httpx.get(f"{base}/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
            assert me.status_code == 200
            assert me.json()["employer"]["slug"] == "serve-co"
            assert httpx.get(f"{base}/me", timeout=5).status_code == 401
    finally:
        for stop_signal, (proc, _) in servers.items():
            statuses[stop_signal] = stop(proc, stop_signal)
    for stop_signal, (proc, _) in servers.items():
        _, stderr = proc.communicate()
        assert statuses[stop_signal] == 0, (stop_signal, stderr)
        assert "jem-bot: error" not in stderr
        assert "Traceback" not in stderr
        for secret in (token, GRAPH_TOKEN, APP_SECRET, VERIFY_TOKEN):
            assert secret not in stderr


# --- a bad DATABASE_URL, and what migrate and Ctrl+C print (issue 18) -------------------------------------------


def _refused_url() -> str:
    return f"postgresql://jem:hunter2secret@127.0.0.1:{free_port()}/jem"


def _bad_urls(admin_url: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(DATABASE_URL, what the line must say, what it must not) for each way a URL can be wrong."""
    admin = make_url(admin_url)
    # The embedded server is reached over its Unix socket (`?host=/path`): the line names the socket directory.
    socket_dir = admin.query.get("host")
    where = f"the socket directory {socket_dir}" if socket_dir else f"{admin.host}:{admin.port or 5432}"
    server = admin.set(drivername="postgresql")
    return [
        (_refused_url(), "connection refused at 127.0.0.1:", ("Errno", "ConnectionRefusedError")),
        ("postgresql://jem:hunter2secret@no-such-host.invalid:5432/jem", "unknown host 'no-such-host.invalid'",
         ("gaierror", "Errno")),
        (server.set(username="no_such_role_jem").render_as_string(hide_password=False),
         f"authentication failed for user 'no_such_role_jem' at {where}", ("DBAPIError",)),
        (server.set(database="no_such_database_jem").render_as_string(hide_password=False),
         f"database 'no_such_database_jem' does not exist at {where}", ("DBAPIError",)),
        ("mysql://jem:hunter2secret@127.0.0.1/jem", "is not a PostgreSQL URL", ("Traceback",)),
    ]  # fmt: skip


def test_migrate_with_a_bad_database_url_says_what_is_wrong_in_one_line(admin_url: str, tmp_path: Path) -> None:
    for url, says, never in _bad_urls(admin_url):
        line = assert_one_line_error(jem(cli_env(url, tmp_path), "migrate"), 2)
        assert line.startswith("jem-bot: error: DATABASE_URL"), line
        assert says in line, (says, line)
        assert "DATABASE_URL" in line.split(":", 2)[2], line  # how to fix it names the setting again
        for word in (*never, "hunter2secret"):
            assert word not in line, (word, line)


@pytest.mark.parametrize(
    "command",
    [
        ("serve", "--no-dispatcher"),
        ("worker",),
        ("employer", "create", "x", "--name", "X"),
        ("token", "create", "--employer", "x"),
        ("sender", "set", "--employer", "x", "--phone-number-id", "100000000000009", "--waba-id", "200000000000009"),
        ("demo",),
    ],
)
def test_every_command_that_connects_says_the_same_about_a_bad_database_url(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    env = cli_env(_refused_url(), tmp_path, **WHATSAPP_ENV, JEM_PORT=str(free_port()))
    result = subprocess.run(
        [sys.executable, "-m", "bot", *command],
        env=env,
        input="EAAG-access-token-on-stdin\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if command == ("demo",):
        # The demo says what it starts before it connects.
        assert result.stdout == "starting the database (DATABASE_URL)\n", result.stdout
        result = subprocess.CompletedProcess(result.args, result.returncode, "", result.stderr)
    line = assert_one_line_error(result, 2)
    assert "DATABASE_URL: connection refused at 127.0.0.1:" in line, line
    assert "hunter2secret" not in line


def test_migrate_says_what_it_applied_then_that_the_schema_is_up_to_date(empty_url: str, tmp_path: Path) -> None:
    from bot.db.migrate import head_revision

    head = head_revision()
    env = cli_env(empty_url, tmp_path)
    first = jem(env, "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied 0001 … "), first.stdout
    assert first.stdout.endswith(f": now at {head} (head)\n"), first.stdout
    assert "up to date" not in first.stdout
    second = jem(env, "migrate")
    assert second.stdout == f"database schema is up to date: at {head} (head)\n"


def _log_lines(stderr: str) -> list[str]:
    """The log lines without their time (`05:09:30 INFO    uvicorn.error: …`), to compare them."""
    return [line.split(" ", 1)[1] if line[:2].isdigit() else line for line in stderr.splitlines() if line.strip()]


def test_ctrl_c_on_serve_with_the_simulator_prints_each_thing_once(migrated_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = cli_env(migrated_url, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--simulator", "--workers", "1", "--no-dispatcher", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for_health(f"http://127.0.0.1:{port}", proc).status_code == 200
    finally:
        status = stop(proc, signal.SIGINT)
    _, stderr = proc.communicate()
    assert status == 0, stderr
    lines = _log_lines(stderr)
    # Two uvicorn servers share the process and the `uvicorn.error` logger: the simulator's own start and stop
    # lines ("Started server process", "Waiting for application startup.", …) once appeared beside the API's.
    lifecycle = [line for line in lines if "uvicorn.error" in line or "jem.simulator" in line]
    assert len(lifecycle) == len(set(lifecycle)), "\n".join(lifecycle)
    assert sum("Started server process" in line for line in lines) == 1, stderr
    assert sum("Application shutdown complete." in line for line in lines) == 1, stderr
    assert sum("jem.simulator: WhatsApp simulator on http://127.0.0.1:" in line for line in lines) == 1, stderr
    assert sum("WhatsApp simulator stopped" in line for line in lines) == 1, stderr
    assert "Traceback" not in stderr
