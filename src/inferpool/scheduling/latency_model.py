"""Online latency models: recursive least squares with forgetting, small enough for the request path.

The gateway sees every request's TTFT and token counts, and the endpoint's state when it was
routed; a linear model over that state, refitted after every request, predicts how the next
request would fare on each endpoint. Recursive least squares (RLS) gives the exact
least-squares fit of all samples so far in O(d²) per sample, with no sample history kept;
the forgetting factor discounts old samples so the fit follows a server whose behaviour
changes (another model version, a noisy neighbour).

Pure Python: d is about ten, where list arithmetic beats numpy's per-call overhead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_RESIDUAL_DECAY = 0.99

# Feature order of `LatencyFeatures.vector()`; the models' weights follow it.
FEATURE_NAMES = (
    "bias",
    "uncached_ktokens",
    "prompt_ktokens",
    "waiting",
    "running",
    "kv_usage",
    "in_flight",
    "adapter_cold",
)


@dataclass(frozen=True, slots=True)
class LatencyFeatures:
    """An endpoint's state and the request's shape at routing time, in units that keep weights O(1)."""

    uncached_tokens: float  # prompt tokens not expected in the endpoint's prefix cache
    prompt_tokens: float
    waiting: int  # scraped waiting queue
    running: int  # scraped running batch
    kv_usage: float  # scraped, 0..1
    in_flight: int  # this gateway's unfinished requests on the endpoint (never stale)
    adapter_cold: bool  # a LoRA request whose adapter is not active there

    def vector(self) -> list[float]:
        return [
            1.0,
            self.uncached_tokens / 1000.0,
            self.prompt_tokens / 1000.0,
            float(self.waiting),
            float(self.running),
            self.kv_usage,
            float(self.in_flight),
            1.0 if self.adapter_cold else 0.0,
        ]


class RecursiveLeastSquares:
    """y ≈ w·x, updated one sample at a time; memory O(d²) whatever the number of samples.

    `forgetting` λ < 1 weights a sample seen n updates ago by λⁿ (effective memory ≈ 1/(1−λ)
    samples). `prior_variance` is how far the data may move each weight from `initial`
    (ridge regression towards `initial` with strength 1/prior_variance). A residual beyond
    `outlier_clip` typical errors counts as that many (None: never clipped), in the fit and in
    the typical error alike, so a burst of wild samples cannot widen its own band; a lasting
    change still moves the fit (by that much per sample) and widens the band as it goes.
    Directions that the data never excites would grow as λ⁻ⁿ under forgetting ("wind-up");
    each diagonal of the covariance is capped at `prior_variance` by a congruence scaling,
    which keeps it positive definite.
    """

    def __init__(
        self,
        dim: int,
        *,
        forgetting: float = 0.995,
        prior_variance: float = 1.0,
        initial: Sequence[float] | None = None,
        outlier_clip: float | None = 4.0,
    ) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        if not 0.0 < forgetting <= 1.0:
            raise ValueError("forgetting must be in (0, 1]")
        if prior_variance <= 0.0:
            raise ValueError("prior_variance must be positive")
        self.dim = dim
        self.forgetting = forgetting
        self.outlier_clip = outlier_clip
        self.prior_variance = prior_variance
        self.weights = list(initial) if initial is not None else [0.0] * dim
        if len(self.weights) != dim:
            raise ValueError(f"initial has {len(self.weights)} weights, expected {dim}")
        self._p = [[prior_variance if i == j else 0.0 for j in range(dim)] for i in range(dim)]
        self.samples = 0
        self._residual_sq = 0.0  # forgetting-weighted mean of squared a-priori residuals
        self._residual_weight = 0.0

    def predict(self, x: Sequence[float]) -> float:
        return math.fsum(w * v for w, v in zip(self.weights, x, strict=True))

    @property
    def residual_std(self) -> float:
        """Typical size of the error on a new sample: RMS of recent a-priori residuals.

        Recent (memory ≈ 100 samples, or the model's own if shorter) so that the large errors
        made while the fit was still converging do not linger in it.
        """
        if self._residual_weight == 0.0:
            return 0.0
        return math.sqrt(self._residual_sq / self._residual_weight)

    def update(self, x: Sequence[float], y: float) -> None:
        """Fold one observation in (non-finite ones are ignored: one bad sample must not poison the fit)."""
        if not math.isfinite(y) or not all(math.isfinite(v) for v in x):
            return
        lam = self.forgetting
        p = self._p
        px = [math.fsum(row[j] * x[j] for j in range(self.dim)) for row in p]
        denom = lam + math.fsum(a * b for a, b in zip(x, px, strict=True))
        if not denom > 0.0:
            return
        error = y - self.predict(x)
        step = error
        if self.outlier_clip is not None and self.samples >= 2 * self.dim and self.residual_std > 0:
            # Huber-style: a sample far off the fit (a request starved behind LoRA swaps for
            # 40 s) moves the weights no more than one a few typical errors off would.
            limit = self.outlier_clip * self.residual_std
            step = max(-limit, min(limit, error))
        gain = [v / denom for v in px]
        self.weights = [w + g * step for w, g in zip(self.weights, gain, strict=True)]
        # P ← (P − k·(Px)ᵀ) / λ, written on the upper triangle and mirrored: rounding must not
        # make P asymmetric, or it drifts from positive definite over many updates.
        inv = 1.0 / lam
        for i in range(self.dim):
            gi = gain[i]
            row = p[i]
            for j in range(i, self.dim):
                row[j] = p[j][i] = (row[j] - gi * px[j]) * inv
        self._cap_covariance()
        decay = min(lam, _RESIDUAL_DECAY)
        self._residual_sq = decay * self._residual_sq + step * step
        self._residual_weight = decay * self._residual_weight + 1.0
        self.samples += 1

    def _cap_covariance(self) -> None:
        p, cap = self._p, self.prior_variance
        scale = [math.sqrt(cap / p[i][i]) if p[i][i] > cap else 1.0 for i in range(self.dim)]
        if all(s == 1.0 for s in scale):
            return
        for i in range(self.dim):
            row = p[i]
            for j in range(self.dim):
                row[j] *= scale[i] * scale[j]


# A rough first guess, so that routing is sensible before the first sample arrives: about
# 30 ms per 1k uncached prompt tokens and 20 ms per queued or in-flight request for TTFT, a
# 10 ms decode step growing with the batch for TPOT. The data overrides it within tens of samples.
TTFT_PRIOR = (0.02, 0.03, 0.0, 0.02, 0.0, 0.0, 0.02, 0.01)
TPOT_PRIOR = (0.01, 0.0, 0.0, 0.0, 0.0002, 0.0, 0.0002, 0.0)


@dataclass(frozen=True, slots=True)
class Prediction:
    ttft_s: float
    tpot_s: float
    ttft_std_s: float  # the model's typical error, for a safety margin on SLO checks
    tpot_std_s: float
    from_prior: bool  # the pool model answered alone (the endpoint had too few samples to calibrate it)


class LatencyModel:
    """TTFT and TPOT regressions over the whole feature vector, trained on every endpoint of a pool."""

    def __init__(
        self,
        *,
        forgetting: float = 0.995,
        prior_variance: float = 1.0,
        ttft_initial: Sequence[float] | None = None,
        tpot_initial: Sequence[float] | None = None,
    ) -> None:
        """A fresh model; `*_initial` are its first-guess weights (default: the built-in guesses)."""
        dim = len(FEATURE_NAMES)
        self.ttft = RecursiveLeastSquares(
            dim, forgetting=forgetting, prior_variance=prior_variance, initial=ttft_initial or TTFT_PRIOR
        )
        self.tpot = RecursiveLeastSquares(
            dim, forgetting=forgetting, prior_variance=prior_variance, initial=tpot_initial or TPOT_PRIOR
        )

    @property
    def samples(self) -> int:
        return self.ttft.samples

    def learn(self, x: Sequence[float], ttft_s: float, tpot_s: float | None) -> None:
        self.ttft.update(x, ttft_s)
        if tpot_s is not None:
            self.tpot.update(x, tpot_s)

    def predict(self, x: Sequence[float], *, from_prior: bool = False) -> Prediction:
        # Latencies are positive; a linear fit can dip below zero far from its data.
        return Prediction(
            max(self.ttft.predict(x), 0.0),
            max(self.tpot.predict(x), 0.0),
            self.ttft.residual_std,
            self.tpot.residual_std,
            from_prior,
        )


class EndpointCalibration:
    """One endpoint's correction of the pool model: y ≈ a + b · (pool prediction), for TTFT and TPOT.

    Two weights per quantity rather than a full model of its own: it settles within tens of
    samples, and it bends the pool's fit instead of replacing it, so the endpoint keeps the
    pool's knowledge of states it has rarely been in. A full per-endpoint fit of every weight,
    trained on the narrow range of states one endpoint happens to see, extrapolated badly in
    virtual time (a slow replica predicted fast when busy, then flooded). A GPU half as fast
    shows as b ≈ 2; a farther network as a > 0. Fitted in units of a typical value (100 ms
    TTFT, 10 ms TPOT) so that the prior's pull is the same for both.
    """

    TTFT_UNIT = 0.1
    TPOT_UNIT = 0.01

    def __init__(self, *, forgetting: float = 0.995, prior_variance: float = 1.0) -> None:
        self.last_seen = 0  # the pool model's sample count when this endpoint last taught it
        self.ttft = RecursiveLeastSquares(
            2, forgetting=forgetting, prior_variance=prior_variance, initial=(0, 1)
        )
        self.tpot = RecursiveLeastSquares(
            2, forgetting=forgetting, prior_variance=prior_variance, initial=(0, 1)
        )

    @property
    def samples(self) -> int:
        return self.ttft.samples

    def learn(self, pool: Prediction, ttft_s: float, tpot_s: float | None) -> None:
        """`pool` is the pool model's prediction for the sample, made before the pool learned from it."""
        u = self.TTFT_UNIT
        self.ttft.update((1.0, pool.ttft_s / u), ttft_s / u)
        _bound_slope(self.ttft)
        if tpot_s is not None:
            u = self.TPOT_UNIT
            self.tpot.update((1.0, pool.tpot_s / u), tpot_s / u)
            _bound_slope(self.tpot)

    def predict(self, pool: Prediction, trust: float = 1.0) -> Prediction:
        """The calibrated prediction, blended back towards the pool's by `1 − trust`.

        Trust fades while an endpoint gets no traffic: a calibration that made it look slow
        would otherwise keep it idle, and so never be corrected (a replica lost for good).
        """
        ut, up = self.TTFT_UNIT, self.TPOT_UNIT
        mix = max(0.0, min(trust, 1.0))
        ttft = max(self.ttft.predict((1.0, pool.ttft_s / ut)) * ut, 0.0)
        tpot = max(self.tpot.predict((1.0, pool.tpot_s / up)) * up, 0.0)
        return Prediction(
            mix * ttft + (1 - mix) * pool.ttft_s,
            mix * tpot + (1 - mix) * pool.tpot_s,
            mix * self.ttft.residual_std * ut + (1 - mix) * pool.ttft_std_s,
            mix * self.tpot.residual_std * up + (1 - mix) * pool.tpot_std_s,
            from_prior=False,
        )


# A calibration bends the pool model, it does not replace it: a slope near 0 would make the
# endpoint look equally fast however loaded (seen in virtual time: one replica drew every
# request of a LoRA-heavy mix until it starved them), a huge one would shut it out.
SLOPE_BOUNDS = (0.25, 4.0)


def _bound_slope(rls: RecursiveLeastSquares) -> None:
    low, high = SLOPE_BOUNDS
    rls.weights[1] = max(low, min(high, rls.weights[1]))
