"""Per-adapter retry timing: exponential backoff with jitter.

A failed load is retried on its own timer rather than waiting for the next periodic
reconcile, and jitter keeps many syncers (one per replica) from retrying in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackoffPolicy:
    """How retry delays grow: base * factor**(n-1), capped, then scaled by a random factor in [1-jitter, 1]."""

    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 30.0
    jitter: float = 0.5

    def delay(self, failures: int, rng: random.Random) -> float:
        if failures <= 0:
            return 0.0
        raw = min(self.cap_s, self.base_s * self.factor ** (failures - 1))
        return raw * (1.0 - self.jitter * rng.random())


@dataclass
class Backoff:
    """Retry state of one adapter operation: consecutive failures and when it may run again."""

    policy: BackoffPolicy
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    not_before: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.not_before

    def failed(self, now: float) -> float:
        """Records a failure; returns the delay until the next attempt."""
        self.failures += 1
        delay = self.policy.delay(self.failures, self.rng)
        self.not_before = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.not_before = 0.0
