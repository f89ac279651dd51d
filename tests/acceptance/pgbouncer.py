"""A PgBouncer in transaction-pooling mode in front of the test database, for tests/acceptance/test_pgbouncer.py.

Managed PostgreSQL usually puts one there. PgBouncer 1.18 (Debian bookworm's) supports no prepared statements in
transaction mode, and like a managed one it rejects startup parameters it does not know, so nothing is eased for
jem-bot here: `ignore_startup_parameters` lists only `extra_float_digits`, the usual managed default.

PgBouncer refuses to run as root: as root it is started with ``-u <user>``, in a temp dir that user owns: `nobody`,
or for the embedded server the owner of its socket directory (pgserver's `pgserver` user: the directory is its
data directory, mode 0700, which nobody else may enter).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

BINARY = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None)
SKIP_REASON = "pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it)"

UNPRIVILEGED_USER = "nobody"  # PgBouncer's user when the tests run as root and the server is on TCP
STARTUP_DEADLINE = 15.0
PORT_ATTEMPTS = 3


class AdminError(Exception):
    """PgBouncer's admin console answered an error, or closed the connection."""


@dataclass
class PgBouncer:
    port: int
    user: str  # the database user, also PgBouncer's admin user
    workdir: Path
    process: subprocess.Popen[bytes]

    def url(self, database_url: str) -> str:
        """``database_url``'s database, reached through PgBouncer over TCP (no `?host=` socket directory)."""
        return (
            make_url(database_url).set(host="127.0.0.1", port=self.port, query={}).render_as_string(hide_password=False)
        )

    def show(self, what: str) -> list[dict[str, str | None]]:
        """``SHOW <what>`` on the admin console (e.g. STATS, SERVERS), one dict per row."""
        return admin_query(self.port, self.user, f"SHOW {what}")

    def stats(self, database: str) -> dict[str, int]:
        """The integer columns of SHOW STATS for ``database`` (total_xact_count, total_query_count, ...); empty
        while PgBouncer has not served it."""
        for row in self.show("STATS"):
            if row["database"] == database:
                return {k: int(v) for k, v in row.items() if v is not None and v.isdigit()}
        return {}

    def log_tail(self, lines: int = 40) -> str:
        # Run in the foreground, PgBouncer logs to stderr too; stderr alone has what went wrong before the logfile.
        text = ""
        for name in ("pgbouncer.log", "stderr.log"):
            path = self.workdir / name
            if not text and path.exists():
                text = path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def config(database_url: str, port: int, workdir: Path) -> str:
    """pgbouncer.ini: one [databases] entry, the test database on its server (TCP, or the embedded server's socket
    directory: `host=` takes a directory path as libpq does)."""
    url = make_url(database_url)
    host = url.host or str(url.query.get("host") or "")
    if not host:
        raise ValueError(f"no host in the test database URL {url.render_as_string()}")
    target = f"host={host} port={url.port or 5432} dbname={url.database}"
    return f"""\
[databases]
{url.database} = {target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
pool_mode = transaction
auth_type = trust
auth_file = {workdir / "userlist.txt"}
admin_users = {url.username}
max_client_conn = 200
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
logfile = {workdir / "pgbouncer.log"}
pidfile = {workdir / "pgbouncer.pid"}
stats_period = 1
log_stats = 0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_pgbouncer(database_url: str) -> Iterator[PgBouncer]:
    """PgBouncer in front of ``database_url``'s server, accepting connections; stopped (and its dir removed) at exit."""
    assert BINARY is not None, SKIP_REASON
    user = make_url(database_url).username or "postgres"
    workdir = Path(tempfile.mkdtemp(prefix="jem-pgbouncer-"))
    run_as = _unprivileged_user(database_url) if os.geteuid() == 0 else None
    try:
        (workdir / "userlist.txt").write_text(f'"{user}" ""\n')
        if run_as:
            account = pwd.getpwnam(run_as)
            for path in (workdir, workdir / "userlist.txt"):
                os.chown(path, account.pw_uid, account.pw_gid)
        for _ in range(PORT_ATTEMPTS):  # another process may take the free port before PgBouncer binds it
            bouncer = _start(database_url, user, workdir, run_as=run_as)
            try:
                _wait_until_accepting(bouncer)
            except _PortTaken:
                continue
            except BaseException:
                _stop(bouncer)
                raise
            try:
                yield bouncer
            finally:
                _stop(bouncer)
            return
        raise AssertionError(f"pgbouncer found no free port in {PORT_ATTEMPTS} attempts")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _PortTaken(Exception):
    pass


