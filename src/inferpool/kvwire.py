"""vLLM's KV-cache event wire format (vllm/distributed/kv_events.py, vLLM 0.32), byte for byte.

A ZMQ PUB socket sends multipart messages `[topic, seq, payload]`: `seq` is an 8-byte
big-endian counter that starts at 0, `payload` a msgpack `KVEventBatch` encoded by msgspec.
The batch is an array `[ts, events, data_parallel_rank]`; each event is a map tagged with
`"type"` (the class name). The struct definitions below repeat vLLM's field order and
msgspec options exactly, so our encoder writes the bytes vLLM writes and our decoder reads
what vLLM sends. The replay socket (ROUTER) answers `[b"", start_seq]` with every buffered
message from `start_seq` on, then an end marker whose seq is -1.

A leaf module: the gateway's subscriber (scrape/kvevents.py) decodes with it and the
simulator's publisher (sim/kvevents.py) encodes with it.
"""

from __future__ import annotations

from typing import Any

import msgspec

# vLLM publishes block hashes as 64-bit ints by default (VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1),
# as the raw sha256 bytes otherwise.
ExternalBlockHash = bytes | int

MEDIUM_GPU = "GPU"
END_SEQ = (-1).to_bytes(8, "big", signed=True)  # the replay socket's end-of-stream marker


class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):  # type: ignore[call-arg]
    ts: float
    events: list[Any]
    data_parallel_rank: int | None = None


class KVCacheEvent(msgspec.Struct, omit_defaults=True, gc=False, tag=True):  # type: ignore[call-arg]
    """Base of the three event types; msgspec tags each with its class name."""


class BlockStored(KVCacheEvent):
    block_hashes: list[ExternalBlockHash]
    parent_block_hash: ExternalBlockHash | None
    token_ids: list[int]
    block_size: int
    lora_id: int | None
    medium: str | None
    lora_name: str | None
    # One entry per block: the LoRA name first (when lora_name is set), then multimodal
    # (identifier, offset) pairs, the cache salt and prompt-embeds digests.
    extra_keys: list[tuple[Any, ...] | None] | None = None
    group_idx: int | None = None
    kv_cache_spec_kind: str | None = None
    kv_cache_spec_sliding_window: int | None = None
    locality: str | None = None
    ownership: str | None = None
    session_id: str | None = None


class BlockRemoved(KVCacheEvent):
    block_hashes: list[ExternalBlockHash]
    medium: str | None
    group_idx: int | None = None
    locality: str | None = None
    ownership: str | None = None


class AllBlocksCleared(KVCacheEvent):
    pass


KVEvent = BlockStored | BlockRemoved | AllBlocksCleared


class KVEventBatch(EventBatch):
    events: list[BlockStored | BlockRemoved | AllBlocksCleared]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(KVEventBatch)
_lenient = msgspec.msgpack.Decoder()


def encode_batch(batch: KVEventBatch) -> bytes:
    return _encoder.encode(batch)


def seq_bytes(seq: int) -> bytes:
    return seq.to_bytes(8, "big", signed=seq < 0)


def decode_seq(frame: bytes) -> int:
    return int.from_bytes(frame, "big", signed=True)


def decode_batch(payload: bytes) -> KVEventBatch:
    """Decode one payload; events this version cannot read are dropped, not fatal.

    Raises msgspec.DecodeError (a ValueError) when the payload is not a batch at all.
    """
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError:
        raw = _lenient.decode(payload)
        if not isinstance(raw, list) or len(raw) < 2 or not isinstance(raw[1], list):
            raise
        events = [event for event in map(_lenient_event, raw[1]) if event is not None]
        rank = raw[2] if len(raw) > 2 and isinstance(raw[2], int) else None
        return KVEventBatch(ts=float(raw[0]), events=events, data_parallel_rank=rank)


_EVENT_TYPES: dict[str, type[KVCacheEvent]] = {
    cls.__name__: cls for cls in (BlockStored, BlockRemoved, AllBlocksCleared)
}
# Fields later vLLM versions made required; older publishers leave them out.
_LATER_FIELDS: dict[str, dict[str, None]] = {
    "BlockStored": {"lora_id": None, "medium": None, "lora_name": None},
    "BlockRemoved": {"medium": None},
}


def _lenient_event(item: object) -> KVEvent | None:
    """One event of an unknown kind, or in the array form of older vLLM (events were array_like)."""
    if isinstance(item, list) and item and isinstance(item[0], str) and item[0] in _EVENT_TYPES:
        fields = _EVENT_TYPES[item[0]].__struct_fields__
        item = {"type": item[0], **dict(zip(fields, item[1:], strict=False))}
    if not isinstance(item, dict):
        return None
    item = {**_LATER_FIELDS.get(str(item.get("type")), {}), **item}
    try:
        return msgspec.convert(item, KVEvent)  # type: ignore[arg-type]
    except msgspec.ValidationError:
        return None
