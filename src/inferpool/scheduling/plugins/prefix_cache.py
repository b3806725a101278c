"""prefix-cache-scorer: prefer the endpoint most likely to hold the prompt's prefix in its KV cache.

Approximate, like upstream: the index learns from routing decisions (`on_routed`), not
from the servers. score = leading blocks matched / blocks hashed, except on overloaded
endpoints (see `overloaded`), where it is 0 so that load decides.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import compress, repeat

from pydantic import Field

from inferpool.scheduling.plugins.params import Params
from inferpool.scheduling.plugins.prefix_index import PrefixIndex, block_hashes
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint

# Requests scored but not yet routed whose hashes we keep, so `on_routed` need not rehash.
_PENDING_LIMIT = 4096


class PrefixCacheParams(Params):
    hash_block_size: int = Field(default=64, gt=0, description="characters per hashed block")
    max_prefix_blocks_to_match: int = Field(
        default=256, gt=0, description="blocks hashed per prompt (from the start)"
    )
    lru_capacity_per_server: int = Field(
        default=31250, gt=0, description="blocks remembered when the cache size is unknown"
    )
    max_capacity_per_server: int = Field(
        default=262144, gt=0, description="hard cap on blocks remembered per endpoint"
    )
    chars_per_token: float = Field(
        default=4.0, gt=0, description="to turn vLLM's cache size in tokens into characters"
    )
    # Anti-hotspot guard: an endpoint whose load (queue + in-flight) exceeds the least loaded
    # candidate's by more than balanceAbsThreshold AND is more than balanceRelThreshold times it,
    # or whose KV cache is above kvCacheThreshold, gets prefix score 0.
    balance_abs_threshold: int = Field(default=8, ge=0)
    balance_rel_threshold: float = Field(default=1.5, ge=1.0)
    kv_cache_threshold: float = Field(default=0.9, gt=0.0)


def overloaded(load: int, least_load: int, kv: float, params: PrefixCacheParams) -> bool:
    """The anti-hotspot rule: is this endpoint too busy for cache affinity to count?"""
    if kv > params.kv_cache_threshold:
        return True
    return (
        load - least_load > params.balance_abs_threshold and load > params.balance_rel_threshold * least_load
    )


@dataclass
class PrefixCacheScorer:
    params: PrefixCacheParams = field(default_factory=PrefixCacheParams)
    name: str = "prefix-cache-scorer"
    index: PrefixIndex = field(default_factory=PrefixIndex)
    _pending: OrderedDict[str, tuple[str, str, list[int]]] = field(default_factory=OrderedDict)
    # The index match of the request scored last (endpoint name -> leading blocks held), kept
    # so the P/D decider, which runs right after the decode profile scored, need not match again.
    _last_match: dict[str, int] | None = field(default=None, repr=False)

    def hashes(self, req: SchedulingRequest) -> list[int]:
        """The request's block hashes, computed once per request and reused by `on_routed`.

        Keyed by request id, but checked against the prompt and model too: client-chosen
        ids can repeat, and a stale entry must not stand in for another prompt.
        """
        cached = self._pending.get(req.request_id)
        if (
            cached is not None
            and cached[1] == req.target_model
            and (cached[0] is req.prompt or cached[0] == req.prompt)
        ):
            return cached[2]
        p = self.params
        hashes = block_hashes(req.prompt, req.target_model, p.hash_block_size, p.max_prefix_blocks_to_match)
        self._pending[req.request_id] = (req.prompt, req.target_model, hashes)
        while len(self._pending) > _PENDING_LIMIT:
            self._pending.popitem(last=False)
        return hashes

    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        return dict(zip(endpoints, self.score_column(req, endpoints), strict=True))

    def score_column(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[float]:
        column = [0.0] * len(endpoints)
        hashes = self.hashes(req)
        matched = self._last_match = self.index.match(hashes) if hashes and endpoints else None
        if not matched:
            return column
        hits = list(map(matched.get, [e.name for e in endpoints], repeat(0)))
        held = list(compress(range(len(endpoints)), hits))  # usually a few of many
        if not held:
            return column
        total = len(hashes)
        loads = [e.metrics.waiting_queue_size + e.in_flight for e in endpoints]
        least = min(loads)
        for i in held:
            if not overloaded(loads[i], least, endpoints[i].metrics.kv_cache_usage, self.params):
                column[i] = hits[i] / total
        return column

    def cached_chars(self, endpoint: Endpoint) -> int:
        """Leading prompt characters `endpoint` holds, for the request this scorer scored last."""
        matched = self._last_match
        return matched.get(endpoint.name, 0) * self.params.hash_block_size if matched else 0

    def capacity(self, endpoint: Endpoint) -> int:
        """Blocks to remember for `endpoint`: its real KV-cache size when the scraper knows it."""
        m, p = endpoint.metrics, self.params
        if m.cache_block_size and m.cache_num_blocks:
            chars = m.cache_block_size * m.cache_num_blocks * p.chars_per_token
            return max(1, min(int(chars // p.hash_block_size), p.max_capacity_per_server))
        return min(p.lru_capacity_per_server, p.max_capacity_per_server)

    def on_routed(self, req: SchedulingRequest, endpoint: Endpoint) -> None:
        hashes = self.hashes(req)
        self._pending.pop(req.request_id, None)
        if hashes:  # a prompt shorter than a block leaves the index as it is
            self.index.add(endpoint.name, hashes, self.capacity(endpoint))

    def on_completed(self, req: SchedulingRequest, endpoint: Endpoint) -> None:
        self._pending.pop(req.request_id, None)

    def on_endpoint_removed(self, name: str) -> None:
        self.index.remove(name)
