"""Helpers every benchmark needs: child processes, free ports, percentiles, comma-separated options."""

from __future__ import annotations

import argparse
import math
import signal
import socket
import subprocess
from typing import IO


def free_port() -> int:
    """An ephemeral port on 127.0.0.1 for a child server (a fixed port would collide with a running demo)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def terminate(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM, so the child cleans up (drains sends, deletes its rows); SIGKILL only after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def last_line(log: IO[bytes], limit: int = 300) -> str:
    """The last non-empty line a child wrote: the one-line reason shown when it failed to start."""
    log.seek(0)
    lines = [line for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip()[:limit] if lines else ""


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of the values at or below it."""
    if not sorted_values:
        return 0.0
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def int_list(raw: str) -> list[int]:
    """An argparse type for `--concurrency 1,16`: each value is a separate run."""
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {raw!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values
