"""The exact map of which model server holds which KV-cache block, built from its KV events.

vLLM names a block by a seeded sha256 of its tokens (and parent, adapter, salt, media);
the gateway cannot reproduce that hash, and need not: each BlockStored event carries the
block's token ids and its parent's engine hash, so the index re-keys every block with its
own chain key (xxh3 of the block's token ids, seeded with the parent's key; the root seed
names the LoRA adapter). The same prompt then has the same keys on every server, and the
scorer computes them from the prompt's token ids without asking anyone.

Besides the blocks a server has confirmed, the index holds **speculative** blocks: those a
request just routed there will compute, recorded at routing time (as llm-d's precise scorer
does with `speculativeIndexing`), so that a request of the same group arriving during the
first one's prefill already sees them. A speculative block is held until the server's own
BlockStored confirms it or its TTL runs out on the index's clock (the core's: the bench
runs it in virtual time); BlockRemoved and AllBlocksCleared drop it like a confirmed one.

A "source" is one event stream: the endpoint's address and its events port. Memory is
bounded per source (`KVEventsSettings.max_blocks_per_source`): a source that outgrows it
is cleared and must be treated as not precise until the stream proves itself again.
"""

from __future__ import annotations

import heapq
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import xxhash

from inferpool.state.endpoint import Endpoint

PORT_LABEL = "inferpool.io/kv-events-port"
REPLAY_PORT_LABEL = "inferpool.io/kv-events-replay-port"
DEFAULT_EVENTS_PORT = 5557  # vLLM's default --kv-events-config endpoint, tcp://*:5557

_BASE_ROOT = xxhash.xxh3_64_intdigest(b"inferpool-kv-chain")
_TOKEN = "q"  # token ids packed as int64: wide enough for any vocabulary
_TOKEN_BYTES = array(_TOKEN).itemsize


@dataclass(frozen=True)
class Announced:
    """Where an engine says it publishes (vLLM's GET /kv_event_sources), as the gateway reaches it."""

    source: str  # "host:port" (tcp) or "ipc:///path" (same host only)
    replay: str | None = None
    topic: str = ""


@dataclass(frozen=True)
class KVEventsSettings:
    """Where each endpoint publishes its KV events and how much of them to keep.

    Per endpoint, the events port comes from its label (explicit configuration wins), else
    from the engine's own announcement when it made one (`announced`, keyed by
    `endpoint_key`), else the configured default port.
    """

    port: int = DEFAULT_EVENTS_PORT
    replay_port: int | None = None
    topic: str = ""
    max_blocks_per_source: int = 262144

    def source(self, endpoint: Endpoint, announced: Mapping[str, Announced] | None = None) -> str:
        """The endpoint's event stream: "host:port" (its address and events port) or an ipc path."""
        label = _label_port(endpoint, PORT_LABEL)
        if label is None and announced and (found := announced.get(endpoint_key(endpoint))) is not None:
            return found.source
        return _hostport(endpoint.address, label or self.port)

    def replay_source(
        self, endpoint: Endpoint, announced: Mapping[str, Announced] | None = None
    ) -> str | None:
        port = _label_port(endpoint, REPLAY_PORT_LABEL)
        if port is None and _label_port(endpoint, PORT_LABEL) is None and announced:
            found = announced.get(endpoint_key(endpoint))
            if found is not None:
                return found.replay
        port = port or self.replay_port
        return _hostport(endpoint.address, port) if port else None

    def topic_of(self, endpoint: Endpoint, announced: Mapping[str, Announced] | None = None) -> str:
        if _label_port(endpoint, PORT_LABEL) is None and announced:
            found = announced.get(endpoint_key(endpoint))
            if found is not None:
                return found.topic
        return self.topic


def endpoint_key(endpoint: Endpoint) -> str:
    """The model server an announcement came from: its HTTP address and port."""
    return _hostport(endpoint.address, endpoint.port)


_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_WILDCARD_HOSTS = ("*", "0.0.0.0", "[::]", "::")


def parse_announcement(payload: object, address: str) -> Announced | None:
    """vLLM's GET /kv_event_sources answer ({rank: KVEventsConfig}) as a subscribable stream, or None.

    Rank 0's publisher is used (data-parallel ranks publish on offset ports; one stream per
    endpoint here). vLLM binds a wildcard tcp endpoint ("tcp://*:5557": reach it at the
    endpoint's own address) or an ipc path (reachable only on the same host, so only for an
    endpoint on loopback); any other tcp endpoint is one vLLM connects to, which a subscriber
    cannot reach, and port 0 is a port the announcement does not name.
    """
    if not isinstance(payload, Mapping) or not payload:
        return None
    ranks = sorted((int(k), v) for k, v in payload.items() if str(k).isdigit())
    if not ranks or not isinstance(ranks[0][1], Mapping):
        return None
    config = ranks[0][1]
    if not config.get("enable_kv_cache_events") or config.get("publisher") not in (None, "zmq"):
        return None
    source = _reachable(config.get("endpoint"), address)
    if source is None:
        return None
    replay = _reachable(config.get("replay_endpoint"), address)
    topic = config.get("topic")
    return Announced(source, replay, topic if isinstance(topic, str) else "")


