"""Typed guard configuration: which checks run on prompts and responses, and what each does."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    BLOCK = "block"  # 400 content_filter (streams: a final error event, then the stream closes)
    REDACT = "redact"  # replace the matched text with [REDACTED:<kind>] and go on
    LOG = "log"  # only record the finding


class Stage(StrEnum):
    PROMPT = "prompt"
    RESPONSE = "response"


CHECKS = ("pii", "secrets", "injection", "denylist")

# Between a request's tool definitions, screened as one text (`Screener.screen(definitions=True)`):
# a paragraph apart, so a sentence or a line never spans two, and each is scored on its own
DEFINITIONS_APART = "\n\n"


@dataclass(frozen=True)
class CheckConfig:
    check: str  # one of CHECKS
    action: Action = Action.BLOCK
    stages: frozenset[Stage] = frozenset({Stage.PROMPT, Stage.RESPONSE})
    pii_types: tuple[str, ...] = ()  # empty: every PII type
    terms: tuple[str, ...] = ()  # deny-list terms
    phone_regions: tuple[str, ...] = ("US",)  # pii: where national-format phone numbers are read
    base64_entropy_limit: float = 4.5  # secrets: bits per character above which a quoted string is a key
    hex_entropy_limit: float = 3.0
    threshold: float = 0.5  # injection: the score from which the check acts
    # injection: the score from which its reading of tool definitions for tool poisoning acts
    # (None: `threshold`; 1: never, as no score reaches it)
    tool_threshold: float | None = None


@dataclass(frozen=True)
class HookConfig:
    """An external screener: POST {"stage", "text", "model"} -> {"action": "allow"|"block"|"redact", ...}."""

    url: str
    timeout_s: float = 1.0
    fail_open: bool = False  # on timeout or error: True lets the text through, False blocks it
    stages: frozenset[Stage] = frozenset({Stage.PROMPT})
    # A streamed answer is sent to it each time this many more characters of complete words have
    # streamed, and whole at the end (not once per word: each call is a round trip)
    stream_step_chars: int = 256


@dataclass(frozen=True)
class GuardConfig:
    name: str = "guard"
    checks: tuple[CheckConfig, ...] = ()
    hook: HookConfig | None = None
    models: tuple[str, ...] = ()  # incoming model names it applies to; empty: all
    stream_window_chars: int = 4096  # how much streamed text is re-screened as tokens arrive
    # Streamed answers: screened characters held back behind the word being streamed (0: off).
    stream_hold_back_chars: int = 0

    def applies_to(self, model: str) -> bool:
        return not self.models or model in self.models

    def screens(self, stage: Stage) -> bool:
        return any(stage in c.stages for c in self.checks) or (
            self.hook is not None and stage in self.hook.stages
        )


DEFAULT_CHECKS = (
    CheckConfig("pii", Action.REDACT),
    CheckConfig("secrets", Action.BLOCK),
    CheckConfig("injection", Action.BLOCK, frozenset({Stage.PROMPT})),
)


def default_config() -> GuardConfig:
    """The policy `spec: {}` means: block secrets and injection, redact PII."""
    return GuardConfig("default", DEFAULT_CHECKS)


__all__ = ["CHECKS", "Action", "CheckConfig", "GuardConfig", "HookConfig", "Stage", "default_config"]
