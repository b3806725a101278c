"""KV-cache events as vLLM publishes them (`--kv-events-config`), for the simulated engine.

The block pool queues BlockRemoved when it evicts a cached block, the engine queues
BlockStored when full blocks get their hash, a prefix-cache reset queues AllBlocksCleared;
at the end of each engine step the queue is published as one KVEventBatch on a ZMQ PUB
socket, `[topic, seq, payload]`, with an optional ROUTER socket that replays the last
`buffer_steps` batches, as vLLM's ZmqEventPublisher does. Unlike vLLM there is no
publisher thread (and so no `max_queue_size` queue): the sim sends inline, never blocking,
and drops at the high-water mark as a PUB socket does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Literal, Protocol

import zmq
import zmq.asyncio
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from inferpool.kvwire import (
    END_SEQ,
    MEDIUM_GPU,
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEvent,
    KVEventBatch,
    encode_batch,
    seq_bytes,
)

log = logging.getLogger(__name__)

_HASH_MASK = (1 << 64) - 1  # vLLM publishes the low 64 bits of its block hash as an unsigned int


class CachedSequence(Protocol):
    """What a BlockStored event reads of a request: the engine's SimRequest (the engine sits above)."""

    block_hashes: list[int]
    lora: str | None
    prompt_token_ids: list[int]

    def all_token_ids(self) -> list[int]: ...