def _unprivileged_user(database_url: str) -> str:
    """Who PgBouncer runs as under root: whoever owns the server's socket directory, if not root, else nobody."""
    socket_dir = str(make_url(database_url).query.get("host") or "")
    if socket_dir.startswith("/"):
        owner = Path(socket_dir).stat().st_uid
        if owner != 0:
            return pwd.getpwuid(owner).pw_name
    return UNPRIVILEGED_USER


def _start(database_url: str, user: str, workdir: Path, *, run_as: str | None) -> PgBouncer:
    assert BINARY is not None
    port = _free_port()
    ini = workdir / "pgbouncer.ini"
    ini.write_text(config(database_url, port, workdir))
    ini.chmod(0o644)
    (workdir / "pgbouncer.pid").unlink(missing_ok=True)
    with (workdir / "stderr.log").open("ab") as sink:
        process = subprocess.Popen(
            [BINARY, *(["-u", run_as] if run_as else []), str(ini)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return PgBouncer(port, user, workdir, process)


def _wait_until_accepting(bouncer: PgBouncer) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    while True:
        if bouncer.process.poll() is not None:
            log = bouncer.log_tail()
            if "Address already in use" in log:
                raise _PortTaken(log)
            raise AssertionError(f"pgbouncer exited with {bouncer.process.returncode}:\n{log}")
        try:
            bouncer.show("VERSION")
            return
        except (OSError, AdminError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"pgbouncer did not accept connections within {STARTUP_DEADLINE:g} s ({exc}):\n{bouncer.log_tail()}"
                ) from exc
        time.sleep(0.05)


def _stop(bouncer: PgBouncer) -> None:
    if bouncer.process.poll() is None:
        bouncer.process.terminate()  # SIGTERM: immediate shutdown
        try:
            bouncer.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bouncer.process.kill()
            bouncer.process.wait()


def admin_query(port: int, user: str, sql: str) -> list[dict[str, str | None]]:
    """One query on PgBouncer's admin console (database `pgbouncer`), which speaks only the simple query protocol
    (asyncpg returns no rows from that): a minimal frontend over a socket, trust authentication only."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, sock.makefile("rb") as reader:

        def receive() -> tuple[bytes, bytes]:
            header = reader.read(5)
            if len(header) < 5:
                raise AdminError("pgbouncer closed the connection")
            kind, length = header[:1], struct.unpack("!i", header[1:])[0]
            return kind, reader.read(length - 4)

        def error(body: bytes) -> AdminError:
            fields = {f[:1]: f[1:].decode(errors="replace") for f in body.split(b"\0") if f}
            return AdminError(fields.get(b"M", "error"))

        params = b"".join(f"{k}\0{v}\0".encode() for k, v in (("user", user), ("database", "pgbouncer"))) + b"\0"
        sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        while (message := receive())[0] != b"Z":
            kind, body = message
            if kind == b"E":
                raise error(body)
            if kind == b"R" and body[:4] != b"\0\0\0\0":
                raise AdminError("pgbouncer asked for a password: the admin console needs trust authentication")
        query = sql.encode() + b"\0"
        sock.sendall(b"Q" + struct.pack("!i", 4 + len(query)) + query)
        columns: list[str] = []
        rows: list[dict[str, str | None]] = []
        failure: AdminError | None = None
        while (message := receive())[0] != b"Z":
            kind, body = message
            if kind == b"T":
                count, at = struct.unpack("!h", body[:2])[0], 2
                for _ in range(count):
                    end = body.index(b"\0", at)
                    columns.append(body[at:end].decode())
                    at = end + 1 + 18  # table oid, column number, type oid, size, modifier, format
            elif kind == b"D":
                values: list[str | None] = []
                at = 2
                for _ in range(struct.unpack("!h", body[:2])[0]):
                    size = struct.unpack("!i", body[at : at + 4])[0]
                    at += 4
                    values.append(None if size < 0 else body[at : at + size].decode())
                    at += max(size, 0)
                rows.append(dict(zip(columns, values, strict=True)))
            elif kind == b"E":
                failure = error(body)
        sock.sendall(b"X\0\0\0\x04")
        if failure:
            raise failure
        return rows
