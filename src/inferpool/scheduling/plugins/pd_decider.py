"""P/D deciders: should this request's prompt be prefilled on another endpoint than its decoder?

The disaggregation profile handler (scheduling/disagg.py) runs the decode profile first and
asks its decider about the decode pick. Remote prefill pays a second request and a KV
transfer; it wins only when the decoder would otherwise compute a long stretch of prompt
itself, so llm-d's `prefix-based-pd-decider` splits when the prompt's part NOT already cached
on the decode pick reaches `nonCachedTokens`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import Field

from inferpool.scheduling.plugins.params import Params
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


@runtime_checkable
class Decider(Protocol):
    """Says whether to run the prefill profile for `req`, given its decode pick."""

    name: str

    def disaggregate(self, req: SchedulingRequest, decode: Endpoint, cached_chars: int) -> bool:
        """`cached_chars`: leading prompt characters the decode pick holds in its prefix cache."""
        ...


def non_cached_tokens(req: SchedulingRequest, cached_chars: int) -> int:
    """Prompt tokens the decode pick would still have to compute itself.

    The prefix index counts characters and the request carries a token estimate, so the
    cached share of the characters scales the token count (right for token-id prompts too,
    whose text is not one character per token).
    """
    prompt_chars = len(req.prompt)
    if prompt_chars <= 0 or cached_chars <= 0:
        return req.prompt_tokens_estimate
    cached_share = min(1.0, cached_chars / prompt_chars)
    return round(req.prompt_tokens_estimate * (1.0 - cached_share))


class PrefixBasedPDDeciderParams(Params):
    non_cached_tokens: int = Field(
        default=0, ge=0, description="split when at least this many prompt tokens are not cached; 0 = never"
    )
    prompt_tokens: int = Field(
        default=0, ge=0, description="never split prompts shorter than this many tokens; 0 = no such gate"
    )


@dataclass
class PrefixBasedPDDecider:
    """llm-d's `prefix-based-pd-decider`, over inferpool's approximate prefix index."""

    params: PrefixBasedPDDeciderParams = field(default_factory=PrefixBasedPDDeciderParams)
    name: str = "prefix-based-pd-decider"

    def disaggregate(self, req: SchedulingRequest, decode: Endpoint, cached_chars: int) -> bool:
        threshold = self.params.non_cached_tokens
        if threshold == 0:
            return False
        prompt_tokens = req.prompt_tokens_estimate
        if prompt_tokens < self.params.prompt_tokens or prompt_tokens < threshold:
            return False
        return non_cached_tokens(req, cached_chars) >= threshold


@dataclass
class AlwaysDisaggPDDecider:
    """llm-d's `always-disagg-pd-decider`: split every request (tests, and fleets tuned for it)."""

    name: str = "always-disagg-pd-decider"

    def disaggregate(self, req: SchedulingRequest, decode: Endpoint, cached_chars: int) -> bool:
        return True


@dataclass
class NonCachedCharsDecider:
    """The decision of llm-d's first `pd-profile-handler` (its `threshold` parameter).

    That handler compared the prompt's non-cached length in characters, not tokens, with
    `threshold`, and split when it was not below it; kept so such configs mean what they said.
    """

    threshold: int
    name: str = "pd-profile-handler.threshold"

    def disaggregate(self, req: SchedulingRequest, decode: Endpoint, cached_chars: int) -> bool:
        return len(req.prompt) - cached_chars >= self.threshold
