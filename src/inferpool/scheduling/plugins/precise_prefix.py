"""precise-prefix-cache-scorer: score each endpoint by the prompt blocks its KV cache really holds.

The exact index (state/kvindex.py) is filled from the model servers' own KV-cache events
(scrape/kvevents.py). Here the prompt is tokenized as the engine tokenizes it, cut into the
engine's blocks, chain-keyed like the index, and each endpoint scores the fraction of those
blocks it holds from the start. Endpoints whose event stream is not live — no events yet,
a lost connection, a sequence gap — are scored by the approximate prefix-cache scorer,
which this plugin keeps learning from every routing decision so that it is warm when
needed. The anti-hotspot rule of the approximate scorer applies to both.

With `tokenizer: sim`, chat is rendered as the simulator renders it ("role: content" lines,
then "assistant:"); with a model's tokenizer.json, chat is rendered with the model's own chat
template as vLLM renders it (hf_tokenizer.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field, field_validator

from inferpool.durations import parse_go_duration_or_seconds
from inferpool.scheduling.plugins.hf_tokenizer import HFPromptTokenizer, completion_prompt
from inferpool.scheduling.plugins.prefix_cache import PrefixCacheParams, PrefixCacheScorer, overloaded
from inferpool.scheduling.plugins.prefix_store import PrefixTokenStore
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint
from inferpool.state.kvindex import DEFAULT_EVENTS_PORT, ChainKeyCache, KVBlockIndex, KVEventsSettings
from inferpool.tokenization import BOS_ID, Tokenizer, content_text

SIM_TOKENIZER = "sim"
# llm-d's precise-prefix-cache-scorer (llm-d-inference-scheduler, pkg/plugins/scorer/
# precise_prefix_cache.go) holds speculative entries 30 s unless told otherwise: long enough for
# the engine to run the prefill and publish BlockStored, which replaces them.
DEFAULT_SPECULATIVE_TTL_S = 30.0
_PENDING_LIMIT = 4096  # scored requests whose block keys wait for on_routed
# A prompt with this much text not in the prefix store is tokenized in a worker thread before
# scheduling (≈500 tokens: ≈0.5 ms of the loop's time in `tokenizers` on this project's VM,
# where a thread hop costs ≈25 µs); less is tokenized in place. `tokenizeOffLoopChars` sets it.
OFF_LOOP_CHARS = 2048
_PREPARED_LIMIT = 64  # prompts tokenized before scheduling whose request was not routed (shed, refused)


class PrecisePrefixParams(PrefixCacheParams):
    """The approximate scorer's parameters (for the fallback and the anti-hotspot rule), plus events."""

    tokenizer: str = Field(
        default=SIM_TOKENIZER,
        description="'sim' (inferpool's simulator tokenizer) or the path of a Hugging Face tokenizer.json",
    )
    kv_events_port: int = Field(
        default=DEFAULT_EVENTS_PORT, gt=0, lt=65536, description="unless the endpoint's label says otherwise"
    )
    kv_events_replay_port: int | None = Field(default=None, gt=0, lt=65536)
    kv_events_topic: str = ""
    max_blocks_per_endpoint: int = Field(default=262144, gt=0, description="bound on the exact index")
    speculative_indexing: bool = Field(
        default=True,
        description="on routing, hold the blocks the request will compute on its endpoint until events confirm them",
    )
    tokenize_off_loop_chars: int = Field(
        default=OFF_LOOP_CHARS,
        ge=0,
        description="a prompt with this many characters not tokenized before is tokenized in a worker thread "
        "(tokenizer.json only; 0: every prompt)",
    )
    speculative_ttl: float = Field(
        default=DEFAULT_SPECULATIVE_TTL_S,
        gt=0,
        alias="speculativeTTL",  # llm-d's spelling
        description="how long an unconfirmed speculative block counts (Go duration or seconds, core clock)",
    )

    @field_validator("speculative_ttl", mode="before")
    @classmethod
    def _ttl_duration(cls, value: object) -> object:
        return parse_go_duration_or_seconds(value) if isinstance(value, str) else value

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_exists(cls, value: str) -> str:
        if value != SIM_TOKENIZER:
            if not Path(value).is_file():
                raise ValueError(f"not 'sim' and not a readable tokenizer.json: {value}")
            try:
                import tokenizers  # noqa: F401
            except ImportError:
                raise ValueError(
                    "a tokenizer.json needs the `tokenizers` package (pip install tokenizers)"
                ) from None
            HFPromptTokenizer(value)  # a malformed tokenizer or chat template fails here, not per request
        return value


