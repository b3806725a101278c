"""Recursive least squares: recovers a known linear law, follows a change, stays bounded."""

from __future__ import annotations

import math
import random

import pytest

from inferpool.scheduling.latency_model import (
    FEATURE_NAMES,
    TTFT_PRIOR,
    EndpointCalibration,
    LatencyFeatures,
    LatencyModel,
    Prediction,
    RecursiveLeastSquares,
)

TRUE = [0.02, 0.03, 0.001, 0.015, 0.002, 0.05, 0.004, 0.01]  # one weight per feature, in seconds


def sample(rng: random.Random) -> list[float]:
    """A feature vector spread like real endpoint states (bias first)."""
    return [
        1.0,
        rng.uniform(0, 8),
        rng.uniform(0, 8),
        rng.randrange(0, 20),
        rng.randrange(0, 60),
        rng.random(),
        rng.randrange(0, 80),
        float(rng.random() < 0.3),
    ]


def dot(w: list[float], x: list[float]) -> float:
    return sum(a * b for a, b in zip(w, x, strict=True))


def test_recovers_known_coefficients_from_noisy_samples() -> None:
    rng = random.Random(1)
    rls = RecursiveLeastSquares(len(TRUE), forgetting=1.0)
    for _ in range(2000):
        x = sample(rng)
        rls.update(x, dot(TRUE, x) + rng.gauss(0, 0.002))
    assert rls.weights == pytest.approx(TRUE, abs=2e-3)
    assert rls.samples == 2000
    assert 0.001 < rls.residual_std < 0.004  # the noise it was given, not the spread of y


def test_forgetting_follows_a_change_that_plain_least_squares_averages_away() -> None:
    rng = random.Random(2)
    before, after = TRUE, [w * 3 for w in TRUE]  # the server got three times slower
    forgetful = RecursiveLeastSquares(len(TRUE), forgetting=0.98)
    plain = RecursiveLeastSquares(len(TRUE), forgetting=1.0)
    for law in (before, after):
        for _ in range(600):
            x = sample(rng)
            y = dot(law, x) + rng.gauss(0, 0.002)
            forgetful.update(x, y)
            plain.update(x, y)
    probe = sample(random.Random(3))
    assert forgetful.predict(probe) == pytest.approx(dot(after, probe), rel=0.05)
    assert plain.predict(probe) < 0.85 * dot(after, probe)  # still half in the old regime


def test_unexcited_directions_do_not_wind_up_and_state_stays_fixed_size() -> None:
    rng = random.Random(4)
    rls = RecursiveLeastSquares(len(TRUE), forgetting=0.9, prior_variance=2.0)
    for _ in range(5000):
        x = sample(rng)
        x[7] = 0.0  # the adapter feature never varies (a pool without LoRA)
        rls.update(x, dot(TRUE, x))
    # Without the cap this diagonal would be 2 · 0.9⁻⁵⁰⁰⁰ (overflow); with it, bounded.
    assert all(rls._p[i][i] <= 2.0 + 1e-9 for i in range(rls.dim))
    assert len(rls._p) == rls.dim and all(len(row) == rls.dim for row in rls._p)
    assert all(math.isfinite(w) for w in rls.weights)
    assert rls.weights[:7] == pytest.approx(TRUE[:7], abs=1e-4)


def test_non_finite_samples_are_ignored() -> None:
    rls = RecursiveLeastSquares(2)
    rls.update([1.0, 2.0], float("nan"))
    rls.update([1.0, float("inf")], 1.0)
    assert rls.samples == 0 and rls.weights == [0.0, 0.0]


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        RecursiveLeastSquares(0)
    with pytest.raises(ValueError):
        RecursiveLeastSquares(3, forgetting=0.0)
    with pytest.raises(ValueError):
        RecursiveLeastSquares(3, initial=[1.0])


def test_latency_model_starts_from_the_first_guess_and_never_predicts_negative() -> None:
    features = LatencyFeatures(4000, 4000, 0, 0, 0.0, 0, False)
    assert len(features.vector()) == len(FEATURE_NAMES) == len(TTFT_PRIOR)
    model = LatencyModel()
    fresh = model.predict(features.vector())
    assert fresh.ttft_s == pytest.approx(dot(list(TTFT_PRIOR), features.vector()))
    for _ in range(50):  # a law that extrapolates below zero for an idle endpoint
        model.learn(LatencyFeatures(8000, 8000, 10, 10, 0.5, 10, False).vector(), 0.5, 0.02)
        model.learn(LatencyFeatures(8000, 8000, 20, 20, 0.9, 20, False).vector(), 1.5, 0.04)
    idle = model.predict(LatencyFeatures(0, 0, 0, 0, 0.0, 0, False).vector())
    assert idle.ttft_s >= 0.0 and idle.tpot_s >= 0.0


def test_calibration_learns_that_an_endpoint_is_slower_than_the_pool() -> None:
    rng = random.Random(6)
    calibration = EndpointCalibration()
    fresh = calibration.predict(Prediction(0.2, 0.01, 0.0, 0.0, True))
    assert fresh.ttft_s == pytest.approx(0.2) and not fresh.from_prior  # starts as the identity
    for _ in range(60):  # a GPU 2.5 times slower, plus 5 ms of network
        pool = Prediction(rng.uniform(0.01, 0.5), rng.uniform(0.008, 0.03), 0.0, 0.0, True)
        calibration.learn(pool, 0.005 + 2.5 * pool.ttft_s, 2.5 * pool.tpot_s)
    slow = calibration.predict(Prediction(0.1, 0.02, 0.0, 0.0, True))
    assert slow.ttft_s == pytest.approx(0.255, rel=0.02)
    assert slow.tpot_s == pytest.approx(0.05, rel=0.02)
    assert calibration.samples == 60


def test_one_wild_outlier_barely_moves_a_converged_fit() -> None:
    rng = random.Random(7)
    clipped = RecursiveLeastSquares(len(TRUE), forgetting=0.99)
    raw = RecursiveLeastSquares(len(TRUE), forgetting=0.99, outlier_clip=None)
    for _ in range(500):
        x = sample(rng)
        y = dot(TRUE, x) + rng.gauss(0, 0.002)
        clipped.update(x, y)
        raw.update(x, y)
    starved = sample(rng)
    clipped.update(starved, 40.0)  # a request that waited 40 s behind adapter swaps
    raw.update(starved, 40.0)
    probe = sample(random.Random(8))
    assert clipped.predict(probe) == pytest.approx(dot(TRUE, probe), abs=0.02)
    assert abs(raw.predict(probe) - dot(TRUE, probe)) > 0.1


def test_calibration_slope_stays_within_bounds() -> None:
    flat = EndpointCalibration()
    for i in range(200):  # an endpoint whose latency ignores its load (until it starves)
        flat.learn(Prediction(0.05 + 0.01 * (i % 50), 0.01, 0.0, 0.0, True), 0.05, None)
    busy, idle = Prediction(1.0, 0.01, 0.0, 0.0, True), Prediction(0.05, 0.01, 0.0, 0.0, True)
    # Still dearer when the pool model says busy: load never stops counting.
    assert flat.predict(busy).ttft_s - flat.predict(idle).ttft_s >= 0.25 * 0.95 - 1e-9
