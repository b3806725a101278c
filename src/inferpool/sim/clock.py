"""Engine clocks: scaled real time for servers, virtual time for discrete-event runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RealClock:
    """Simulated seconds run `speed` times faster than the wall clock."""

    speed: float = 1.0
    _origin: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self.speed

    def real_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self.speed


@dataclass
class VirtualClock:
    """Time moves only when the engine says so: steps cost nothing in wall time."""

    t: float = 0.0

    def now(self) -> float:
        return self.t
