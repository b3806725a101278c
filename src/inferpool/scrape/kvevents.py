"""Subscribes to every endpoint's vLLM KV-cache events and keeps the exact block index.

One ZMQ SUB socket per event stream (an endpoint's address and events port; a pod in two
pools is one stream), following the datastore as the scraper does. A stream is "live" —
its endpoints are scored from the exact index — from its first message on, and stops
being live when its TCP connection drops. Sequence numbers must follow one another: on a
gap the missed batches are fetched from the replay socket when one is configured;
otherwise (or when the replay cannot cover the gap) the stream's entries are cleared and
it is not live until the next message in sequence. A sequence that goes backwards is a
restarted server: its cache is empty, so the entries are cleared and the stream stays live.

Only GPU blocks of KV-cache group 0 are indexed (vLLM's medium "GPU", group_idx 0 or
absent): CPU-offloaded blocks and other attention groups do not make a prefill hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import msgspec
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from inferpool.kvwire import (
    END_SEQ,
    MEDIUM_GPU,
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEvent,
    KVEventBatch,
    decode_batch,
    decode_seq,
    seq_bytes,
)
from inferpool.scrape.follower import DatastoreFollower
from inferpool.state import Datastore
from inferpool.state.kvindex import (
    PORT_LABEL,
    Announced,
    KVBlockIndex,
    KVEventsSettings,
    KVIndexConsumer,
    endpoint_key,
    parse_announcement,
    zmq_address,
)

log = logging.getLogger(__name__)

REPLAY_TIMEOUT_S = 2.0
_RECONNECT_MAX_MS = 2000
ANNOUNCEMENT_PATH = "/kv_event_sources"  # vLLM ≥ 0.32: its publisher settings per data-parallel rank
_ANNOUNCEMENT_TIMEOUT_S = 2.0
_ANNOUNCEMENT_RETRY_S = (0.5, 10.0)  # first retry, longest wait between retries


class SchedulerLike(Protocol):
    """What the subscriber needs of a scheduler: every plugin it runs (no import of scheduling/)."""

    def plugins(self) -> list[object]: ...


def index_consumers(scheduler: SchedulerLike) -> list[KVIndexConsumer]:
    return [p for p in scheduler.plugins() if isinstance(p, KVIndexConsumer)]


def kv_event_subscriber(
    datastore: Datastore,
    scheduler_for: Callable[[str], SchedulerLike],
    scheduler: SchedulerLike,
    clock: Callable[[], float] = time.monotonic,
) -> KVEventSubscriber | None:
    """A subscriber when `scheduler`'s profile has a plugin that reads KV events, else None.

    The runtimes call this with a scheduler loaded from their config, their per-pool
    `scheduler_for` and their clock (speculative blocks expire on it); they start and stop
    what it returns.
    """
    consumers = index_consumers(scheduler)
    if not consumers:
        return None
    settings = consumers[0].kv_events
    return KVEventSubscriber(
        datastore, scheduler_for, settings, KVBlockIndex(settings.max_blocks_per_source, clock)
    )


@dataclass
class _Stream:
    source: str  # "host:port" of the PUB socket (or an ipc path)
    replay: str | None  # "host:port" of the replay ROUTER socket, if any
    task: asyncio.Task[None] | None = None
    next_seq: int | None = None  # None: nothing received since (re)connecting
    topic: str = ""
    endpoints: frozenset[str] = frozenset()  # endpoint_key of the model servers publishing here


class KVEventSubscriber(DatastoreFollower):
    """Fills one KVBlockIndex from the event streams of every pool whose scheduler reads it."""

    def __init__(
        self,
        datastore: Datastore,
        scheduler_for: Callable[[str], SchedulerLike],
        settings: KVEventsSettings,
        index: KVBlockIndex | None = None,
    ) -> None:
        super().__init__(datastore)
        self.scheduler_for = scheduler_for
        self.settings = settings
        self.index = index or KVBlockIndex(settings.max_blocks_per_source)
        self._streams: dict[str, _Stream] = {}
        self._ctx: zmq.asyncio.Context | None = None
        self.batches = 0  # applied batches, for tests and logs
        self.gaps = 0
        self.replayed = 0  # batches recovered from replay sockets
        # endpoint_key -> (address, HTTP port) and its discovery task: GET /kv_event_sources
        self._discovery: dict[str, asyncio.Task[None]] = {}

    # -- following the datastore -------------------------------------------------------
    def _reconcile(self) -> None:
        wanted: dict[str, tuple[str | None, str, set[str]]] = {}  # source -> (replay, topic, endpoints)
        announced = self.index.announced
        servers: dict[str, tuple[str, int]] = {}
        for pool in self.datastore.pools():
            consumers = index_consumers(self.scheduler_for(pool.key))
            if not consumers:
                continue
            for consumer in consumers:
                consumer.bind_kv_index(self.index)
            settings = consumers[0].kv_events
            for endpoint in self.datastore.endpoints(pool.key):
                key = endpoint_key(endpoint)
                if PORT_LABEL not in endpoint.labels:
                    servers[key] = (endpoint.address, endpoint.port)
                source = settings.source(endpoint, announced)
                replay, topic, keys = wanted.setdefault(
                    source,
                    (
                        settings.replay_source(endpoint, announced),
                        settings.topic_of(endpoint, announced),
                        set(),
                    ),
                )
                keys.add(key)
        for key in [k for k in self._discovery if k not in servers]:
            self._discovery.pop(key).cancel()
            announced.pop(key, None)
        for key, (address, port) in servers.items():
            if key not in self._discovery:
                self._discovery[key] = asyncio.create_task(
                    self._discover(key, address, port), name=f"kv-event sources {key}"
                )
        for source in [s for s in self._streams if s not in wanted]:
            stream = self._streams.pop(source)
            if stream.task is not None:
                stream.task.cancel()
            self.index.drop(source)
        for source, (replay, topic, keys) in wanted.items():
            known = self._streams.get(source)
            if known is not None and known.topic == topic:
                known.replay, known.endpoints = replay, frozenset(keys)
                continue
            if known is not None and known.task is not None:  # the topic changed: subscribe anew
                known.task.cancel()
                self.index.drop(source)
            stream = self._streams[source] = _Stream(source, replay, topic=topic, endpoints=frozenset(keys))
            stream.task = asyncio.create_task(self._follow(stream), name=f"kv-events {source}")

    def streams(self) -> list[str]:
        """The event streams subscribed to now (live or not yet)."""
        return list(self._streams)

    def _drop_tasks(self) -> list[asyncio.Task[None]]:
        tasks = [s.task for s in self._streams.values() if s.task is not None]
        tasks.extend(self._discovery.values())
        for source in self._streams:
            self.index.drop(source)
        self._streams.clear()
        self._discovery.clear()
        return tasks

    # -- the engine's own announcement -------------------------------------------------
    async def _discover(self, key: str, address: str, port: int) -> None:
        """Ask the model server where it publishes (vLLM's GET /kv_event_sources) until it answers.

        As llm-d's pod-discovery mode subscribes to each pod it sees, this finds each
        endpoint's publisher without configuration, and on the engine's word rather than a
        port convention. A server that does not know the path (an older vLLM, another
        engine) keeps the label or default port; one that is down is asked again, with
        backoff. Asked again when its stream disconnects (a restart may move the publisher).
        """
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}:{port}{ANNOUNCEMENT_PATH}"
        wait, longest = _ANNOUNCEMENT_RETRY_S
        while True:
            try:
                assert self._session is not None
                timeout = aiohttp.ClientTimeout(total=_ANNOUNCEMENT_TIMEOUT_S)
                async with self._session.get(url, timeout=timeout) as resp:
                    if resp.status == 404:
                        log.info(
                            "kv events of %s: no %s; using the label or default port", key, ANNOUNCEMENT_PATH
                        )
                        return
                    if resp.status == 200:
                        self._announce(key, parse_announcement(await resp.json(content_type=None), address))
                        return
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            await asyncio.sleep(wait)
            wait = min(longest, wait * 2)

    def _announce(self, key: str, found: Announced | None) -> None:
        announced = self.index.announced
        if announced.get(key) == found:
            return
        if found is None:
            announced.pop(key, None)
        else:
            announced[key] = found
            log.info("kv events of %s: the engine publishes on %s", key, found.source)
        self._reconcile()

    def _rediscover(self, stream: _Stream) -> None:
        """The stream dropped: if its servers announced it, ask them again once they are back."""
        for key in stream.endpoints:
            task = self._discovery.get(key)
            if task is not None and task.done() and key in self.index.announced:
                address, _, port = key.rpartition(":")
                self._discovery[key] = asyncio.create_task(
                    self._discover(key, address.strip("[]"), int(port)), name=f"kv-event sources {key}"
                )

    async def stop(self) -> None:
        await super().stop()
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def _context(self) -> zmq.asyncio.Context:
        if self._ctx is None:
            self._ctx = zmq.asyncio.Context()
        return self._ctx

    # -- one stream --------------------------------------------------------------------
    async def _follow(self, stream: _Stream) -> None:
        ctx = self._context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RECONNECT_IVL_MAX, _RECONNECT_MAX_MS)
        sub.setsockopt(zmq.IPV6, int(stream.source.startswith("[")))
        sub.setsockopt(zmq.SUBSCRIBE, stream.topic.encode())
        monitor = sub.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        sub.connect(zmq_address(stream.source))
        poller = zmq.asyncio.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while True:
                for sock, _ in await poller.poll():
                    if sock is monitor:
                        self._on_monitor(stream, parse_monitor_message(await monitor.recv_multipart()))
                    else:
                        await self.on_message(stream, await sub.recv_multipart())
        except Exception:  # a bug must not leave the endpoint looking precise
            log.exception("kv events from %s: subscriber failed", stream.source)
            self._lose(stream)
            raise
        finally:
            with contextlib.suppress(zmq.ZMQError):
                sub.disable_monitor()
            monitor.close(linger=0)
            sub.close(linger=0)

    def _on_monitor(self, stream: _Stream, event: Mapping[str, object]) -> None:
        if event.get("event") == zmq.EVENT_DISCONNECTED:
            if self.index.is_live(stream.source):
                log.info(
                    "kv events from %s: disconnected; its endpoints fall back to approximate", stream.source
                )
            self._lose(stream)
            self._rediscover(stream)

    def _lose(self, stream: _Stream) -> None:
        """What the server caches is unknown from now on: forget it until the stream proves itself."""
        self.index.cleared(stream.source)
        self.index.set_live(stream.source, False)
        stream.next_seq = None

    async def on_message(self, stream: _Stream, frames: list[bytes]) -> None:
        """Apply one `[topic, seq, payload]` message, recovering or clearing on a sequence gap."""
        if len(frames) != 3:
            log.warning("kv events from %s: message of %d frames ignored", stream.source, len(frames))
            return
        seq = decode_seq(frames[1])
        try:
            batch = decode_batch(frames[2])
        except (msgspec.DecodeError, ValueError):
            log.warning("kv events from %s: undecodable batch %d; treating it as lost", stream.source, seq)
            self._lose(stream)
            return
        expected = stream.next_seq
        live = True
        if expected is not None and seq > expected:
            self.gaps += 1
            missed = await self._replay(stream, expected, seq) if stream.replay else None
            if missed is None:
                log.info(
                    "kv events from %s: batches %d..%d lost; index cleared", stream.source, expected, seq - 1
                )
                self.index.cleared(stream.source)
                live = False
            else:
                self.replayed += len(missed)
                for old in missed:
                    live = self.apply(stream.source, old) and live
        elif expected is not None and seq < expected:
            log.info(
                "kv events from %s: sequence restarted at %d (server restart); index cleared",
                stream.source,
                seq,
            )
            self.index.cleared(stream.source)
        live = self.apply(stream.source, batch) and live
        stream.next_seq = seq + 1
        if live and not self.index.is_live(stream.source):
            log.info("kv events from %s: live", stream.source)
        self.index.set_live(stream.source, live)

    def apply(self, source: str, batch: KVEventBatch) -> bool:
        self.batches += 1
        return apply_events(self.index, source, batch.events)

    async def _replay(self, stream: _Stream, start: int, end: int) -> list[KVEventBatch] | None:
        """Batches `start`..`end`-1 from the replay socket; None if it no longer has them all."""
        assert stream.replay is not None
        sock = self._context().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IPV6, int(stream.replay.startswith("[")))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLAY_TIMEOUT_S
        found: list[KVEventBatch] = []
        try:
            sock.connect(zmq_address(stream.replay))
            await sock.send_multipart((b"", seq_bytes(start)))
            while True:
                remaining_ms = int((deadline - loop.time()) * 1000)
                if remaining_ms <= 0 or not await sock.poll(remaining_ms):
                    log.info("kv events from %s: replay timed out", stream.source)
                    return None
                frames = await sock.recv_multipart()
                if len(frames) != 4:
                    continue
                if frames[2] == END_SEQ:
                    break
                seq = decode_seq(frames[2])
                if seq < start + len(found) or seq >= end:
                    continue
                if seq != start + len(found):
                    return None  # the replay buffer no longer reaches back to what we missed
                found.append(decode_batch(frames[3]))
        except (zmq.ZMQError, msgspec.DecodeError, ValueError) as exc:
            log.info("kv events from %s: replay failed (%s)", stream.source, exc)
            return None
        finally:
            sock.close(linger=0)
        return found if len(found) == end - start else None


def apply_events(index: KVBlockIndex, source: str, events: Iterable[KVEvent]) -> bool:
    """Apply one batch's events to the index, in order; False if the source outgrew its bound."""
    fits = True
    for event in events:
        if isinstance(event, BlockStored):
            if not _indexed(event.medium, event.group_idx):
                continue
            lora = event.lora_name or (f"lora-id:{event.lora_id}" if event.lora_id is not None else None)
            stored = index.stored(
                source,
                event.block_hashes,
                event.parent_block_hash,
                event.token_ids,
                event.block_size,
                lora,
                _extras(event),
            )
            if not stored:
                fits = False
                log.warning(
                    "kv events from %s: more than %d blocks; index cleared, not precise until the next batch",
                    source,
                    index.max_blocks_per_source,
                )
        elif isinstance(event, BlockRemoved):
            if _indexed(event.medium, event.group_idx):
                index.removed(source, event.block_hashes)
        elif isinstance(event, AllBlocksCleared):
            index.cleared(source)
    return fits


def _indexed(medium: str | None, group_idx: int | None) -> bool:
    return (medium is None or medium == MEDIUM_GPU) and not group_idx


def _extras(event: BlockStored) -> list[bytes] | None:
    """Per-block hash inputs other than tokens and adapter (media, cache salt), as bytes to mix in.

    vLLM lists the LoRA name first in each entry when lora_name is set; the root key
    already names the adapter, so it is left out here.
    """
    if not event.extra_keys:
        return None
    skip = 1 if event.lora_name else 0
    out = [
        b"" if keys is None or len(keys) <= skip else repr(tuple(keys[skip:])).encode()
        for keys in event.extra_keys
    ]
    return out if any(out) else None
