"""Backoff delays for provably-not-sent messages: bounded, non-negative, growing, jittered."""

from __future__ import annotations

import random
import statistics

import pytest

from bot.graph.retry import backoff_delay, pair_rate_delay


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 10, 50, 1_000, 10**6])
def test_backoff_never_exceeds_cap_and_is_never_negative(attempt: int) -> None:
    rng = random.Random(attempt)
    for _ in range(200):
        delay = backoff_delay(attempt, base=1.0, cap=30.0, rng=rng)
        assert 0.0 <= delay <= 30.0


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 4])
def test_backoff_stays_within_the_exponential_envelope(attempt: int) -> None:
    rng = random.Random(7)
    delays = [backoff_delay(attempt, base=0.5, cap=1_000.0, rng=rng) for _ in range(500)]
    assert max(delays) <= 0.5 * 2**attempt


def test_backoff_grows_with_attempts() -> None:
    rng = random.Random(1)
    means = [statistics.mean(backoff_delay(a, base=1.0, cap=300.0, rng=rng) for _ in range(2_000)) for a in range(6)]
    assert means == sorted(means)
    # Full jitter: the mean is about half the envelope (2**a / 2).
    assert means[5] == pytest.approx(16.0, rel=0.15)


def test_backoff_is_jittered() -> None:
    rng = random.Random(3)
    delays = {backoff_delay(4, rng=rng) for _ in range(50)}
    assert len(delays) > 40


def test_backoff_with_a_negative_attempt_behaves_like_the_first() -> None:
    rng = random.Random(5)
    assert all(0.0 <= backoff_delay(-3, base=2.0, cap=60.0, rng=rng) <= 2.0 for _ in range(100))


def test_backoff_with_zero_cap_is_zero() -> None:
    assert backoff_delay(5, cap=0.0, rng=random.Random(0)) == 0.0


@pytest.mark.parametrize(("attempt", "expected"), [(0, 1.0), (1, 4.0), (2, 16.0), (3, 64.0), (4, 256.0)])
def test_pair_rate_delay_follows_metas_four_to_the_x_rule(attempt: int, expected: float) -> None:
    assert pair_rate_delay(attempt) == expected


@pytest.mark.parametrize("attempt", [5, 6, 100, 10**6])
def test_pair_rate_delay_is_capped(attempt: int) -> None:
    assert pair_rate_delay(attempt) == 300.0
    assert pair_rate_delay(attempt, cap=60.0) == 60.0
