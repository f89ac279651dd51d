"""`jem-bot bench fanout`: a real run on a small audience, its own database (dropped afterwards), its arithmetic.

Only correctness is checked here (every delivery sent once, the report adds up); speed is what the benchmark
itself reports, never a test's assertion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.bench.fanout import busiest_second, steady_rate
from bot.cli import main


def jem_bot(database_url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "JEM_", "DATABASE_URL"))}
    env.update(DATABASE_URL=database_url, JEM_DATA_DIR=str(tmp / "jem-data"))
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


async def bench_databases(admin_url: str) -> list[str]:
    dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'jem_bench_%'")]
    finally:
        await conn.close()


async def test_a_small_run_sends_everyone_once_and_drops_its_database(admin_url: str, tmp_path: Path) -> None:
    before = await bench_databases(admin_url)
    run = jem_bot(
        admin_url, tmp_path, "bench", "fanout", "--employees", "300", "--rate", "500", "--latency-ms", "5",
        "--workers", "2", "--concurrency", "20", "--first-sends", "5", "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["statuses"] == {"sent": 300}
    assert report["simulator_accepted"] == 300
    assert report["duplicates"] == 0
    assert report["workers"] == 2
    # rows_per_claim is rounded to a tenth.
    assert report["rows_per_claim"] * report["claims"] == pytest.approx(300, abs=0.05 * report["claims"] + 0.5)
    assert report["sent_per_write"] >= 1
    assert 0 < report["send_p50_ms"] <= report["send_p99_ms"]
    assert report["sustained_msg_per_s"] > 0
    assert report["total_seconds"] > 0
    # Five announcements due now were each timed from their commit to their claim.
    assert report["first_send_samples"] == 5
    assert 0 < report["first_send_p50_ms"] <= report["first_send_p99_ms"]
    assert await bench_databases(admin_url) == before


def test_the_table_names_how_sustained_is_computed(admin_url: str, tmp_path: Path) -> None:
    run = jem_bot(admin_url, tmp_path, "bench", "fanout", "--employees", "50", "--latency-ms", "0")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("fanout: 50 employees, cap 1000 msg/s")
    sustained = next(line for line in lines if "sustained msg/s" in line)
    assert "10th and 90th percentile" in sustained
    assert any(line.split()[:2] == ["duplicates", "0"] for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--employees", "0"], "--employees must be"),
        (["--workers", "99"], "--workers must be"),
        (["--concurrency", "0"], "--concurrency must be"),
        (["--rate", "0"], "--rate must be"),
        (["--max-seconds", "0"], "--max-seconds must be"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_before_touching_anything(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # In-process: the arguments are checked before any database, simulator or worker is started.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/unreachable")
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "fanout", *args])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_steady_rate_ignores_ramp_up_and_tail() -> None:
    # 10 slow sends, then 100 at 100/s, then 10 slow ones: the steady part is 100/s.
    times = [i * 1.0 for i in range(10)] + [10 + i * 0.01 for i in range(100)] + [12 + i for i in range(10)]
    assert steady_rate(times) == pytest.approx(100, rel=0.05)
    assert steady_rate([1.0, 2.0]) == 0.0


def test_busiest_second_counts_the_fullest_one_second_window() -> None:
    assert busiest_second([0.0, 0.5, 0.99, 1.0, 1.5, 3.0]) == 3
    assert busiest_second([0.0, 0.1, 0.2, 0.3]) == 4
    assert busiest_second([]) == 0
