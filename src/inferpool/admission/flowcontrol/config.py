"""Flow control settings: the typed form of the EndpointPickerConfig `flowControl:` section.

Names and defaults follow the upstream Endpoint Picker where it has them (`maxBytes`,
`defaultRequestTTL`, `defaultPriorityBand`, `priorityBands[].priority/maxBytes/
fairnessPolicyRef/orderingPolicyRef`); `maxRequests` (global and per band) is inferpool's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

FEATURE_GATE = "flowControl"  # featureGates entry that turns flow control on, as upstream

OrderingPolicy = Literal["fcfs-ordering-policy", "edf-ordering-policy"]
FairnessPolicy = Literal["round-robin-fairness-policy", "global-strict-fairness-policy"]
FCFS: OrderingPolicy = "fcfs-ordering-policy"
EDF: OrderingPolicy = "edf-ordering-policy"
ROUND_ROBIN: FairnessPolicy = "round-robin-fairness-policy"
GLOBAL_STRICT: FairnessPolicy = "global-strict-fairness-policy"

DEFAULT_BAND_MAX_BYTES = 1_000_000_000  # upstream's per-band default (1 GB of queued request bodies)


@dataclass(frozen=True)
class BandConfig:
    """Limits and policies of one priority band (all requests of one priority, in one pool)."""

    max_bytes: int = DEFAULT_BAND_MAX_BYTES
    max_requests: int | None = None  # None: no count limit; 0: nothing of this priority may wait
    fairness: FairnessPolicy = ROUND_ROBIN  # which flow of the band goes next
    ordering: OrderingPolicy = FCFS  # which request of a flow goes next


@dataclass(frozen=True)
class FlowControlConfig:
    """Flow control for every pool of one gateway; limits apply per pool (upstream runs one EPP per pool)."""

    max_bytes: int | None = None  # queued bytes over all bands of a pool; None: only band limits
    max_requests: int | None = None  # queued requests over all bands of a pool; 0: nothing waits
    default_request_ttl_s: float | None = None  # None: wait until dispatched or the client leaves
    default_band: BandConfig = field(default_factory=BandConfig)  # template for unlisted priorities
    bands: Mapping[int, BandConfig] = field(default_factory=dict)
    recheck_interval_s: float = 0.02  # safety-net dispatch timer while anything waits
    # Dispatches this close before a scrape still count as unseen by it (the server answered
    # /metrics a little before the scrape finished).
    scrape_lag_s: float = 0.01
    retry_after_s: int = 1  # Retry-After on 429 (queue full)

    def band(self, priority: int) -> BandConfig:
        return self.bands.get(priority, self.default_band)


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_QUANTITY_SCALE = {
    None: 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def parse_quantity(value: str | int) -> int:
    """Bytes from a Kubernetes quantity ("1Gi", "500M", "1e9") or a plain integer."""
    if isinstance(value, bool):
        raise ValueError("expected a byte quantity such as 512Mi or 1000000")
    if isinstance(value, int):
        amount = value
    else:
        match = _QUANTITY.match(value.strip())
        if match is None:
            raise ValueError(f"{value!r} is not a byte quantity such as 512Mi, 1G or 1000000")
        number, scale = match.group(1), _QUANTITY_SCALE[match.group(2)]
        amount = int(number) * scale if number.isdigit() else int(float(number) * scale)
    if amount < 0:
        raise ValueError(f"byte quantity must not be negative, got {value!r}")
    return amount
