"""P/D disaggregation in the scheduler: llm-d's `disagg-profile-handler`.

A config with the handler names two of its scheduling profiles, `decode` and `prefill`
(llm-d's default names), and a decider plugin. Each request then runs, as llm-d does
decode-first:

1. the decode profile, over every candidate (its `decode-filter` keeps the decoders);
2. the decider, asked about the decode pick: is enough of the prompt missing from that
   endpoint's prefix cache to be worth a remote prefill?
3. when it says yes, the prefill profile (its `prefill-filter` keeps the prefillers), whose
   result rides in `SchedulingResult.prefill`; `ranked` stays the decode pick.

The prefill profile's stateful plugins learn from the prefill leg through
`on_prefill_routed` / `on_prefill_completed`, so a shared prefix index records that the
prefill endpoint now holds the prompt as well as the decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

from inferpool.scheduling.framework import Profile, Scheduler
from inferpool.scheduling.plugins.pd_decider import Decider
from inferpool.scheduling.plugins.prefix_cache import PrefixCacheScorer
from inferpool.scheduling.types import SchedulingRequest, SchedulingResult
from inferpool.state import Endpoint


class DisaggScheduler(Scheduler):
    """The decode profile's Scheduler, plus a prefill profile run when the decider says split.

    Only P/D configs build one, so aggregated pools pay nothing for it.
    """

    def __init__(
        self,
        decode: Profile,
        prefill: Profile,
        decider: Decider,
        prefix: PrefixCacheScorer | None,
    ) -> None:
        super().__init__(decode)
        self.prefill = Scheduler(prefill)
        self.decider = decider
        self._prefix = prefix  # the decode profile's prefix scorer, read for the decode pick's match

    def schedule(self, req: SchedulingRequest, candidates: Sequence[Endpoint]) -> SchedulingResult:
        result = super().schedule(req, candidates)
        if not result.ranked:
            return result
        decode = result.ranked[0].endpoint
        cached = self._prefix.cached_chars(decode) if self._prefix is not None else 0
        if not self.decider.disaggregate(req, decode, cached):
            return result
        prefill = self.prefill.schedule(req, candidates)
        result.duration_s += prefill.duration_s
        if prefill.ranked and prefill.ranked[0].endpoint is decode:
            # A server with role "both" won both picks: prefilling "remotely" on itself would
            # only add a request, so it is not a prefill candidate for this request.
            prefill.ranked = prefill.ranked[1:]
        if prefill.ranked:
            result.prefill = prefill
        return result

    def reads_answers(self, kind: str) -> bool:
        """Always: the decode answer's headers end the prefill leg (and carry its report)."""
        return True

    def plugins(self) -> list[object]:
        seen = {id(p): p for p in super().plugins()}
        for plugin in self.prefill.plugins():
            seen.setdefault(id(plugin), plugin)
        return list(seen.values())

    def on_prefill_routed(self, req: SchedulingRequest, endpoint: Endpoint) -> None:
        """The prefill leg was sent to `endpoint`: the prefill profile's plugins learn it."""
        self.prefill.on_routed(req, endpoint)

    def on_prefill_completed(self, req: SchedulingRequest, endpoint: Endpoint) -> None:
        """The prefill leg on `endpoint` ended, on any path."""
        self.prefill.on_completed(req, endpoint)

    def on_endpoint_removed(self, name: str) -> None:
        super().on_endpoint_removed(name)
        self.prefill.on_endpoint_removed(name)