def _reachable(endpoint: object, address: str) -> str | None:
    if not isinstance(endpoint, str):
        return None
    if endpoint.startswith("ipc://"):
        return endpoint if address in _LOOPBACK else None
    if not endpoint.startswith("tcp://"):
        return None
    host, _, port_text = endpoint.removeprefix("tcp://").rpartition(":")
    if host not in _WILDCARD_HOSTS or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return _hostport(address, int(port_text))


def zmq_address(source: str) -> str:
    """The ZMQ address of a stream: ipc paths as they are, "host:port" over tcp."""
    return source if "://" in source else f"tcp://{source}"


def _label_port(endpoint: Endpoint, label: str) -> int | None:
    value = endpoint.labels.get(label)
    if value is None:
        return None
    try:
        port = int(value)
    except ValueError:
        return None
    return port if 0 < port < 65536 else None


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def root_key(lora: str | None) -> int:
    """The seed of a chain: the base model's, or one per LoRA adapter name."""
    return _BASE_ROOT if not lora else xxhash.xxh3_64_intdigest(lora.encode(), seed=_BASE_ROOT)


def chain_keys(
    token_ids: Sequence[int], block_size: int, lora: str | None, max_blocks: int | None = None
) -> list[int]:
    """Chain keys of the full blocks of `token_ids` from the start (at most `max_blocks`)."""
    count = _full_blocks(token_ids, block_size, max_blocks)
    data = array(_TOKEN, token_ids[: count * block_size]).tobytes()
    return _chain(data, block_size, count, root_key(lora), None)


def _full_blocks(token_ids: Sequence[int], block_size: int, max_blocks: int | None) -> int:
    count = len(token_ids) // block_size
    return count if max_blocks is None else min(count, max_blocks)


class ChainKeyCache:
    """`chain_keys`, remembering runs of CACHED_RUN blocks: prompts that share a long prefix
    (a system prompt, a conversation so far) hash its blocks once, not once per request.

    A run is found by its parent key (which names every token before it), the block size and
    its own tokens (compared, not only hashed), so a hit is the same blocks after the same
    prefix: the keys are what `chain_keys` computes. Packing a long prompt's ids into bytes
    costs more than the lookups (≈0.1 ms for 6,000 tokens), so only what is not found is packed."""

    CACHED_RUN = 16  # blocks per remembered run: one lookup instead of 16 block hashes

    def __init__(self, max_runs: int = 4096) -> None:
        # ≈2 KB a run of 16-token blocks: ≈8 MB, a million tokens of distinct prefixes
        self._runs: OrderedDict[tuple[int, int, tuple[int, ...]], tuple[int, ...]] = OrderedDict()
        self._max_runs = max_runs

    def __len__(self) -> int:
        return len(self._runs)

    def keys(
        self, token_ids: Sequence[int], block_size: int, lora: str | None, max_blocks: int | None = None
    ) -> list[int]:
        count = _full_blocks(token_ids, block_size, max_blocks)
        runs, run_tokens = self._runs, self.CACHED_RUN * block_size
        parent = root_key(lora)
        keys: list[int] = []
        done = 0
        while done + self.CACHED_RUN <= count:
            at = done * block_size
            name = (parent, block_size, tuple(token_ids[at : at + run_tokens]))
            cached = runs.get(name)
            if cached is None:
                data = array(_TOKEN, name[2]).tobytes()
                cached = runs[name] = tuple(_chain(data, block_size, self.CACHED_RUN, parent, None))
                if len(runs) > self._max_runs:
                    runs.popitem(last=False)
            else:
                runs.move_to_end(name)
            keys += cached
            parent = cached[-1]
            done += self.CACHED_RUN
        if done < count:
            data = array(_TOKEN, token_ids[done * block_size : count * block_size]).tobytes()
            keys += _chain(data, block_size, count - done, parent, None)
        return keys


def _chain(
    data: bytes, block_size: int, count: int, parent: int, extras: Sequence[bytes] | None
) -> list[int]:
    step = block_size * _TOKEN_BYTES
    view = memoryview(data)
    digest = xxhash.xxh3_64_intdigest
    keys = [0] * count
    for i in range(count):
        block = view[i * step : (i + 1) * step]
        if extras is not None and extras[i]:
            block = memoryview(bytes(block) + extras[i])
        parent = digest(block, seed=parent)
        keys[i] = parent
    return keys


