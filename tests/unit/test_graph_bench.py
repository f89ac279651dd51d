"""`jem-bot bench client`: runs against its own fake Graph process and reports per transport."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bot.bench.client import FakeGraphProcess, run_one
from bot.cli import main


def jem_bot(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSAPP_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_run_one_sends_every_request_through_the_fake_graph() -> None:
    with FakeGraphProcess(latency_ms=1) as server:
        result = run_one(server.url, transport="aiohttp", requests=300, concurrency=30, latency_ms=1)
    assert result.errors == 0
    assert result.requests == 300
    assert result.msg_per_s > 0
    assert 1.0 <= result.p50_ms <= result.p99_ms
    assert not result.timed_out


def test_a_run_past_its_time_bound_stops_and_reports_what_completed() -> None:
    with FakeGraphProcess(latency_ms=200) as server:
        result = run_one(
            server.url, transport="aiohttp", requests=10_000, concurrency=5, latency_ms=200, max_seconds=0.5
        )
    assert result.timed_out
    assert 5 <= result.requests < 100
    assert result.errors == 0


def test_latency_is_injected_by_the_server() -> None:
    with FakeGraphProcess(latency_ms=80) as server:
        result = run_one(server.url, transport="aiohttp", requests=40, concurrency=20, latency_ms=80)
    assert result.p50_ms >= 80
    # 20 in flight at >= 80 ms each cannot exceed 250 msg/s.
    assert result.msg_per_s <= 250


def test_cli_prints_json_for_each_transport_and_concurrency() -> None:
    completed = jem_bot(
        "bench", "client", "--requests", "200", "--concurrency", "10,20", "--latency-ms", "2",
        "--transport", "aiohttp", "--transport", "httpx", "--json",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    rows = json.loads(completed.stdout)
    assert [(r["transport"], r["in_flight"]) for r in rows] == [
        ("aiohttp", 10),
        ("httpx", 10),
        ("aiohttp", 20),
        ("httpx", 20),
    ]
    assert all(r["errors"] == 0 and r["msg_per_s"] > 0 for r in rows)


def test_cli_prints_a_table_by_default() -> None:
    completed = jem_bot("bench", "client", "--requests", "50", "--concurrency", "5", "--latency-ms", "0",
                        "--transport", "aiohttp")  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    header, row = completed.stdout.strip().splitlines()
    assert header.split()[:3] == ["transport", "loop", "in-flight"]
    assert row.split()[0] == "aiohttp"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--requests", "0"], "--requests must be"),
        (["--requests", "10000000"], "--requests must be"),
        (["--concurrency", "0"], "--concurrency must be"),
        (["--latency-ms", "-5"], "--latency-ms must be"),
    ],
)
def test_cli_rejects_out_of_bounds_arguments_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "client", *args])
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1
