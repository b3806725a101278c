"""Summaries of a run: percentiles, throughput, goodput under an SLO, errors by status."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from inferpool.bench.client import RequestResult
from inferpool.durations import parse_cli_duration


@dataclass(frozen=True)
class Slo:
    """A request is "good" when it succeeded and met every bound that is set."""

    ttft: float | None = None
    tpot: float | None = None
    e2e: float | None = None

    def met(self, r: RequestResult) -> bool:
        if not r.ok:
            return False
        if self.ttft is not None and (r.ttft is None or r.ttft > self.ttft):
            return False
        if self.tpot is not None and (r.tpot or 0.0) > self.tpot:
            return False
        return self.e2e is None or r.e2e <= self.e2e

    def describe(self) -> str:
        parts = [
            f"{k}<={_fmt_s(v)}" for k, v in (("ttft", self.ttft), ("tpot", self.tpot), ("e2e", self.e2e))
        ]
        return ", ".join(
            p for p, v in zip(parts, (self.ttft, self.tpot, self.e2e), strict=True) if v is not None
        )


def parse_slo(text: str | None) -> Slo:
    """'ttft=1s,tpot=100ms' → Slo."""
    if not text:
        return Slo()
    values: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("ttft", "tpot", "e2e"):
            raise ValueError(f"bad SLO item {item!r}: use ttft=, tpot=, e2e=")
        values[key] = parse_cli_duration(value)
    return Slo(**values)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100), None for no data."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass
class Dist:
    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None

    @classmethod
    def of(cls, values: list[float]) -> Dist:
        mean = sum(values) / len(values) if values else None
        return cls(percentile(values, 50), percentile(values, 90), percentile(values, 99), mean)


@dataclass
class Summary:
    requests: int
    ok: int
    duration_s: float
    ttft: Dist
    tpot: Dist
    ntpot: Dist
    itl: Dist
    e2e: Dist
    throughput_rps: float
    output_tps: float
    goodput_rps: float
    good_fraction: float
    prefix_hit_rate: float | None
    shed: int  # 429 answers
    errors_by_status: dict[str, int] = field(default_factory=dict)
    slo: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PrefillLegs:
    """A P/D contender's prefill legs over one run, as its gateway counted them (its /metrics), and
    how much of their prompts the prefill replicas found in their own prefix caches."""

    legs: int  # requests split: a prefill leg went to a prefill endpoint
    fallbacks: int  # of those, legs that failed, so the decode endpoint prefilled locally
    # prefill replicas' vllm:prefix_cache_hits / vllm:prefix_cache_queries (tokens); None: not read
    prefix_hit_rate: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(results: list[RequestResult], duration_s: float, slo: Slo) -> Summary:
    ok = [r for r in results if r.ok]
    prompt = sum(r.prompt_tokens or 0 for r in ok if r.cached_tokens is not None)
    cached = sum(r.cached_tokens or 0 for r in ok if r.cached_tokens is not None)
    errors = Counter(str(r.status) if r.status else "connection" for r in results if not r.ok)
    good = sum(1 for r in results if slo.met(r))
    span = max(duration_s, 1e-9)
    return Summary(
        requests=len(results),
        ok=len(ok),
        duration_s=duration_s,
        ttft=Dist.of([r.ttft for r in ok if r.ttft is not None]),
        tpot=Dist.of([t for r in ok if (t := r.tpot) is not None]),
        ntpot=Dist.of([t for r in ok if (t := r.ntpot) is not None]),
        itl=Dist.of([x for r in ok for x in r.itls]),
        e2e=Dist.of([r.e2e for r in ok]),
        throughput_rps=len(ok) / span,
        output_tps=sum(r.output_tokens for r in ok) / span,
        goodput_rps=good / span,
        good_fraction=good / len(results) if results else 0.0,
        prefix_hit_rate=cached / prompt if prompt else None,
        shed=sum(1 for r in results if r.status == 429),
        errors_by_status=dict(sorted(errors.items())),
        slo=slo.describe(),
    )


def summarize_by_tag(
    results: list[RequestResult], duration_s: float, slo: Slo, tags: tuple[str, ...]
) -> dict[str, Summary]:
    """One summary per tag (e.g. criticality class), over the whole run's duration, so rates add up."""
    return {tag: summarize([r for r in results if r.tag == tag], duration_s, slo) for tag in tags}


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f}ms" if v < 1 else f"{v:.2f}s"


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"
