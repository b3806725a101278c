"""Shared score shapes, so every load scorer normalizes the same way."""

from __future__ import annotations

from collections.abc import Sequence

from inferpool.state import Endpoint


def inverse_minmax(endpoints: Sequence[Endpoint], values: Sequence[float]) -> dict[Endpoint, float]:
    """Lowest value → 1, highest → 0, linear between; all equal → 1 for everyone.

    Min-max across the candidates (as the upstream queue scorer) rather than an absolute
    scale, so the scorer separates endpoints whatever the absolute load is.
    """
    lo = min(values, default=0.0)
    hi = max(values, default=0.0)
    span = hi - lo
    if not span > 0:  # all equal (or NaN): no preference
        return dict.fromkeys(endpoints, 1.0)
    return {e: (hi - v) / span for e, v in zip(endpoints, values, strict=True)}
