"""Flow control: queue requests inside the gateway while their pool is saturated.

Strict priority between bands, fairness between flows inside a band, FCFS or EDF inside a
flow, per-band and per-pool limits, a queue TTL, and dispatch as soon as the pool has room
(see docs/flow-control.md). Turned on by `featureGates: [flowControl]` in the
EndpointPickerConfig.
"""

from inferpool.admission.flowcontrol.config import (
    DEFAULT_BAND_MAX_BYTES,
    EDF,
    FCFS,
    FEATURE_GATE,
    GLOBAL_STRICT,
    ROUND_ROBIN,
    BandConfig,
    FairnessPolicy,
    FlowControlConfig,
    OrderingPolicy,
    parse_quantity,
)
from inferpool.admission.flowcontrol.controller import (
    DispatchGate,
    FlowControlError,
    FlowController,
    FlowListener,
    FlowOutcome,
    Gate,
    Grant,
    QueueStats,
    build_flow_controller,
    flow_id,
)
from inferpool.admission.flowcontrol.queues import (
    DISPATCHED,
    EVICTED_CANCELLED,
    EVICTED_OTHER,
    EVICTED_TTL,
    OUTCOMES,
    REJECTED_CAPACITY,
    Outcome,
    PoolQueue,
    QueuedRequest,
)

__all__ = [
    "DEFAULT_BAND_MAX_BYTES",
    "DISPATCHED",
    "EDF",
    "EVICTED_CANCELLED",
    "EVICTED_OTHER",
    "EVICTED_TTL",
    "FCFS",
    "FEATURE_GATE",
    "GLOBAL_STRICT",
    "OUTCOMES",
    "REJECTED_CAPACITY",
    "ROUND_ROBIN",
    "BandConfig",
    "DispatchGate",
    "FairnessPolicy",
    "FlowControlConfig",
    "FlowControlError",
    "FlowController",
    "FlowListener",
    "FlowOutcome",
    "Gate",
    "Grant",
    "OrderingPolicy",
    "Outcome",
    "PoolQueue",
    "QueueStats",
    "QueuedRequest",
    "build_flow_controller",
    "flow_id",
    "parse_quantity",
]
