"""Shared score shapes, so every load scorer normalizes the same way."""

from __future__ import annotations

import math
from collections.abc import Sequence


def inverse_minmax(values: Sequence[float]) -> list[float]:
    """Lowest value → 1, highest → 0, linear between; all equal → 1 for everyone.

    Min-max across the candidates (as the upstream queue scorer) rather than an absolute
    scale, so the scorer separates endpoints whatever the absolute load is. One score per
    value, in order, each in [0, 1].
    """
    lo = min(values, default=0.0)
    hi = max(values, default=0.0)
    span = hi - lo
    if not span > 0:  # all equal (or NaN): no preference
        return [1.0] * len(values)
    column = [(hi - v) / span for v in values]
    # Counts are ints and always land in [0, 1]; a NaN or infinite float would not.
    if not math.isfinite(sum(values)):
        column = [c if 0.0 <= c <= 1.0 else (1.0 if c > 1.0 else 0.0) for c in column]
    return column
