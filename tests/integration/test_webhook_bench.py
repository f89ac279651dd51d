"""`jem-bot bench webhook`: real HTTP against `jem-bot serve`, numbers that add up, and no trace left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Tenant
from tests.integration.test_cli import cli_env, jem
from tests.integration.test_webhook import _delivery


async def _snapshot(db: async_sessionmaker[AsyncSession]) -> tuple[object, ...]:
    async with db() as s:
        return tuple(
            (
                await s.execute(
                    text(
                        """
                        SELECT (SELECT json_agg(e ORDER BY e.id)::text FROM employer e),
                               (SELECT json_agg(m ORDER BY m.id)::text FROM employee m),
                               (SELECT json_agg(a ORDER BY a.id)::text FROM announcement a),
                               (SELECT json_agg(d ORDER BY d.id)::text FROM delivery d),
                               (SELECT json_agg(w ORDER BY w.id)::text FROM webhook_event w),
                               (SELECT count(*) FROM inbound_message)
                        """
                    )
                )
            ).one()
        )


def _bench(database_url: str, tmp_path: Path, *args: str, **env: str) -> dict[str, Any]:
    done = jem(cli_env(database_url, tmp_path, **env), "bench", "webhook", *args, "--json", timeout=240)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _ordered(r: dict[str, Any]) -> None:
    assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]


async def test_bench_measures_every_mode_against_the_reference_and_leaves_the_database_as_it_found_it(
    db: async_sessionmaker[AsyncSession], tenant: Tenant, database_url: str, tmp_path: Path
) -> None:
    # Someone's real data: an announcement in flight and an event Meta already sent about it.
    await _delivery(db, tenant, "sent", "wamid.USER")
    async with db() as s, s.begin():
        await s.execute(text("INSERT INTO webhook_event (key, kind) VALUES ('st:wamid.USER:sent', 'status')"))
    before = await _snapshot(db)

    args = ("--requests", "40", "--concurrency", "1,3", "--batch-size", "10", "--batch-requests", "5")
    # 4 seconds: two slices of each timed run, alternating between the servers.
    timed = ("--connections", "4", "--duration", "4", "--rate", "10")
    # A thread: the bench runs its own servers and event loop, and this test's loop must stay free meanwhile.
    report = await asyncio.to_thread(_bench, database_url, tmp_path, *args, *timed)
    assert report["database"] == "DATABASE_URL"
    assert report["reference"] == "lean"
    client = "wrk" if shutil.which("wrk") else "python"
    assert report["throughput_client"] == client
    runs = report["runs"]
    # Every run against the reference first, then against jem-bot with the same load; the bench has checked
    # (for both) that each status answered 200 was stored and moved its delivery, or it would have failed.
    assert [(r["server"], r["mode"], r["client"], r["statuses_per_post"], r["concurrency"]) for r in runs] == [
        (server, mode, runner, per_post, in_flight)
        for mode, runner, per_post, in_flight in [
            ("single", "python", 1, 1),
            ("batch", "python", 10, 1),
            ("single", "python", 1, 3),
            ("batch", "python", 10, 3),
            ("throughput", client, 1, 4),
        ]
        for server in ("lean", "jem-bot")
    ]
    for r in runs:
        assert r["errors"] == 0
        if r["mode"] != "throughput":
            assert r["requests"] == (40 if r["mode"] == "single" else 5)
        assert r["requests"] > 0
        _ordered(r)
        assert r["req_per_s"] > 0
        assert r["statuses_per_s"] == pytest.approx(r["req_per_s"] * r["statuses_per_post"], rel=0.01)
    for lean, mine in zip(runs[::2], runs[1::2], strict=True):
        assert lean["server_mean_ms"] is None
        assert lean["vs_lean_req_per_s"] is None
        assert lean["vs_lean_p99"] is None
        # The app's own time is part of what the client waited for.
        assert 0 < mine["server_mean_ms"] <= mine["max_ms"]
        assert mine["vs_lean_req_per_s"] == pytest.approx(mine["req_per_s"] / lean["req_per_s"], abs=0.01)
        assert mine["vs_lean_p99"] == pytest.approx(mine["p99_ms"] / lean["p99_ms"], abs=0.01)

    open_loop = report["open_loop"]
    assert [(r["server"], r["target_per_s"], r["requests"], r["errors"]) for r in open_loop] == [
        ("lean", 10, 40, 0),
        ("jem-bot", 10, 40, 0),
    ]
    for r in open_loop:
        _ordered(r)
        assert r["sent_per_s"] > 0
        assert 0 <= r["late_p99_ms"] <= r["late_max_ms"]
        assert r["peak_in_flight"] >= 1
        assert isinstance(r["schedule_kept"], bool)
    lean_open, mine_open = open_loop
    assert lean_open["vs_lean_p99"] is None
    assert mine_open["vs_lean_p50"] == pytest.approx(mine_open["p50_ms"] / lean_open["p50_ms"], abs=0.01)
    assert mine_open["vs_lean_p99"] == pytest.approx(mine_open["p99_ms"] / lean_open["p99_ms"], abs=0.01)
    assert await _snapshot(db) == before


async def test_bench_without_the_reference_or_wrk(
    db: async_sessionmaker[AsyncSession], database_url: str, tmp_path: Path
) -> None:
    before = await _snapshot(db)
    args = ("--requests", "10", "--concurrency", "2", "--batch-size", "0", "--connections", "2", "--duration", "1")
    report = await asyncio.to_thread(
        _bench, database_url, tmp_path, *args, "--rate", "20", "--no-reference", "--load-generator", "python",
        "--workers", "2",
    )  # fmt: skip
    assert report["reference"] is None
    assert report["throughput_client"] == "python"
    runs = report["runs"]
    assert [(r["server"], r["mode"], r["client"], r["concurrency"]) for r in runs] == [
        ("jem-bot", "single", "python", 2),
        ("jem-bot", "throughput", "python", 2),
    ]
    assert all(r["errors"] == 0 and r["vs_lean_req_per_s"] is None and r["vs_lean_p99"] is None for r in runs)
    # Two server processes: /metrics answers for one of them, so no server-side mean is claimed.
    assert all(r["server_mean_ms"] is None for r in runs)
    [open_run] = report["open_loop"]
    assert (open_run["server"], open_run["requests"], open_run["errors"], open_run["vs_lean_p99"]) == (
        "jem-bot",
        20,
        0,
        None,
    )
    assert await _snapshot(db) == before


def _interrupt(database_url: str, tmp_path: Path) -> tuple[int, str, list[int]]:
    """Ctrl+C in the throughput run: (exit status, stderr, ports of the servers it started that still answer)."""
    args = ("--requests", "10", "--concurrency", "1", "--batch-size", "0", "--duration", "60", "--rate", "0")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "bench", "webhook", *args, "--load-generator", "python"],
        env=cli_env(database_url, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group, signalled as a whole: what Ctrl+C in a terminal does.
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        while not any(line.startswith("jem-bot ") for line in lines):  # the closed-loop rows are done
            line = process.stdout.readline()
            assert line, process.communicate()[1]
            lines.append(line)
        time.sleep(1)  # well into the 60-second throughput run
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    marker = " at http://127.0.0.1:"
    ports = [int(line.split(marker)[1].split()[0]) for line in lines if marker in line]
    assert len(ports) == 2, lines
    answering = []
    for port in ports:
        with contextlib.suppress(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
            answering.append(port)
    return process.returncode, stderr, answering


async def test_ctrl_c_stops_both_servers_and_cleans_up(
    db: async_sessionmaker[AsyncSession], database_url: str, tmp_path: Path
) -> None:
    before = await _snapshot(db)
    status, stderr, answering = await asyncio.to_thread(_interrupt, database_url, tmp_path)
    assert status == 130, stderr
    assert answering == []
    assert await _snapshot(db) == before


async def test_bench_refuses_bad_options_with_one_line(tmp_path: Path, database_url: str) -> None:
    env = cli_env(database_url, tmp_path)
    for args, message in [
        (("--requests", "0"), "--requests must be 1-100000"),
        (("--concurrency", "0"), "--concurrency must be 1-1000"),
        (("--batch-size", "5000"), "--batch-size must be 0-1000"),
        (("--concurrency", "x"), "expected integers separated by commas"),
        (("--connections", "5000"), "--connections must be 0-1000"),
        (("--rate", "-1"), "--rate must be 0-20000"),
        (("--duration", "0"), "--duration must be 1-600"),
        (("--workers", "0"), "--workers must be 1-64"),
        (("--rate", "20000", "--duration", "600"), "that would post more than 2000000 statuses"),
    ]:
        done = await asyncio.to_thread(jem, env, "bench", "webhook", *args)
        assert done.returncode == 2
        assert message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    # Asked for wrk where there is none: said before anything starts.
    done = await asyncio.to_thread(jem, env | {"PATH": ""}, "bench", "webhook", "--load-generator", "wrk")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("--load-generator wrk: wrk is not on PATH")
