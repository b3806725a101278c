"""The admission rule: who is turned away when the pool is full, and with which status.

By priority (v1alpha2 criticality maps Critical=1, Standard=0, Sheddable=-1):
  * priority < 0 (Sheddable): 429 as soon as the pool is saturated (mean ratio >= 1);
  * priority = 0 (Standard): admitted unless EVERY candidate endpoint is saturated AND the
    pool ratio reaches `standard_ceiling` (1.5): Standard degrades only after Sheddable has;
  * priority > 0 (Critical): never shed by admission.
No ready endpoint is a 503 for everyone; a scheduler profile that refuses a request
(legacy-v0.3) is a 429. Every refusal is counted by reason. With flow control on, the
Director asks for no saturation shedding (`shed_saturated=False`): saturated pools queue
instead (admission/flowcontrol/).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from inferpool.admission.saturation import SaturationConfig, SaturationDetector, SaturationSnapshot
from inferpool.errors import InferenceError
from inferpool.state import Endpoint

ShedReason = Literal["no-ready-endpoints", "saturated-sheddable", "saturated-standard", "scheduler-shed"]
SHED_REASONS: tuple[ShedReason, ...] = (
    "no-ready-endpoints",
    "saturated-sheddable",
    "saturated-standard",
    "scheduler-shed",
)


@dataclass(frozen=True)
class AdmissionConfig:
    enabled: bool = True  # False: never shed for saturation (503 for an empty pool still applies)
    saturation: SaturationConfig = field(default_factory=SaturationConfig)
    standard_ceiling: float = 1.5  # pool ratio at which Standard is shed (when all endpoints are saturated)
    retry_after_s: int = 1  # Retry-After on 429s


# a Struct: built per request, and faster to build than a frozen dataclass
class AdmissionDecision(msgspec.Struct, frozen=True):
    admitted: bool
    reason: ShedReason | None
    snapshot: SaturationSnapshot


class ShedError(InferenceError):
    """A request refused by admission; `reason` is the counter it was counted under."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: ShedReason,
        headers: dict[str, str] | None = None,
        snapshot: SaturationSnapshot | None = None,
    ):
        super().__init__(status, message, headers=headers)
        self.reason: ShedReason = reason
        self.snapshot = snapshot


class Admission:
    """Applies the rule above and counts refusals; one instance per gateway process."""

    def __init__(self, config: AdmissionConfig | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config or AdmissionConfig()
        self.detector = SaturationDetector(self.config.saturation, clock)
        self._shed: dict[ShedReason, int] = dict.fromkeys(SHED_REASONS, 0)

    @property
    def shed_counts(self) -> dict[ShedReason, int]:
        """Refusals so far, by reason (a copy)."""
        return dict(self._shed)

    def decide(
        self, endpoints: Sequence[Endpoint], priority: int, shed_saturated: bool = True
    ) -> AdmissionDecision:
        """The decision for one request over its candidate endpoints; counts nothing."""
        snapshot = self.detector.snapshot(endpoints)
        if not endpoints:
            return AdmissionDecision(False, "no-ready-endpoints", snapshot)
        if self.config.enabled and shed_saturated and priority <= 0:
            if priority < 0 and snapshot.pool_saturated:
                return AdmissionDecision(False, "saturated-sheddable", snapshot)
            if priority == 0 and snapshot.all_saturated and snapshot.ratio >= self.config.standard_ceiling:
                return AdmissionDecision(False, "saturated-standard", snapshot)
        return AdmissionDecision(True, None, snapshot)

    def admit(
        self, pool: str, endpoints: Sequence[Endpoint], priority: int, shed_saturated: bool = True
    ) -> AdmissionDecision:
        """decide(), raising ShedError (and counting it) when the request is refused."""
        decision = self.decide(endpoints, priority, shed_saturated)
        if decision.reason == "no-ready-endpoints":
            raise self._refuse(
                503, f"no ready endpoints in pool {pool}", "no-ready-endpoints", decision.snapshot
            )
        if decision.reason is not None:
            snap = decision.snapshot
            raise self._refuse(
                429,
                f"pool {pool} is saturated (load ratio {snap.ratio:.2f}, {snap.saturated}/{snap.endpoints} "
                f"endpoints saturated); request with priority {priority} shed",
                decision.reason,
                snap,
            )
        return decision

    def scheduler_shed(self, pool: str, profile: str) -> ShedError:
        """The error for a request the scheduler profile refused (counted)."""
        return self._refuse(
            429, f"pool {pool} is saturated: scheduler profile {profile} shed the request", "scheduler-shed"
        )

    def _refuse(
        self, status: int, message: str, reason: ShedReason, snapshot: SaturationSnapshot | None = None
    ) -> ShedError:
        self._shed[reason] += 1
        headers = {"retry-after": str(self.config.retry_after_s)} if status == 429 else None
        return ShedError(status, message, reason, headers, snapshot)
