"""`jem-bot simulator` as a process: one line saying where it listens, answers sends, bad options exit 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_simulator_command_listens_and_answers() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "simulator", "--port", str(port), "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"listening on http://127.0.0.1:{port}" in first
        deadline = time.monotonic() + 20
        while True:
            try:
                stats = httpx.get(f"http://127.0.0.1:{port}/_simulator/stats", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "simulator did not answer"
                time.sleep(0.05)
        assert stats.json()["messages_accepted"] == 0
        sent = httpx.post(
            f"http://127.0.0.1:{port}/v23.0/1/messages",
            headers={"Authorization": "Bearer t"},
            json={"messaging_product": "whatsapp", "to": "+27821234567", "type": "text", "text": {"body": "hi"}},
        )
        assert sent.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


def test_simulator_command_plays_the_numbers_it_is_given() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "simulator", "--port", str(port), "--number", "100000000000002:acme-tok:50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "numbers 100000000000002 (50/s) and the default" in first
        assert "acme-tok" not in first
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/_simulator/stats", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "simulator did not answer"
                time.sleep(0.05)
        send = {"messaging_product": "whatsapp", "to": "+27821234567", "type": "text", "text": {"body": "hi"}}
        answers = {
            (number, token): httpx.post(
                f"{base}/v23.0/{number}/messages", headers={"Authorization": f"Bearer {token}"}, json=send
            ).json()
            for number, token in [("100000000000002", "acme-tok"), ("100000000000002", "other"),
                                  ("100000000000001", "other"), ("100000000000009", "acme-tok")]
        }  # fmt: skip
        codes = {key: answer.get("error", {}).get("code") for key, answer in answers.items()}
        assert codes == {
            ("100000000000002", "acme-tok"): None,
            ("100000000000002", "other"): 190,
            ("100000000000001", "other"): None,
            ("100000000000009", "acme-tok"): 100,
        }
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


def test_simulator_command_rejects_a_bad_rate() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "simulator", "--fault-throttle", "2"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--fault-throttle" in result.stderr
