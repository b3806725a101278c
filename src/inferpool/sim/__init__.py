"""A vLLM-compatible model-server simulator with a real engine model (`inferpool sim`)."""

from __future__ import annotations

from inferpool.sim.config import SimConfig
from inferpool.sim.engine import Engine, SimRequest, StepReport, TokenEvent
from inferpool.sim.nixl import INTERCONNECTS, KVTransferConfig
from inferpool.sim.profile import HardwareProfile, load_profile
from inferpool.sim.replica import SimFleet, SimReplica

__all__ = [
    "INTERCONNECTS",
    "Engine",
    "HardwareProfile",
    "KVTransferConfig",
    "SimConfig",
    "SimFleet",
    "SimReplica",
    "SimRequest",
    "StepReport",
    "TokenEvent",
    "load_profile",
]
