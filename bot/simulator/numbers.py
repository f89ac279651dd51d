"""The business phone numbers the simulator plays: each its own access token and throughput (`--number`).

Without any configured number the simulator is one permissive number, as it always was: every
`phone_number_id` in a send's URL is accepted with any bearer token. With numbers configured, it answers for
those (each with its token and optional rate) and for the default number `DEFAULT_PHONE_NUMBER_ID` (any
token, unless it is itself given as a `--number`); any other id is Graph's 100.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_PHONE_NUMBER_ID = "100000000000001"
DEFAULT_DISPLAY_NUMBER = "15550000001"

NUMBER_ID = re.compile(r"[0-9]{1,32}")
TOKEN = re.compile(r"\S{1,512}")
# Burst of a rate-limited number: this share of a second's throughput, at least one message.
BURST_SECONDS = 0.2


def display_number_for(phone_number_id: str) -> str:
    """The `metadata.display_phone_number` of a number: `1555` and seven digits of its id.

    The default number keeps `15550000001`; any other id gives `1555` and its last seven digits
    (`100000000000002` → `15550000002`), or, for an id without digits, seven digits of its SHA-256.
    """
    if phone_number_id == DEFAULT_PHONE_NUMBER_ID:
        return DEFAULT_DISPLAY_NUMBER
    digits = "".join(c for c in phone_number_id if c.isascii() and c.isdigit())
    if not digits:
        digits = str(int.from_bytes(hashlib.sha256(phone_number_id.encode()).digest()[:8], "big"))
    return "1555" + digits[-7:].rjust(7, "0")


@dataclass(frozen=True)
class SimulatedNumber:
    """One business number: its `phone_number_id`, the bearer token it accepts, messages/second (None: any)."""

    phone_number_id: str
    token: str
    rate: float | None = None

    def __post_init__(self) -> None:
        if not NUMBER_ID.fullmatch(self.phone_number_id):
            raise ValueError(f"the phone number id must be 1-32 digits, got {self.phone_number_id!r}")
        if not TOKEN.fullmatch(self.token):
            raise ValueError("the token must be 1-512 characters without spaces")
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"the rate must be a positive number of messages per second, got {self.rate}")

    @property
    def display_number(self) -> str:
        return display_number_for(self.phone_number_id)

    @classmethod
    def parse(cls, spec: str) -> SimulatedNumber:
        """`ID:TOKEN` or `ID:TOKEN:RATE`, as `--number` takes it; ValueError with the reason otherwise."""
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"expected ID:TOKEN or ID:TOKEN:RATE, got {len(parts)} part(s)")
        rate: float | None = None
        if len(parts) == 3:
            try:
                rate = float(parts[2])
            except ValueError:
                raise ValueError(f"the rate must be a number of messages per second, got {parts[2]!r}") from None
        return cls(parts[0], parts[1], rate)


class TokenBucket:
    """`rate` tokens a second, holding at most `burst = max(1, rate * 0.2)`; it starts full."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate * BURST_SECONDS)
        self.clock = clock
        self.tokens = self.burst
        self.at = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def refill(self) -> None:
        self.tokens, self.at = self.burst, self.clock()


class Numbers:
    """The numbers' live state: current tokens (replaceable at run time) and rate buckets."""

    def __init__(self, numbers: tuple[SimulatedNumber, ...]) -> None:
        self.configured = {number.phone_number_id: number for number in numbers}
        if len(self.configured) != len(numbers):
            raise ValueError("each --number needs its own phone number id")
        self.tokens = {number.phone_number_id: number.token for number in numbers}
        self.buckets = {n.phone_number_id: TokenBucket(n.rate) for n in numbers if n.rate is not None}

    def known(self, phone_number_id: str) -> bool:
        """Whether a send may name this id: any id without configured numbers, else those and the default."""
        return not self.configured or phone_number_id in self.configured or phone_number_id == DEFAULT_PHONE_NUMBER_ID

    def token_ok(self, phone_number_id: str, token: str) -> bool:
        """A configured number takes its own token only (compared in constant time); any other, any token."""
        expected = self.tokens.get(phone_number_id)
        if expected is None:
            return True
        return hmac.compare_digest(expected.encode(), token.encode())

    def account_token_ok(self, token: str) -> bool:
        """For the business account's own endpoints (templates, media): without configured numbers any token,
        else the current token of one of them (each compared in constant time, none skipped)."""
        if not self.configured:
            return True
        matches = [hmac.compare_digest(expected.encode(), token.encode()) for expected in self.tokens.values()]
        return any(matches)

    def within_rate(self, phone_number_id: str) -> bool:
        bucket = self.buckets.get(phone_number_id)
        return bucket is None or bucket.take()

    def replace_token(self, phone_number_id: str, token: str) -> None:
        self.tokens[phone_number_id] = token

    def refill(self) -> None:
        for bucket in self.buckets.values():
            bucket.refill()
