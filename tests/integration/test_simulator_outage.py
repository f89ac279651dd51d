"""`POST /_simulator/outage`: connections refused and open ones dropped for N s, then back on the same port
with the same state; both standalone (`jem-bot simulator`) and embedded (`serve --simulator`'s lifespan)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from bot.simulator.app import create_simulator_app
from bot.simulator.outage import Outage
from bot.simulator.phone import SimulatorConfig

PATH = "/v23.0/100000000000001/messages"
AUTH = {"Authorization": "Bearer x"}
SEND = {"messaging_product": "whatsapp", "to": "+27820000001", "type": "text", "text": {"body": "hi"}}

# The embedded simulator as `serve --simulator` runs it: a lifespan of an outer app, in the same event loop.
EMBEDDED = """
import sys
import uvicorn
from litestar import Litestar
from bot.settings import Settings
from bot.simulator.embedded import simulator_lifespan
from bot.simulator.phone import SimulatorConfig

api_port, simulator_port, loop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
settings = Settings(port=api_port, whatsapp_api_url=f"http://127.0.0.1:{simulator_port}/v23.0")
app = Litestar(lifespan=[simulator_lifespan(settings, SimulatorConfig(seed=1))])
uvicorn.run(app, host="127.0.0.1", port=api_port, loop=loop, log_level="warning")
"""

# Standalone runs under uvicorn's loop="auto" (uvloop, installed with the project); embedded under both.
MODES = ["standalone", "embedded-asyncio", "embedded-uvloop"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached within {within} s"
        time.sleep(0.02)


def sends_ok(url: str) -> bool:
    try:
        return httpx.post(f"{url}{PATH}", json=SEND, headers=AUTH, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        # Accepted into the old listener's backlog just as it closed: the outage is starting; look again.
        return False
    return False


@pytest.fixture(params=MODES)
def simulator(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, subprocess.Popen[str]]]:
    port = free_port()
    if request.param == "standalone":
        command = [sys.executable, "-m", "bot", "simulator", "--port", str(port), "--seed", "1"]
    else:
        command = [sys.executable, "-c", EMBEDDED, str(free_port()), str(port), request.param.split("-")[1]]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: stats_or_none(url) is not None or process.poll() is not None, 20, "simulator start-up")
        assert process.poll() is None, "the simulator exited during start-up"
        yield url, port, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr


def stats_or_none(url: str) -> dict[str, Any] | None:
    try:
        answer = httpx.get(f"{url}/_simulator/stats", timeout=1)
    except httpx.TransportError:
        return None
    result: dict[str, Any] = answer.json()
    return result


def raw_request(port: int) -> bytes:
    body = json.dumps(SEND)
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def read_response(sock: socket.socket) -> bytes:
    """One response on a kept-alive connection (headers and a Content-Length body); b"" if it was dropped."""
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < content_length(data):
            chunk = sock.recv(65536)
            if not chunk:
                return b""
            data += chunk
    except OSError:  # reset by the peer
        return b""
    return data


def content_length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_outage_refuses_drops_and_comes_back(simulator: tuple[str, int, subprocess.Popen[str]]) -> None:
    url, port, _ = simulator
    assert sends_ok(url)
    # A kept-alive connection, as a Graph client holds between sends.
    kept = socket.create_connection(("127.0.0.1", port), timeout=5)
    kept.sendall(raw_request(port))
    assert read_response(kept).startswith(b"HTTP/1.1 200")
    with httpx.Client(base_url=url) as pooled:
        assert pooled.post(PATH, json=SEND, headers=AUTH).status_code == 200

        answer = httpx.post(f"{url}/_simulator/outage", json={"seconds": 2})
        answered = time.monotonic()
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"outage_active": True, "seconds": 2, "extended": False}

        # The outage starts just after the answer; from then on nothing gets in, as if nothing listened.
        poll(lambda: refused(port), 1, "connection refused")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/_simulator/stats")
        # The open connections were dropped: the kept-alive one reads end-of-stream (or a reset) ...
        assert read_response(kept) == b""
        # ... and a send written on it gets no answer at all, let alone a 200.
        with contextlib.suppress(OSError):  # the write itself may already fail with a reset
            kept.sendall(raw_request(port))
        assert read_response(kept) == b""
        kept.close()
        # A pooling client sees its kept-alive connection gone and cannot open another one.
        with pytest.raises(httpx.TransportError):
            pooled.post(PATH, json=SEND, headers=AUTH)

    poll(lambda: sends_ok(url), 10, "sends accepted again")
    assert time.monotonic() - answered >= 1.9
    stats = stats_or_none(url)
    assert stats is not None
    # Same process state: the three sends before the outage and the one after are all counted.
    assert stats["messages_accepted"] == 4
    assert stats["outages"] == 1
    assert stats["outage_active"] is False


def test_stopping_during_an_outage_is_clean(simulator: tuple[str, int, subprocess.Popen[str]]) -> None:
    url, port, process = simulator
    assert httpx.post(f"{url}/_simulator/outage", json={"seconds": 600}).status_code == 200
    poll(lambda: refused(port), 1, "connection refused")
    process.send_signal(signal.SIGINT)
    process.wait(timeout=10)  # the fixture checks it exited with 0


@pytest.fixture(scope="module")
def standalone() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "simulator", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: stats_or_none(url) is not None, 20, "simulator start-up")
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)


@pytest.mark.parametrize(
    "content",
    [b"{}", b'{"seconds": 0}', b'{"seconds": -1}', b'{"seconds": 3601}', b'{"seconds": "10"}',
     b'{"seconds": null}', b'{"seconds": true}', b'{"seconds": NaN}', b"[10]", b"ten", b""],
)  # fmt: skip
def test_seconds_must_be_in_0_to_3600(standalone: str, content: bytes) -> None:
    answer = httpx.post(f"{standalone}/_simulator/outage", content=content)
    assert answer.status_code == 422
    assert answer.json()["field"] == "seconds"
    assert "seconds" in answer.json()["detail"]
    stats = stats_or_none(standalone)
    assert stats is not None
    assert stats["outages"] == 0


async def test_without_the_outage_server_the_endpoint_says_so() -> None:
    async with AsyncTestClient(create_simulator_app(SimulatorConfig())) as client:
        answer = await client.post("/_simulator/outage", json={"seconds": 1})
    assert answer.status_code == 409
    assert "OutageServer" in answer.json()["detail"]


async def test_a_second_call_during_an_outage_can_only_lengthen_it() -> None:
    # Over HTTP it can only get in before the listener closes; it then moves the end, never earlier.
    outage = Outage()
    assert outage.request(2) is True
    first_end = outage.ends_at
    assert first_end is not None
    assert outage.request(1) is False
    assert outage.ends_at == first_end
    assert outage.request(10) is False
    assert outage.ends_at is not None
    assert outage.ends_at > first_end + 7
    assert outage.active
