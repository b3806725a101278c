"""Prompt and response screening (the Model Armor role): PII, secrets, injection, deny-list, hook."""

from inferpool.guard.findings import Finding
from inferpool.guard.policy import Action, CheckConfig, GuardConfig, HookConfig, Stage
from inferpool.guard.screen import Screener, Verdict

__all__ = [
    "Action",
    "CheckConfig",
    "Finding",
    "GuardConfig",
    "HookConfig",
    "Screener",
    "Stage",
    "Verdict",
]
