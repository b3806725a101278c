"""The KV block pool with automatic prefix caching, after vLLM V1's KVCacheManager.

Full blocks are keyed by a chained hash of their token ids (plus the LoRA adapter on every
block). A block whose last user finished keeps its hash and goes to the back of the free queue;
it is reused on a hit, and only forgets its contents when its slot is handed out again (LRU).
With KV events on, the pool queues what changed in its cache (`events`), as vLLM's does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inferpool.sim.kvevents import KVEventQueue


@dataclass(slots=True, eq=False)
class Block:
    block_id: int
    ref_cnt: int = 0
    block_hash: int | None = None


def chain_hashes(
    token_ids: Sequence[int], block_size: int, lora: str | None, start: int = 0, parent: int | None = None
) -> list[int]:
    """Hashes of the full blocks from block index `start` on, each chained on its parent."""
    out = []
    for first in range(start * block_size, len(token_ids) - block_size + 1, block_size):
        parent = hash((parent, tuple(token_ids[first : first + block_size]), lora))
        out.append(parent)
    return out


@dataclass
class BlockPool:
    """Fixed pool of KV blocks; block 0 is reserved like vLLM's null block."""

    num_blocks: int
    block_size: int
    blocks: list[Block] = field(init=False)
    free: OrderedDict[int, Block] = field(init=False)
    cached: dict[int, Block] = field(init=False)
    events: KVEventQueue | None = None  # set when the replica publishes KV events

    def __post_init__(self) -> None:
        self.blocks = [Block(i) for i in range(self.num_blocks)]
        self.free = OrderedDict((b.block_id, b) for b in self.blocks[1:])
        self.cached = {}

    @property
    def num_free(self) -> int:
        return len(self.free)

    def usage(self) -> float:
        """vllm:kv_cache_usage_perc: cached but unreferenced blocks count as free."""
        return 1.0 - len(self.free) / (self.num_blocks - 1)

    def lookup(self, hashes: Sequence[int]) -> list[Block]:
        """The longest run of cached blocks matching `hashes` from the start."""
        hit = []
        for h in hashes:
            block = self.cached.get(h)
            if block is None:
                break
            hit.append(block)
        return hit

    def touch(self, blocks: Sequence[Block]) -> None:
        """Take a reference on cache hits, pulling unreferenced ones out of the free queue."""
        for block in blocks:
            if block.ref_cnt == 0:
                del self.free[block.block_id]
            block.ref_cnt += 1

    def take(self, count: int) -> list[Block]:
        """Hand out `count` free blocks, oldest first, evicting whatever they cached."""
        out = []
        for _ in range(count):
            _, block = self.free.popitem(last=False)
            if block.block_hash is not None:
                if self.cached.get(block.block_hash) is block:
                    del self.cached[block.block_hash]
                    if self.events is not None:
                        self.events.removed(block.block_hash)
                block.block_hash = None
            block.ref_cnt = 1
            out.append(block)
        return out

    def release(self, blocks: Sequence[Block]) -> None:
        """Drop references, tail first, so a prefix outlives its suffix in the LRU order."""
        for block in reversed(blocks):
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                self.free[block.block_id] = block

    def commit(self, block: Block, block_hash: int) -> bool:
        """Mark a now-full block as holding `block_hash`; the first holder wins the cache slot.

        True when the block became the cached copy (what a KV event reports).
        """
        if block.block_hash is not None:
            return False
        block.block_hash = block_hash
        return self.cached.setdefault(block_hash, block) is block

    def reset(self) -> bool:
        """Forget every cached block, as vLLM's reset_prefix_cache: refused while any block is in use."""
        if self.num_free != self.num_blocks - 1:
            return False
        for block in self.blocks:
            block.block_hash = None
        self.cached.clear()
        if self.events is not None:
            self.events.cleared()
        return True