class PromptTokenizer(Protocol):
    def prompt_ids(self, body: Mapping[str, Any]) -> list[int] | None:
        """The token ids the engine will see for this request body; None when they cannot be known."""
        ...


class SimPromptTokenizer:
    """inferpool's simulator: BOS + text for completions, the sim's chat rendering without BOS
    (Anthropic Messages: their `system` first, as the sim renders them). Other bodies (Responses,
    embeddings) are left to the approximate scorer, which reads their prompt text."""

    def __init__(self) -> None:
        self._tokenizer = Tokenizer(remember_pieces=False)
        # Words are `\s*\S+`: the text splits between words exactly (prefix_store.BOUNDARY)
        self.store = PrefixTokenStore(lambda text: self._tokenizer.encode(text, add_bos=False))

    def prompt_ids(self, body: Mapping[str, Any]) -> list[int] | None:
        messages = body.get("messages")
        if isinstance(messages, list):
            system = body.get("system")  # only Anthropic bodies have one outside their messages
            turns = [("system", content_text(system))] if system else []
            turns += [
                (str(m.get("role")), content_text(m.get("content"))) for m in messages if isinstance(m, dict)
            ]
            return self.store.encode(self._tokenizer.apply_chat_template(turns))
        prompt = completion_prompt(body)
        if isinstance(prompt, str):
            return [BOS_ID, *self.store.encode(prompt)]
        return prompt


def prompt_tokenizer(name: str) -> PromptTokenizer:
    return SimPromptTokenizer() if name == SIM_TOKENIZER else HFPromptTokenizer(name)


