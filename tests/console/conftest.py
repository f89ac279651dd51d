"""Console test helpers: a populated fake API and a poll-with-deadline helper for Pilot."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerFailed

from tests.console.fake_api import FakeApi

SIZES = [(120, 40), (80, 24)]


@pytest.fixture
def fake() -> FakeApi:
    api = FakeApi()
    api.add_employee("Thandi Mokoena", ["warehouse"])
    api.add_employee("Pieter van Wyk", ["warehouse", "drivers"])
    api.add_employee("Aisha Patel", ["office"])
    api.add_employee("Sipho Dlamini", ["warehouse"], opted_out=True)
    return api


async def until(pilot: Pilot[Any], predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Let workers and messages run until `predicate()` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(WorkerFailed):
            # A failed worker is the app's business (it turns into a notice); the test asserts on that.
            await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.02)


def notices(app: object) -> list[str]:
    """Titles and texts of the notifications currently shown."""
    return [f"{n.title}: {n.message}" for n in app._notifications]  # type: ignore[attr-defined]
