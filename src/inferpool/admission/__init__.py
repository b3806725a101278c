"""Admission: saturation detection and priority-based shedding before scheduling."""

from inferpool.admission.admit import (
    SHED_REASONS,
    Admission,
    AdmissionConfig,
    AdmissionDecision,
    ShedError,
    ShedReason,
)
from inferpool.admission.saturation import SaturationConfig, SaturationDetector, SaturationSnapshot

__all__ = [
    "SHED_REASONS",
    "Admission",
    "AdmissionConfig",
    "AdmissionDecision",
    "SaturationConfig",
    "SaturationDetector",
    "SaturationSnapshot",
    "ShedError",
    "ShedReason",
]
