"""Saving a streamed download (the deliveries CSV) to a file chosen by the operator, without holding it in memory."""

from __future__ import annotations

import asyncio
import contextlib
import csv
from collections.abc import AsyncIterable
from pathlib import Path


def default_csv_path(announcement_id: int) -> str:
    """Where the export goes unless the operator says otherwise (the name the server suggests, in the cwd)."""
    return f"./announcement-{announcement_id}-deliveries.csv"


def count_rows(path: Path) -> int:
    """Data rows of a CSV file (its header not counted); quoted fields may hold line breaks, so it is parsed."""
    with path.open(newline="", encoding="utf-8") as f:
        return max(0, sum(1 for _ in csv.reader(f)) - 1)


async def save_stream(chunks: AsyncIterable[bytes], destination: Path) -> int:
    """Write `chunks` to `destination` and return how many CSV rows it holds.

    The bytes go to `<name>.part` first and replace `destination` only once complete: a download cut short leaves
    neither a truncated file nor a damaged earlier export. OSError (no such folder, permission) reaches the caller.
    """
    partial = destination.with_name(destination.name + ".part")
    try:
        with partial.open("wb") as f:
            async for chunk in chunks:
                # Chunks are small (httpx's read size) and local writes fast: not worth a thread each.
                f.write(chunk)
        partial.replace(destination)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    # The whole file is read once more to count: off the event loop, so the console keeps redrawing.
    return await asyncio.to_thread(count_rows, destination)
