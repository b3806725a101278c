"""An approximate map of which endpoint holds which prompt blocks in its prefix cache.

The gateway cannot see the model servers' caches, so it remembers what it sent where:
each routed prompt's block hashes go into that endpoint's LRU (bounded by the endpoint's
cache size), and a reverse map answers "who has this block" in one lookup per block.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import xxhash


def block_hashes(prompt: str, model: str, block_chars: int, max_blocks: int) -> list[int]:
    """Chained xxhash64 of the prompt's full `block_chars`-character blocks, at most `max_blocks`.

    Each block is hashed with the previous block's hash as seed (the first with the hash
    of the target model), so a block hash names the whole prefix up to it, and the same
    text for two models never collides. A trailing partial block is not hashed: model
    servers cache full blocks only.
    """
    count = min(len(prompt) // block_chars, max_blocks)
    if count <= 0:  # a prompt shorter than one block: nothing to hash, not even the model
        return []
    digest = xxhash.xxh64_intdigest
    prev = digest(model.encode())
    hashes = [0] * count
    if prompt.isascii():  # one encode, zero-copy slices: characters and bytes coincide
        data = memoryview(prompt[: count * block_chars].encode("ascii"))
        for i in range(count):
            start = i * block_chars
            prev = digest(data[start : start + block_chars], prev)
            hashes[i] = prev
    else:
        for i in range(count):
            start = i * block_chars
            prev = digest(prompt[start : start + block_chars].encode("utf-8", "surrogatepass"), prev)
            hashes[i] = prev
    return hashes


class PrefixIndex:
    """Per-endpoint LRU sets of block hashes plus a reverse map hash → endpoints.

    Memory is bounded by the sum of the per-endpoint capacities given to `add`.
    """

    def __init__(self) -> None:
        self._lru: dict[str, OrderedDict[int, None]] = {}
        self._owners: dict[int, set[str]] = {}

    def add(self, endpoint: str, hashes: Sequence[int], capacity: int) -> None:
        """Record that `endpoint` now caches `hashes`, evicting its least recently used beyond capacity."""
        lru = self._lru.get(endpoint)
        if lru is None:
            lru = self._lru[endpoint] = OrderedDict()
        owners = self._owners
        for h in hashes:
            if h in lru:
                lru.move_to_end(h)
            else:
                lru[h] = None
                holders = owners.get(h)
                if holders is None:
                    owners[h] = {endpoint}
                else:
                    holders.add(endpoint)
        while len(lru) > max(capacity, 0):
            old, _ = lru.popitem(last=False)
            self._disown(old, endpoint)

    def match(self, hashes: Sequence[int]) -> dict[str, int]:
        """For each endpoint, how many leading blocks of `hashes` it holds (endpoints with 0 left out)."""
        counts: dict[str, int] = {}
        alive: set[str] | None = None
        depth = 0
        for h in hashes:
            holders = self._owners.get(h)
            if not holders:
                break
            if alive is None:
                alive = set(holders)
            elif not holders >= alive:
                for gone in alive - holders:
                    counts[gone] = depth
                alive &= holders
                if not alive:
                    break
            depth += 1
        for endpoint in alive or ():
            counts[endpoint] = depth
        return counts

    def remove(self, endpoint: str) -> None:
        for h in self._lru.pop(endpoint, OrderedDict()):
            self._disown(h, endpoint)

    def size(self, endpoint: str | None = None) -> int:
        """Blocks held by one endpoint, or by all of them together."""
        if endpoint is not None:
            return len(self._lru.get(endpoint, ()))
        return sum(len(lru) for lru in self._lru.values())

    def distinct_blocks(self) -> int:
        return len(self._owners)

    def _disown(self, h: int, endpoint: str) -> None:
        holders = self._owners.get(h)
        if holders is not None:
            holders.discard(endpoint)
            if not holders:
                del self._owners[h]