@dataclass
class _Source:
    live: bool = False
    block_size: int | None = None
    engine: dict[Hashable, int | None] = field(default_factory=dict)  # engine hash -> our key (None: unknown)
    held: dict[int, int] = field(default_factory=dict)  # our key -> engine hashes naming it
    speculative: dict[int, float] = field(default_factory=dict)  # our key -> expiry (index clock)


class KVBlockIndex:
    """Per source: engine hash → chain key; across sources: chain key → sources holding it.

    Stored/removed have set semantics per engine hash (a duplicate store is a no-op, a
    remove forgets the hash): when the two disagree the index errs towards "not cached",
    which costs a missed hit, never a wrong one. Lives on the event loop, like the datastore.
    """

    def __init__(
        self,
        max_blocks_per_source: int = KVEventsSettings.max_blocks_per_source,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_blocks_per_source = max_blocks_per_source
        self.clock = clock
        self._sources: dict[str, _Source] = {}
        self._owners: dict[int, set[str]] = {}
        # Heap of (expiry, sequence, source, keys): one entry per speculate() call, not per block
        # (a 4,000-token prompt is 250 blocks; with a heap entry per block, its push and pop cost
        # ≈1.2 µs a block at 20 req/s and a 30 s TTL: 460 → 90 µs per 300-block request).
        self._expiries: list[tuple[float, int, str, tuple[int, ...]]] = []
        self._speculations = 0  # the sequence: equal expiries never compare their keys
        # Engines' own announcements of where they publish, by endpoint_key (the subscriber fills it)
        self.announced: dict[str, Announced] = {}

    # -- events --------------------------------------------------------------------
    def stored(
        self,
        source: str,
        engine_hashes: Sequence[Hashable],
        parent: Hashable | None,
        token_ids: Sequence[int],
        block_size: int,
        lora: str | None,
        extras: Sequence[bytes] | None = None,
    ) -> bool:
        """Blocks now cached, each chained on the one before (the first on `parent`).

        A block whose parent the index never saw (it was stored before we subscribed) is
        remembered by engine hash only, so its removal still balances, but matches nothing.
        False if the source outgrew its bound and was cleared.
        """
        src = self._source(source)
        if src.block_size is None:
            src.block_size = block_size
        key = root_key(lora) if parent is None else src.engine.get(parent)
        count = len(engine_hashes)
        keys: list[int | None]
        usable = (
            key is not None
            and block_size == src.block_size
            and len(token_ids) == count * block_size
            and (extras is None or len(extras) == count)
        )
        if usable and key is not None:
            try:
                data = array(_TOKEN, token_ids).tobytes()
            except (OverflowError, TypeError):
                usable = False
            else:
                keys = list(_chain(data, block_size, count, key, extras))
        if not usable:
            keys = [None] * count
        for engine_hash, our in zip(engine_hashes, keys, strict=True):
            if engine_hash in src.engine:
                continue
            src.engine[engine_hash] = our
            if our is not None:
                src.speculative.pop(our, None)  # confirmed: the engine's word replaces the guess
                self._hold(source, src, our)
        if len(src.engine) > self.max_blocks_per_source:
            self.cleared(source)
            src.live = False
            return False
        return True

    def removed(self, source: str, engine_hashes: Iterable[Hashable]) -> None:
        src = self._sources.get(source)
        if src is None:
            return
        for engine_hash in engine_hashes:
            if engine_hash not in src.engine:
                continue
            our = src.engine.pop(engine_hash)
            if our is None:
                continue
            src.speculative.pop(our, None)  # evicted: an in-flight guess for it is void too
            refs = src.held[our] - 1
            if refs:
                src.held[our] = refs
                continue
            del src.held[our]
            self._disown(source, our)

    def cleared(self, source: str) -> None:
        """Everything the source cached is gone (AllBlocksCleared, a restart, a lost stream)."""
        src = self._sources.get(source)
        if src is None:
            return
        for our in src.held.keys() | src.speculative.keys():
            self._disown(source, our)
        src.engine.clear()
        src.held.clear()
        src.speculative.clear()

    def drop(self, source: str) -> None:
        """Forget a source entirely (its endpoint left)."""
        self.cleared(source)
        self._sources.pop(source, None)

    # -- routing in flight -------------------------------------------------------------
    def speculate(self, source: str, keys: Iterable[int], ttl_s: float) -> int:
        """Blocks a request just routed to `source` will compute, held for `ttl_s` on the index clock.

        Blocks the source already holds confirmed are left alone; a block speculated again
        gets the later expiry. Returns how many blocks are newly speculative.
        """
        src = self._sources.get(source)
        if src is None or ttl_s <= 0:
            return 0
        now = self.clock()
        self._expire(now)
        expiry = now + ttl_s
        added = 0
        held, speculative, owners = src.held, src.speculative, self._owners
        marked = []
        for key in keys:
            if key in held:
                continue
            if key not in speculative:
                added += 1
                holders = owners.get(key)
                if holders is None:
                    owners[key] = {source}
                else:
                    holders.add(source)
            speculative[key] = expiry
            marked.append(key)
        if marked:
            self._speculations += 1
            heapq.heappush(self._expiries, (expiry, self._speculations, source, tuple(marked)))
        return added

    def _expire(self, now: float) -> None:
        """Drop the speculative blocks whose TTL has run out (their events never came)."""
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expiry, _, source, keys = heapq.heappop(heap)
            src = self._sources.get(source)
            if src is None:
                continue
            speculative = src.speculative
            for key in keys:
                if speculative.get(key) != expiry:
                    continue  # confirmed, removed, cleared or speculated again since
                del speculative[key]
                if key not in src.held:
                    self._disown(source, key)

    def speculative_size(self, source: str) -> int:
        """Blocks held speculatively by one source (not yet confirmed, not yet expired)."""
        self._expire(self.clock())
        src = self._sources.get(source)
        return len(src.speculative) if src is not None else 0

    # -- liveness ------------------------------------------------------------------
    def set_live(self, source: str, live: bool) -> None:
        self._source(source).live = live

    def is_live(self, source: str) -> bool:
        src = self._sources.get(source)
        return src is not None and src.live

    def block_size(self, source: str) -> int | None:
        src = self._sources.get(source)
        return src.block_size if src is not None else None

    # -- queries -------------------------------------------------------------------
    def match(self, keys: Sequence[int], sources: Iterable[str]) -> dict[str, int]:
        """For each of `sources`, how many leading blocks of `keys` it holds, confirmed or speculative."""
        if self._expiries:
            self._expire(self.clock())
        alive = set(sources)
        counts = dict.fromkeys(alive, 0)
        owners = self._owners
        depth = 0
        for key in keys:
            holders = owners.get(key)
            if not holders:
                break
            if not alive <= holders:  # someone's run ends here (a subset test allocates nothing)
                for source in alive - holders:
                    counts[source] = depth
                alive &= holders
                if not alive:
                    return counts
            depth += 1
        for source in alive:
            counts[source] = depth
        return counts

    def confirmed_prefix(self, keys: Sequence[int], source: str) -> int:
        """How many leading blocks of `keys` the source's own events say it holds (no speculation)."""
        src = self._sources.get(source)
        if src is None:
            return 0
        count = 0
        for key in keys:
            if key not in src.held:
                break
            count += 1
        return count

    def summary(self, source: str) -> dict[str, object]:
        """What the index knows of one stream, for the admin API."""
        src = self._sources.get(source)
        if src is None:
            return {"source": source, "live": False, "block_size": None, "blocks": 0, "speculative": 0}
        return {
            "source": source,
            "live": src.live,
            "block_size": src.block_size,
            "blocks": len(src.held),
            "speculative": self.speculative_size(source),
        }

    def size(self, source: str | None = None) -> int:
        """Confirmed chain keys held by one source, or distinct keys (speculative too) over all of them."""
        if source is None:
            return len(self._owners)
        src = self._sources.get(source)
        return len(src.held) if src is not None else 0

    def sources(self) -> list[str]:
        return list(self._sources)

    # -- internals -----------------------------------------------------------------
    def _source(self, source: str) -> _Source:
        src = self._sources.get(source)
        if src is None:
            src = self._sources[source] = _Source()
        return src

    def _disown(self, source: str, our: int) -> None:
        holders = self._owners.get(our)
        if holders is None:
            return
        holders.discard(source)
        if not holders:
            del self._owners[our]

    def _hold(self, source: str, src: _Source, our: int) -> None:
        refs = src.held.get(our, 0)
        src.held[our] = refs + 1
        if refs == 0:
            holders = self._owners.get(our)
            if holders is None:
                self._owners[our] = {source}
            else:
                holders.add(source)


@runtime_checkable
class KVIndexConsumer(Protocol):
    """A plugin that reads the exact block index (the precise prefix scorer).

    The KV-event subscriber finds these among a scheduler's plugins, subscribes where
    their settings say, and hands them the index it fills.
    """

    kv_events: KVEventsSettings

    def bind_kv_index(self, index: KVBlockIndex) -> None: ...
