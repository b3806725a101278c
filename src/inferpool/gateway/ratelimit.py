"""Per-key request and token limits over a sliding one-minute window.

Requests are counted when admitted; tokens are charged after the answer, from the usage the
model server reported (prompt + completion), because nobody knows the completion length
up front. A key is refused tokens once its window is spent, so it can overshoot its TPM by
at most the requests it had in flight at that moment.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from inferpool.errors import InferenceError
from inferpool.gateway.auth import ApiKey

WINDOW_S = 60.0
IDLE_FORGET_S = 600.0  # windows idle this long are dropped, so the table stays bounded


@dataclass
class SlidingWindow:
    """Amounts with the time they happened; the sum over the last `window_s` seconds."""

    window_s: float = WINDOW_S
    _events: deque[tuple[float, int]] = field(default_factory=deque)
    _total: int = 0

    def _expire(self, now: float) -> None:
        edge = now - self.window_s
        while self._events and self._events[0][0] <= edge:
            self._total -= self._events.popleft()[1]

    def used(self, now: float) -> int:
        self._expire(now)
        return self._total

    def add(self, now: float, amount: int) -> None:
        if amount <= 0:
            return
        self._expire(now)
        self._events.append((now, amount))
        self._total += amount

    def wait_until_below(self, now: float, limit: int, need: int = 1) -> float:
        """Seconds until `used + need <= limit` again (0 if it already is)."""
        self._expire(now)
        excess = self._total + need - limit
        if excess <= 0:
            return 0.0
        for t, amount in self._events:
            excess -= amount
            if excess <= 0:
                return max(0.0, t + self.window_s - now)
        return self.window_s

    def last(self) -> float | None:
        return self._events[-1][0] if self._events else None


@dataclass
class _KeyWindows:
    requests: SlidingWindow = field(default_factory=SlidingWindow)
    tokens: SlidingWindow = field(default_factory=SlidingWindow)
    touched: float = 0.0


@dataclass(frozen=True)
class Allowance:
    """What a key has left after admission; becomes the `x-ratelimit-*` response headers."""

    limit_requests: int | None
    remaining_requests: int | None
    limit_tokens: int | None
    remaining_tokens: int | None
    reset_requests_s: float = 0.0
    reset_tokens_s: float = 0.0

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.limit_requests is not None and self.remaining_requests is not None:
            out["x-ratelimit-limit-requests"] = str(self.limit_requests)
            out["x-ratelimit-remaining-requests"] = str(self.remaining_requests)
            out["x-ratelimit-reset-requests"] = f"{self.reset_requests_s:.3f}s"
        if self.limit_tokens is not None and self.remaining_tokens is not None:
            out["x-ratelimit-limit-tokens"] = str(self.limit_tokens)
            out["x-ratelimit-remaining-tokens"] = str(self.remaining_tokens)
            out["x-ratelimit-reset-tokens"] = f"{self.reset_tokens_s:.3f}s"
        return out


class RateLimiter:
    """RPM and TPM per key name; `clock` is injectable so tests can run minutes in microseconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S) -> None:
        self.clock = clock
        self.window_s = window_s
        self._keys: dict[str, _KeyWindows] = {}
        self._last_sweep = 0.0

    def _windows(self, name: str, now: float) -> _KeyWindows:
        w = self._keys.get(name)
        if w is None:
            w = self._keys[name] = _KeyWindows(SlidingWindow(self.window_s), SlidingWindow(self.window_s))
        w.touched = now
        if now - self._last_sweep > IDLE_FORGET_S:
            self._last_sweep = now
            for stale in [k for k, v in self._keys.items() if now - v.touched > IDLE_FORGET_S]:
                del self._keys[stale]
        return w

    def allowance(self, key: ApiKey) -> Allowance:
        now = self.clock()
        w = self._windows(key.name, now)
        return self._allowance(key, w, now)

    def _allowance(self, key: ApiKey, w: _KeyWindows, now: float) -> Allowance:
        rem_req = max(0, key.rpm - w.requests.used(now)) if key.rpm is not None else None
        rem_tok = max(0, key.tpm - w.tokens.used(now)) if key.tpm is not None else None
        return Allowance(
            key.rpm,
            rem_req,
            key.tpm,
            rem_tok,
            w.requests.wait_until_below(now, key.rpm, 1) if key.rpm is not None else 0.0,
            w.tokens.wait_until_below(now, key.tpm, 1) if key.tpm is not None else 0.0,
        )

    def admit(self, key: ApiKey) -> Allowance:
        """Count one request for `key`, or raise a 429 InferenceError with Retry-After."""
        now = self.clock()
        w = self._windows(key.name, now)
        waits: list[tuple[float, str]] = []
        if key.rpm is not None and w.requests.used(now) + 1 > key.rpm:
            waits.append((w.requests.wait_until_below(now, key.rpm, 1), f"{key.rpm} requests per minute"))
        if key.tpm is not None and w.tokens.used(now) >= key.tpm:
            waits.append((w.tokens.wait_until_below(now, key.tpm, 1), f"{key.tpm} tokens per minute"))
        if waits:
            wait, what = max(waits)
            allowance = self._allowance(key, w, now)
            headers = allowance.headers()
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
            raise InferenceError(
                429,
                f"Rate limit reached for key {key.name!r}: {what}. Try again in {wait:.1f}s.",
                err_type="rate_limit_exceeded",
                headers=headers,
            )
        w.requests.add(now, 1)
        return self._allowance(key, w, now)

    def charge(self, key: ApiKey, tokens: int) -> None:
        """Charge the tokens a finished request used (prompt + completion)."""
        if key.tpm is None or tokens <= 0:
            return
        now = self.clock()
        self._windows(key.name, now).tokens.add(now, tokens)

    def tracked_keys(self) -> int:
        return len(self._keys)
