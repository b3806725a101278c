"""Arrival times for open-loop load: Poisson, bursty (gamma, CV 2) and a step profile."""

from __future__ import annotations

import random

PROFILES = ("poisson", "bursty", "step")


def arrival_times(profile: str, rate: float, duration: float, rng: random.Random) -> list[float]:
    """Seconds after start of each request; the mean rate is `rate` over `duration` for every profile.

    `bursty` draws gamma gaps with shape 0.25 (coefficient of variation 2): clumps of requests
    separated by lulls. `step` runs the first half at rate/2 and the second at 1.5 × rate, the
    shape that shows how fast a router reacts to a load change.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be > 0")
    if profile not in PROFILES:
        raise ValueError(f"unknown arrival profile {profile!r}; choose from {', '.join(PROFILES)}")
    times: list[float] = []
    t = 0.0
    while True:
        if profile == "poisson":
            t += rng.expovariate(rate)
        elif profile == "bursty":
            shape = 0.25
            t += rng.gammavariate(shape, 1.0 / (rate * shape))
        else:
            local = rate / 2 if t < duration / 2 else rate * 1.5
            t += rng.expovariate(local)
        if t >= duration:
            return times
        times.append(t)
