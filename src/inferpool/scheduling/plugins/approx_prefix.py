"""approx-prefix-cache-producer: llm-d's home for the approximate prefix index's settings.

In llm-d the producer keeps the index and the `prefix-cache-scorer` reads it; inferpool's
`prefix-cache-scorer` keeps its own. So the producer is accepted as settings only: a
prefix-cache-scorer configured without `parameters` takes them, translated from llm-d's
token units to the scorer's characters (4 characters a token, the scorer's estimate too).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from inferpool.scheduling.plugins.params import Params

_CHARS_PER_TOKEN = 4


class ApproxPrefixProducerParams(Params):
    """llm-d's parameters and defaults (approximateprefix/types.go)."""

    auto_tune: bool = True  # inferpool always sizes the index from the server's cache when scraped
    block_size_tokens: int = Field(default=16, gt=0)
    block_size: int = Field(default=0, ge=0, description="deprecated: block size in characters")
    max_prefix_blocks_to_match: int = Field(default=2048, ge=0)
    max_prefix_tokens_to_match: int = Field(default=131072, ge=0)
    lru_capacity_per_server: int = Field(default=31250, gt=0)

    def prefix_cache_parameters(self) -> dict[str, Any]:
        """The `prefix-cache-scorer` parameters that mean the same."""
        block_chars = self.block_size or self.block_size_tokens * _CHARS_PER_TOKEN
        if self.max_prefix_tokens_to_match > 0:
            blocks = max(1, self.max_prefix_tokens_to_match // self.block_size_tokens)
        elif self.max_prefix_blocks_to_match > 0:
            blocks = self.max_prefix_blocks_to_match
        else:  # llm-d: both 0 match the whole prompt, which a context window bounds anyway
            blocks = 131072 // self.block_size_tokens
        return {
            "hashBlockSize": block_chars,
            "maxPrefixBlocksToMatch": blocks,
            "lruCapacityPerServer": self.lru_capacity_per_server,
        }
