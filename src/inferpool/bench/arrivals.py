"""Arrival times for open-loop load: Poisson, bursty (gamma, CV 2) and a step profile."""

from __future__ import annotations

import random

PROFILES = ("poisson", "bursty", "step", "ramp")
# `ramp`: five equal stretches of Poisson arrivals at these fractions of `rate`, which is then
# the 100 % point (round-robin's capacity for the cache-pressure workload), not the mean.
RAMP_FRACTIONS = (0.2, 0.45, 0.7, 0.95, 1.2)


def ramp_step(at: float, duration: float) -> int:
    """The ramp stretch (0-based) an arrival at `at` seconds falls in."""
    return min(len(RAMP_FRACTIONS) - 1, int(at * len(RAMP_FRACTIONS) / duration))


def arrival_times(profile: str, rate: float, duration: float, rng: random.Random) -> list[float]:
    """Seconds after start of each request; the mean rate is `rate` over `duration` (but see `ramp`).

    `bursty` draws gamma gaps with shape 0.25 (coefficient of variation 2): clumps of requests
    separated by lulls. `step` runs the first half at rate/2 and the second at 1.5 × rate, the
    shape that shows how fast a router reacts to a load change. `ramp` rises in five equal
    stretches from 20 % to 120 % of `rate` (RAMP_FRACTIONS; mean 70 % of `rate`).
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be > 0")
    if profile not in PROFILES:
        raise ValueError(f"unknown arrival profile {profile!r}; choose from {', '.join(PROFILES)}")
    times: list[float] = []
    t = 0.0
    stretch = 0  # ramp only: the stretch t is in
    while True:
        if profile == "poisson":
            t += rng.expovariate(rate)
        elif profile == "bursty":
            shape = 0.25
            t += rng.gammavariate(shape, 1.0 / (rate * shape))
        elif profile == "step":
            local = rate / 2 if t < duration / 2 else rate * 1.5
            t += rng.expovariate(local)
        else:
            # Memoryless: redrawing at a stretch boundary keeps each stretch Poisson at its own rate.
            gap = rng.expovariate(rate * RAMP_FRACTIONS[stretch])
            end = (stretch + 1) * duration / len(RAMP_FRACTIONS)
            if t + gap >= end and stretch < len(RAMP_FRACTIONS) - 1:
                t, stretch = end, stretch + 1
                continue
            t += gap
        if t >= duration:
            return times
        times.append(t)
