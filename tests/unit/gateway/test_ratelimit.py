"""Sliding-window RPM/TPM on a deterministic clock: refusals, Retry-After, and accuracy over time."""

from __future__ import annotations

import random

import pytest

from inferpool.errors import InferenceError
from inferpool.gateway.auth import ApiKey
from inferpool.gateway.ratelimit import RateLimiter, SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(rpm: int | None = None, tpm: int | None = None) -> ApiKey:
    return ApiKey("k", "0" * 64, rpm=rpm, tpm=tpm)


def test_rpm_refuses_with_retry_after_and_headers() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    k = key(rpm=3)
    remaining = []
    for _ in range(3):
        remaining.append(limiter.admit(k).remaining_requests)
        clock.now += 10
    assert remaining == [2, 1, 0]
    with pytest.raises(InferenceError) as err:
        limiter.admit(k)
    assert err.value.status == 429
    assert err.value.headers["Retry-After"] == "30"  # the first request leaves the window at t+60
    assert err.value.headers["x-ratelimit-remaining-requests"] == "0"
    clock.now += 30
    assert limiter.admit(k).remaining_requests == 0


def test_tpm_is_charged_after_the_answer() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    k = key(tpm=100)
    allowance = limiter.admit(k)
    assert allowance.remaining_tokens == 100
    assert allowance.headers()["x-ratelimit-remaining-tokens"] == "100"
    limiter.charge(k, 120)  # overshoot by the one request in flight is allowed
    with pytest.raises(InferenceError) as err:
        limiter.admit(k)
    assert (
        "tokens per minute" in err.value.message and err.value.headers["x-ratelimit-remaining-tokens"] == "0"
    )
    clock.now += 60.001
    assert limiter.admit(k).remaining_tokens == 100


def test_window_wait_until_below() -> None:
    w = SlidingWindow(60.0)
    w.add(0.0, 5)
    w.add(20.0, 5)
    assert w.used(30.0) == 10
    assert w.wait_until_below(30.0, 10, 1) == pytest.approx(30.0)
    assert w.wait_until_below(30.0, 10, 6) == pytest.approx(50.0)
    assert w.used(60.0) == 5


@pytest.mark.parametrize(("rpm", "tpm"), [(120, None), (None, 20_000), (600, 50_000)])
def test_accuracy_within_five_percent(rpm: int | None, tpm: int | None) -> None:
    """A client hammering far above its limits for 10 simulated minutes gets within 5 % of them."""
    clock = Clock()
    limiter = RateLimiter(clock)
    k = key(rpm=rpm, tpm=tpm)
    rng = random.Random(7)
    admitted: list[tuple[float, int]] = []
    start = clock.now
    while clock.now < start + 600:
        try:
            limiter.admit(k)
        except InferenceError as err:
            assert err.status == 429 and int(err.headers["Retry-After"]) >= 1
        else:
            tokens = rng.randint(50, 250)  # prompt + completion the model server reports
            limiter.charge(k, tokens)
            admitted.append((clock.now, tokens))
        clock.now += 0.05  # 20 attempts per second, far above every limit here
    # steady state: every full minute after the first
    for minute in range(1, 10):
        lo, hi = start + 60 * minute, start + 60 * (minute + 1)
        reqs = [t for t in admitted if lo <= t[0] < hi]
        if rpm is not None and (tpm is None or rpm * 250 < tpm):
            assert abs(len(reqs) - rpm) <= 0.05 * rpm, (minute, len(reqs))
        if tpm is not None:
            used = sum(n for _, n in reqs)
            assert abs(used - tpm) <= 0.05 * tpm, (minute, used)
    total_minutes = 10
    if rpm is not None and tpm is None:
        assert len(admitted) <= rpm * total_minutes
    print(f"rate-limit accuracy rpm={rpm} tpm={tpm}: admitted {len(admitted)} requests in 10 min")


def test_idle_keys_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limiter.admit(ApiKey("a", "0" * 64, rpm=5))
    clock.now += 700
    limiter.admit(ApiKey("b", "0" * 64, rpm=5))
    assert limiter.tracked_keys() == 1