@dataclass
class PrecisePrefixCacheScorer:
    params: PrecisePrefixParams = field(default_factory=PrecisePrefixParams)
    name: str = "precise-prefix-cache-scorer"
    kv_index: KVBlockIndex | None = None  # bound by the KV-event subscriber; None = no events yet
    kv_events: KVEventsSettings = field(init=False)
    approximate: PrefixCacheScorer = field(init=False)
    tokenizer: PromptTokenizer = field(init=False)
    # request id -> (body, block keys per block size) from score(), for on_routed to speculate
    _pending: OrderedDict[str, tuple[object, dict[int, list[list[int]]]]] = field(
        init=False, default_factory=OrderedDict
    )
    _chains: ChainKeyCache = field(init=False, default_factory=ChainKeyCache)  # shared prefixes hashed once
    # id(body) -> (body, its prompt ids) from prepare(), read by score(), dropped on_routed
    _prepared: OrderedDict[int, tuple[object, list[int] | None]] = field(
        init=False, default_factory=OrderedDict
    )

    def __post_init__(self) -> None:
        p = self.params
        self.kv_events = KVEventsSettings(
            p.kv_events_port, p.kv_events_replay_port, p.kv_events_topic, p.max_blocks_per_endpoint
        )
        self.approximate = PrefixCacheScorer(params=p, name=self.name)
        self.tokenizer = prompt_tokenizer(p.tokenizer)

    def bind_kv_index(self, index: KVBlockIndex) -> None:
        self.kv_index = index

    async def prepare(self, body: Mapping[str, Any]) -> None:
        """Before scheduling: tokenize a long prompt not seen before in a worker thread, where
        the tokenizer lets go of the GIL (a model's tokenizer.json), so that the event loop
        goes on relaying other requests meanwhile; score() takes the ids."""
        off_loop = getattr(self.tokenizer, "prompt_ids_off_loop", None)
        if self.kv_index is None or off_loop is None:
            return  # scored approximately, or tokenized in Python (the GIL: no thread would help)
        ids = await off_loop(body, self.params.tokenize_off_loop_chars)
        self._prepared[id(body)] = (body, ids)
        while len(self._prepared) > _PREPARED_LIMIT:
            self._prepared.popitem(last=False)

    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        index = self.kv_index
        sources = (
            {e: self.kv_events.source(e, index.announced) for e in endpoints} if index is not None else {}
        )
        live = [e for e in endpoints if index is not None and index.is_live(sources[e])]
        prepared = self._prepared.get(id(req.body)) if self._prepared else None
        if prepared is not None and prepared[0] is req.body:  # kept for a P/D prefill profile's turn
            ids = prepared[1] if live else None
        else:
            ids = self.tokenizer.prompt_ids(req.body) if live and req.body is not None else None
        if index is None or ids is None:
            return self.approximate.score(req, endpoints)
        scores = self.approximate.score(req, endpoints) if len(live) < len(endpoints) else {}
        loads = [e.metrics.waiting_queue_size + e.in_flight for e in endpoints]
        least = min(loads)
        load_of = dict(zip(endpoints, loads, strict=True))
        held = self._held_fractions(index, ids, req, [sources[e] for e in live])
        for endpoint in live:
            fraction = held.get(sources[endpoint], 0.0)
            if fraction and overloaded(
                load_of[endpoint], least, endpoint.metrics.kv_cache_usage, self.params
            ):
                fraction = 0.0
            scores[endpoint] = fraction
        return scores

    def _held_fractions(
        self, index: KVBlockIndex, ids: Sequence[int], req: SchedulingRequest, sources: list[str]
    ) -> dict[str, float]:
        """Per source, the fraction of the prompt's cacheable blocks it holds from the start.

        Like vLLM, the last prompt token is never served from cache (its logits are needed),
        so a prompt of n tokens has (n - 1) // block_size blocks that can hit.
        """
        by_size: dict[int, list[str]] = {}
        for source in sources:
            size = index.block_size(source)
            if size:
                by_size.setdefault(size, []).append(source)
        loras: list[str | None]
        if req.lora_adapter is None:  # unknown: the target may be an adapter or the base model
            loras = [None, req.target_model]
        else:
            loras = [req.target_model if req.lora_adapter else None]
        out: dict[str, float] = {}
        usable = ids[: max(0, len(ids) - 1)]
        chains: dict[int, list[list[int]]] = {}
        for size, group in by_size.items():
            for lora in loras:
                keys = self._chains.keys(usable, size, lora, self.params.max_prefix_blocks_to_match)
                if not keys:
                    continue
                chains.setdefault(size, []).append(keys)
                for source, hits in index.match(keys, group).items():
                    out[source] = max(out.get(source, 0.0), hits / len(keys))
        if self.params.speculative_indexing and chains:
            self._pending[req.request_id] = (req.body, chains)
            while len(self._pending) > _PENDING_LIMIT:
                self._pending.popitem(last=False)
        return out

    # -- the admin API's view ---------------------------------------------------------------
    def prompt_blocks(self, body: Mapping[str, Any], endpoints: list[Endpoint]) -> list[dict[str, object]]:
        """Per endpoint: how many leading blocks of this request's prompt the index holds there.

        `held` counts speculative blocks too (what scoring sees), `confirmed` only those the
        server's own events reported. The prompt is tokenized as for scoring; both the base
        model's chain and the adapter chain of the body's model are tried (the larger counts).
        """
        index = self.kv_index
        ids = self.tokenizer.prompt_ids(body)
        model = body.get("model")
        loras: list[str | None] = [None, model] if isinstance(model, str) and model else [None]
        out: list[dict[str, object]] = []
        for endpoint in endpoints:
            source = self.kv_events.source(endpoint, index.announced if index is not None else None)
            size = index.block_size(source) if index is not None else None
            prompt_blocks: int | None = None
            held = confirmed = 0
            if index is not None and size and ids is not None:
                usable = ids[: max(0, len(ids) - 1)]
                for lora in loras:
                    keys = self._chains.keys(usable, size, lora, self.params.max_prefix_blocks_to_match)
                    prompt_blocks = len(keys)
                    held = max(held, index.match(keys, [source])[source])
                    confirmed = max(confirmed, index.confirmed_prefix(keys, source))
            out.append({
                "endpoint": endpoint.name, "source": source,
                "live": index is not None and index.is_live(source), "block_size": size,
                "prompt_blocks": prompt_blocks, "held": held, "confirmed": confirmed,
            })  # fmt: skip
        return out

    # -- routing in flight, and the approximate fallback keeps learning ---------------------
    def on_routed(self, req: SchedulingRequest, endpoint: Endpoint) -> None:
        self.approximate.on_routed(req, endpoint)
        if self._prepared:
            self._prepared.pop(id(req.body), None)
        pending = self._pending.pop(req.request_id, None)
        index = self.kv_index
        if pending is None or index is None or pending[0] is not req.body:
            return  # not scored precisely (or the id was reused by another body)
        source = self.kv_events.source(endpoint, index.announced)
        size = index.block_size(source)
        for keys in pending[1].get(size, []) if size else []:
            # Both chains of a target whose adapter-ness is unknown: the wrong one matches nothing real.
            index.speculate(source, keys, self.params.speculative_ttl)

    def on_completed(self, req: SchedulingRequest, endpoint: Endpoint) -> None:
        self.approximate.on_completed(req, endpoint)

    def on_endpoint_removed(self, name: str) -> None:
        self.approximate.on_endpoint_removed(name)