class KVEventsConfig(BaseModel):
    """vLLM's KVEventsConfig, parsed from the same JSON (`--kv-events-config '{...}'`)."""

    model_config = ConfigDict(extra="forbid")

    enable_kv_cache_events: bool = False
    publisher: Literal["null", "zmq"] | None = None
    endpoint: str = "tcp://*:5557"
    replay_endpoint: str | None = None
    buffer_steps: int = 10_000
    hwm: int = 100_000
    max_queue_size: int = 100_000
    topic: str = ""

    @model_validator(mode="after")
    def _default_publisher(self) -> KVEventsConfig:
        if self.publisher is None:
            self.publisher = "zmq" if self.enable_kv_cache_events else "null"
        return self

    @classmethod
    def from_json(cls, text: str) -> KVEventsConfig:
        """Parse the flag's JSON; ValueError with a one-line reason when it is wrong."""
        try:
            return cls.model_validate(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"--kv-events-config is not JSON: {exc.msg}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(document)"
            raise ValueError(f"--kv-events-config: {where}: {first['msg']}") from None

    @property
    def publishes(self) -> bool:
        return self.enable_kv_cache_events and self.publisher == "zmq"

    def for_replica(self, index: int) -> KVEventsConfig:
        """Replica `index` of `inferpool sim --replicas N` uses the endpoint ports + index."""
        return self.model_copy(
            update={
                "endpoint": offset_endpoint_port(self.endpoint, index),
                "replay_endpoint": offset_endpoint_port(self.replay_endpoint, index),
            }
        )


def offset_endpoint_port(endpoint: str | None, offset: int) -> str | None:
    """vLLM's rule for data-parallel ranks: tcp port + offset (0 stays 0), inproc gets a suffix."""
    if not endpoint or offset == 0:
        return endpoint
    if "inproc" in endpoint:
        return f"{endpoint}_dp{offset}"
    if "tcp" in endpoint and ":" in endpoint:
        base, _, port = endpoint.rpartition(":")
        return endpoint if int(port) == 0 else f"{base}:{int(port) + offset}"
    return endpoint


class KVEventQueue:
    """The events of the step in progress, as vLLM's BlockPool.kv_event_queue."""

    def __init__(self, block_size: int, lora_ids: dict[str, int] | None = None) -> None:
        self.block_size = block_size
        self.lora_ids = dict(lora_ids or {})  # adapter name -> vLLM's lora_int_id (1, 2, ...)
        self.events: list[KVEvent] = []
        self._last: tuple[CachedSequence, int] | None = (
            None  # request and block index the last store ended at
        )

    def stored(self, req: CachedSequence, index: int) -> None:
        """Block `index` of `req` is now cached; consecutive blocks of one request share an event."""
        bs = self.block_size
        block_hash = req.block_hashes[index] & _HASH_MASK
        tokens = _tokens(req, index * bs, (index + 1) * bs)
        extra = (req.lora,) if req.lora else None
        last = self.events[-1] if self.events else None
        if self._last == (req, index - 1) and isinstance(last, BlockStored):
            last.block_hashes.append(block_hash)
            last.token_ids.extend(tokens)
            if last.extra_keys is not None:
                last.extra_keys.append(extra)
        else:
            parent = req.block_hashes[index - 1] & _HASH_MASK if index > 0 else None
            self.events.append(
                BlockStored(
                    block_hashes=[block_hash],
                    parent_block_hash=parent,
                    token_ids=tokens,
                    block_size=bs,
                    lora_id=self._lora_id(req.lora),
                    medium=MEDIUM_GPU,
                    lora_name=req.lora,
                    extra_keys=[extra],
                    group_idx=0,
                )
            )
        self._last = (req, index)

    def removed(self, block_hash: int) -> None:
        self.events.append(
            BlockRemoved(block_hashes=[block_hash & _HASH_MASK], medium=MEDIUM_GPU, group_idx=0)
        )
        self._last = None

    def cleared(self) -> None:
        self.events.append(AllBlocksCleared())
        self._last = None

    def take(self) -> list[KVEvent]:
        events, self.events, self._last = self.events, [], None
        return events

    def _lora_id(self, name: str | None) -> int | None:
        if not name:
            return None
        if name not in self.lora_ids:
            self.lora_ids[name] = len(self.lora_ids) + 1
        return self.lora_ids[name]


def _tokens(req: CachedSequence, start: int, end: int) -> list[int]:
    prompt = req.prompt_token_ids
    if end <= len(prompt):
        return prompt[start:end]
    return req.all_token_ids()[start:end]


class ZmqEventPublisher:
    """PUB socket (plus the optional replay ROUTER) for one replica's event batches.

    Wildcard endpoints (`tcp://*:PORT`, `tcp://[::]:PORT`) bind, as in vLLM, but on the
    replica's own --host rather than every interface; other tcp endpoints connect.
    """

    def __init__(self, config: KVEventsConfig, host: str = "127.0.0.1", data_parallel_rank: int = 0) -> None:
        self.config = config
        self.host = host
        self.data_parallel_rank = data_parallel_rank  # vLLM's publishers stamp each batch with it
        self.endpoint = _bind_address(config.endpoint, host)
        self.replay_endpoint = _bind_address(config.replay_endpoint, host) if config.replay_endpoint else None
        self._topic = config.topic.encode()
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=max(1, config.buffer_steps))
        self._seq = 0
        self._ctx = zmq.asyncio.Context()
        self._pub: zmq.asyncio.Socket | None = None
        self._replay: zmq.asyncio.Socket | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        """Bind (or connect); raises zmq.ZMQError (an OSError-like error) when a port is taken."""
        pub = self._ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.IPV6, int(":" in self.host))
        pub.set_hwm(self.config.hwm)
        try:
            if _binds(self.config.endpoint):
                pub.bind(self.endpoint)
            else:
                pub.connect(self.endpoint)
            self._pub = pub
            if self.replay_endpoint is not None:
                replay = self._ctx.socket(zmq.ROUTER)
                replay.setsockopt(zmq.LINGER, 0)
                replay.setsockopt(zmq.IPV6, int(":" in self.host))
                self._replay = replay
                replay.bind(self.replay_endpoint)
                self._replay_task = asyncio.create_task(self._serve_replay(replay), name="kv-events-replay")
        except zmq.ZMQError:
            self.close()
            raise
        self.endpoint = _last_endpoint(pub, self.endpoint)
        if self._replay is not None and self.replay_endpoint is not None:
            self.replay_endpoint = _last_endpoint(self._replay, self.replay_endpoint)

    def publish(self, events: list[KVEvent]) -> None:
        """Send one step's events as one batch (nothing when the step produced none)."""
        if not events or self._pub is None:
            return
        payload = encode_batch(
            KVEventBatch(ts=time.time(), events=events, data_parallel_rank=self.data_parallel_rank)
        )
        seq = self._seq
        self._seq += 1
        self._buffer.append((seq, payload))
        try:
            self._pub.send_multipart((self._topic, seq_bytes(seq), payload), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.dropped += 1

    async def _serve_replay(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            if len(frames) != 3:
                log.warning("kv events: invalid replay request of %d frames", len(frames))
                continue
            client, _, start = frames
            start_seq = int.from_bytes(start, "big")
            for seq, payload in list(self._buffer):
                if seq >= start_seq:
                    await sock.send_multipart((client, b"", self._topic, seq_bytes(seq), payload))
            await sock.send_multipart((client, b"", b"", END_SEQ, b""))

    async def stop(self) -> None:
        if self._replay_task is not None:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
            self._replay_task = None
        self.close()

    def close(self) -> None:
        for sock in (self._pub, self._replay):
            if sock is not None:
                sock.close(linger=0)
        self._pub = self._replay = None
        if not self._ctx.closed:
            self._ctx.term()


def _binds(endpoint: str) -> bool:
    """vLLM binds wildcard and ipc/inproc endpoints and connects to the rest."""
    return "*" in endpoint or "::" in endpoint or endpoint.startswith(("ipc://", "inproc://"))


def _bind_address(endpoint: str, host: str) -> str:
    if not endpoint.startswith("tcp://") or not _binds(endpoint):
        return endpoint
    _, _, port = endpoint.rpartition(":")
    wrapped = f"[{host}]" if ":" in host else host
    return f"tcp://{wrapped}:{port}"


def _last_endpoint(sock: zmq.asyncio.Socket, fallback: str) -> str:
    """The endpoint actually bound (port 0 resolves to the one the OS picked)."""
    try:
        last = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    except zmq.ZMQError:
        return fallback
    return last or fallback
