"""Retry delays for sends that were provably not accepted (NotSentError)."""

from __future__ import annotations

import random

# Meta's only published backoff rule: after a 131056 pair-rate error wait 4**x seconds
# (docs/whatsapp.md#throughput-and-pair-rate).
PAIR_RATE_BASE = 4.0


def backoff_delay(attempt: int, *, base: float = 1.0, cap: float = 300.0, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)].

    ``attempt`` counts from 0 (the first retry). Full jitter spreads workers that were throttled together
    so they do not come back in lockstep (AWS Architecture Blog, "Exponential Backoff And Jitter").
    """
    return rng.uniform(0.0, _bounded(base, 2.0, attempt, cap))


def pair_rate_delay(attempt: int, *, cap: float = 300.0) -> float:
    """Meta's recommended wait after a pair-rate error: 4**attempt seconds (attempt from 0), capped."""
    return _bounded(1.0, PAIR_RATE_BASE, attempt, cap)


def _bounded(base: float, factor: float, attempt: int, cap: float) -> float:
    if cap <= 0 or base <= 0:
        return 0.0
    exponent = max(0, attempt)
    # Stop multiplying once past the cap, so a huge attempt count can never overflow a float.
    limit = cap / base
    value = 1.0
    for _ in range(exponent):
        value *= factor
        if value >= limit:
            return cap
    return min(cap, base * value)
