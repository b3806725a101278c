"""The KV-event subscriber: vLLM's wire format, sequence gaps, replay, liveness, endpoints coming and going."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

import vllm_env
from inferpool.kvwire import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEventBatch,
    decode_batch,
    encode_batch,
    seq_bytes,
)
from inferpool.scheduling import load_scheduler
from inferpool.scheduling.plugins.precise_prefix import PrecisePrefixCacheScorer
from inferpool.scrape.kvevents import KVEventSubscriber, _Stream, apply_events, kv_event_subscriber
from inferpool.sim.config import SimConfig
from inferpool.sim.kvevents import KVEventsConfig, ZmqEventPublisher
from inferpool.sim.replica import SimReplica
from inferpool.state import Datastore, Endpoint, Pool
from inferpool.state.kvindex import PORT_LABEL, KVBlockIndex, KVEventsSettings, chain_keys

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests/fixtures/vllm-0.32-kv-events.msgpack"
BS = 16


def _stored(hashes: list[Any], parent: int | None, tokens: list[int], **kw: Any) -> BlockStored:
    fields: dict[str, Any] = {"lora_id": None, "medium": "GPU", "lora_name": None, "group_idx": 0, **kw}
    return BlockStored(
        block_hashes=hashes, parent_block_hash=parent, token_ids=tokens, block_size=BS, **fields
    )


def _frames(seq: int, *events: Any) -> list[bytes]:
    return [
        b"",
        seq_bytes(seq),
        encode_batch(KVEventBatch(ts=1.0, events=list(events), data_parallel_rank=0)),
    ]


TOKENS = list(range(100, 100 + 3 * BS))


# -- the wire format ---------------------------------------------------------------------------


def test_round_trip_keeps_every_field() -> None:
    batch = KVEventBatch(
        ts=12.5,
        events=[
            _stored([1, 2], None, TOKENS[: 2 * BS], lora_id=3, lora_name="a", extra_keys=[("a",), ("a",)]),
            BlockRemoved(block_hashes=[b"\x01" * 32], medium="GPU", group_idx=0),
            AllBlocksCleared(),
        ],
        data_parallel_rank=0,
    )
    assert decode_batch(encode_batch(batch)) == batch


def test_committed_vllm_payload_decodes() -> None:
    """Bytes written by vLLM 0.32's own encoder classes (tests/fixtures/README.md says how)."""
    batch = decode_batch(FIXTURE.read_bytes())
    kinds = [type(e).__name__ for e in batch.events]
    assert kinds == ["BlockStored", "BlockStored", "BlockRemoved", "AllBlocksCleared"]
    first, second = batch.events[0], batch.events[1]
    assert isinstance(first, BlockStored) and isinstance(second, BlockStored)
    assert first.parent_block_hash is None and len(first.token_ids) == BS * len(first.block_hashes)
    assert second.lora_name == "food-review" and second.extra_keys == [("food-review",)]
    assert encode_batch(batch) == FIXTURE.read_bytes()  # our encoder writes the same bytes back


@pytest.mark.skipif(not vllm_env.present(), reason=f"{vllm_env.VLLM_PYTHON} not found (make vllm-env)")
def test_same_bytes_as_vllms_own_encoder(vllm_python: Path) -> None:
    script = """
import json, sys, msgspec
from vllm.distributed.kv_events import AllBlocksCleared, BlockRemoved, BlockStored, KVEventBatch
spec = json.loads(sys.argv[1])
events = [BlockStored(**spec["stored"]), BlockRemoved(**spec["removed"]), AllBlocksCleared()]
sys.stdout.write(msgspec.msgpack.Encoder().encode(KVEventBatch(ts=spec["ts"], events=events, data_parallel_rank=0)).hex())
"""
    stored = {"block_hashes": [2**63 + 5, 7], "parent_block_hash": 11, "token_ids": TOKENS[: 2 * BS],
              "block_size": BS, "lora_id": 1, "medium": "GPU", "lora_name": "x", "extra_keys": [["x"], ["x"]],
              "group_idx": 0}  # fmt: skip
    removed = {"block_hashes": [7], "medium": "GPU", "group_idx": 0}
    spec = {"ts": 1700000000.25, "stored": stored, "removed": removed}
    proc = subprocess.run(
        [str(vllm_python), "-c", script, json.dumps(spec)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = KVEventBatch(
        ts=spec["ts"],  # type: ignore[arg-type]
        events=[
            msgspec.convert({**stored, "extra_keys": [("x",), ("x",)]}, BlockStored),
            BlockRemoved(**removed),  # type: ignore[arg-type]
            AllBlocksCleared(),
        ],
        data_parallel_rank=0,
    )
    assert encode_batch(ours).hex() == proc.stdout.strip()


def test_unknown_event_kinds_are_skipped_and_older_array_events_read() -> None:
    payload = msgspec.msgpack.encode(
        [
            1.0,
            [{"type": "SomethingNew", "x": 1}, ["BlockRemoved", [5], "GPU"], {"type": "AllBlocksCleared"}],
            0,
        ]
    )
    assert [type(e) for e in decode_batch(payload).events] == [BlockRemoved, AllBlocksCleared]
    with pytest.raises(ValueError):
        decode_batch(b"\xc1 not msgpack")


# -- applying events -----------------------------------------------------------------------------


def test_only_gpu_blocks_of_group_zero_are_indexed() -> None:
    index = KVBlockIndex()
    apply_events(
        index,
        "s",
        [_stored([1], None, TOKENS[:BS], medium="CPU"), _stored([2], None, TOKENS[:BS], group_idx=1)],
    )
    assert index.size("s") == 0
    apply_events(index, "s", [_stored([3], None, TOKENS[:BS], medium=None, group_idx=None)])
    assert index.size("s") == 1
    apply_events(index, "s", [BlockRemoved(block_hashes=[3], medium="CPU")])
    assert index.size("s") == 1  # a CPU-tier removal says nothing about the GPU copy


def test_extra_keys_beyond_the_adapter_change_the_key() -> None:
    index = KVBlockIndex()
    apply_events(index, "s", [_stored([1], None, TOKENS[:BS], lora_name="a", extra_keys=[("a",)])])
    apply_events(index, "t", [_stored([1], None, TOKENS[:BS], lora_name="a", extra_keys=[("a", "salt")])])
    key = chain_keys(TOKENS[:BS], BS, "a")
    assert index.match(key, ["s", "t"]) == {"s": 1, "t": 0}


# -- the stream: sequence numbers, replay, liveness ------------------------------------------------


def _subscriber(index: KVBlockIndex | None = None) -> KVEventSubscriber:
    return KVEventSubscriber(
        Datastore(), lambda _pool: load_scheduler("precise-prefix"), KVEventsSettings(), index
    )


async def test_live_from_the_first_message_cleared_on_a_gap_without_replay() -> None:
    sub = _subscriber()
    stream = _Stream("h:1", replay=None)
    assert not sub.index.is_live("h:1")
    await sub.on_message(stream, _frames(4, _stored([1], None, TOKENS[:BS])))
    assert sub.index.is_live("h:1") and sub.index.size("h:1") == 1
    await sub.on_message(stream, _frames(5, _stored([2], 1, TOKENS[BS : 2 * BS])))
    assert sub.index.size("h:1") == 2
    await sub.on_message(stream, _frames(7, _stored([3], 2, TOKENS[2 * BS :])))  # 6 is lost
    assert not sub.index.is_live("h:1")
    assert sub.index.size("h:1") == 0  # cleared; block 3's parent is unknown, so it indexes nothing
    assert sub.gaps == 1
    await sub.on_message(stream, _frames(8, _stored([9], None, TOKENS[:BS])))
    assert sub.index.is_live("h:1") and sub.index.size("h:1") == 1


async def test_a_sequence_restart_is_a_new_server_with_an_empty_cache() -> None:
    sub = _subscriber()
    stream = _Stream("h:1", replay=None)
    await sub.on_message(stream, _frames(10, _stored([1, 2], None, TOKENS[: 2 * BS])))
    await sub.on_message(stream, _frames(0, _stored([7], None, TOKENS[BS : 2 * BS])))
    assert sub.index.is_live("h:1")
    assert sub.index.match(chain_keys(TOKENS, BS, None), ["h:1"]) == {"h:1": 0}
    assert sub.index.size("h:1") == 1


async def test_an_undecodable_batch_clears_the_stream() -> None:
    sub = _subscriber()
    stream = _Stream("h:1", replay=None)
    await sub.on_message(stream, _frames(0, _stored([1], None, TOKENS[:BS])))
    await sub.on_message(stream, [b"", seq_bytes(1), b"\xc1garbage"])
    assert not sub.index.is_live("h:1") and sub.index.size("h:1") == 0


async def test_a_gap_is_filled_from_the_replay_socket() -> None:
    publisher = ZmqEventPublisher(
        KVEventsConfig(enable_kv_cache_events=True, endpoint="tcp://*:0", replay_endpoint="tcp://*:0")
    )
    publisher.start()
    try:
        batches = [
            [_stored([1], None, TOKENS[:BS])],
            [_stored([2], 1, TOKENS[BS : 2 * BS])],
            [_stored([3], 2, TOKENS[2 * BS :])],
        ]
        for events in batches:
            publisher.publish(events)  # type: ignore[arg-type]
        assert publisher.replay_endpoint is not None
        sub = _subscriber()
        stream = _Stream("h:1", replay=publisher.replay_endpoint.removeprefix("tcp://"))
        await sub.on_message(stream, _frames(0, *batches[0]))
        await sub.on_message(stream, _frames(2, *batches[2]))  # 1 missed: fetched from the replay buffer
        assert sub.replayed == 1 and sub.index.is_live("h:1")
        assert sub.index.match(chain_keys(TOKENS, BS, None), ["h:1"]) == {"h:1": 3}

        stream.replay = "127.0.0.1:1"  # nothing listens there: the replay times out, the stream is cleared
        await sub.on_message(stream, _frames(5, _stored([4], None, TOKENS[:BS])))
        assert not sub.index.is_live("h:1")
    finally:
        await publisher.stop()


# -- following the datastore with real sockets ----------------------------------------------------


def _pool_with(endpoints: list[Endpoint]) -> Datastore:
    ds = Datastore()
    ds.upsert_pool(Pool(name="p", namespace="default", selector={"app": "sim"}, target_ports=[8000]))
    for endpoint in endpoints:
        ds.upsert_endpoint(endpoint)
    return ds


def test_no_subscriber_unless_the_profile_reads_kv_events() -> None:
    ds = Datastore()
    assert kv_event_subscriber(ds, lambda _p: load_scheduler("default"), load_scheduler("default")) is None
    found = kv_event_subscriber(
        ds, lambda _p: load_scheduler("precise-prefix"), load_scheduler("precise-prefix")
    )
    assert isinstance(found, KVEventSubscriber)


async def _until(check: Any, limit_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_subscriber_follows_a_replica_and_binds_the_scorer() -> None:
    kv = KVEventsConfig(enable_kv_cache_events=True, endpoint="tcp://*:0")
    replica = SimReplica(SimConfig(model="tiny", port=0, speed=100, kv_events=kv))
    await replica.start()
    assert replica.kv_events is not None
    events_port = int(replica.kv_events.endpoint.rsplit(":", 1)[1])
    endpoint = Endpoint(
        "sim-0", "127.0.0.1", replica.port, "default/p", labels={PORT_LABEL: str(events_port)}
    )
    ds = _pool_with([endpoint])
    scheduler = load_scheduler("precise-prefix")
    sub = kv_event_subscriber(ds, lambda _p: scheduler, scheduler)
    assert sub is not None
    source = f"127.0.0.1:{events_port}"
    await sub.start()
    try:
        scorer = next(p for p in scheduler.profile.plugins() if isinstance(p, PrecisePrefixCacheScorer))
        assert scorer.kv_index is sub.index

        async def complete(text: str) -> list[int]:
            from inferpool.sim.engine import SimRequest

            done = asyncio.Event()
            tokens = replica.engine.tokenizer.encode(text + " a long shared system prompt" * 20)
            req = SimRequest(text, tokens, 2, ignore_eos=True)
            req.on_token = lambda ev: done.set() if ev.finish_reason else None  # type: ignore[assignment]
            replica.engine.add_request(req)
            await asyncio.wait_for(done.wait(), 30)
            return tokens

        # the SUB may join after the first batches went out (ZMQ's slow joiner): new prompts until one lands
        attempt = 0
        while not sub.index.is_live(source):
            await complete(f"warm-up {attempt}")
            attempt += 1
            await asyncio.sleep(0.05)
            assert attempt < 200
        assert replica.engine.reset_prefix_cache()
        tokens = await complete("after reset")  # AllBlocksCleared goes out with this step, then its blocks
        keys = chain_keys(tokens[:-1], replica.engine.pool.block_size, None)
        await _until(lambda: sub.index.match(keys, [source])[source] == len(keys))
        assert sub.index.size(source) == len(replica.engine.pool.cached) == len(keys)

        await replica.stop()  # the PUB socket closes: the stream is no longer live
        await _until(lambda: not sub.index.is_live(source))
        assert sub.index.size(source) == 0

        ds.remove_endpoint("default/p", "sim-0")
        await _until(lambda: source not in sub.index.sources())
    finally:
        await sub.stop()
        await replica.stop()


async def test_both_runtimes_start_a_subscriber_only_for_a_profile_that_reads_kv_events() -> None:
    from inferpool.extproc.app import EppApp, EppConfig
    from inferpool.gateway.runtime import GatewayRuntime, RuntimeConfig

    assert isinstance(
        GatewayRuntime([], RuntimeConfig(profile="precise-prefix")).core.kv_events, KVEventSubscriber
    )
    assert GatewayRuntime([], RuntimeConfig()).core.kv_events is None
    assert isinstance(
        EppApp(EppConfig(scheduler="precise-prefix"), Datastore()).core.kv_events, KVEventSubscriber
    )
    assert EppApp(EppConfig(scheduler="default"), Datastore()).core.kv_events is None


async def test_scoring_falls_back_to_approximate_after_a_gap_and_is_precise_again_once_caught_up() -> None:
    from inferpool.scheduling import SchedulingRequest

    scheduler = load_scheduler("precise")
    scorer = next(p for p in scheduler.profile.plugins() if isinstance(p, PrecisePrefixCacheScorer))
    sub = KVEventSubscriber(Datastore(), lambda _p: scheduler, KVEventsSettings())
    scorer.bind_kv_index(sub.index)
    a = Endpoint("a", "10.0.0.1", 8000, "default/p")
    stream = _Stream(KVEventsSettings().source(a), replay=None)
    ids = [*TOKENS, 7]  # three full blocks to match, then the token vLLM never serves from cache

    def score() -> float:
        body = {"model": "m", "prompt": ids}
        request = SchedulingRequest(
            "r", "default/p", "m", " ".join(map(str, ids)), lora_adapter=False, body=body
        )
        return scorer.score(request, [a])[a]

    assert score() == 0.0  # no events yet: approximate, which never saw the prompt
    await sub.on_message(stream, _frames(0, _stored([1, 2, 3], None, TOKENS)))
    assert score() == 1.0
    body = {"model": "m", "prompt": ids}
    routed = SchedulingRequest("r", "default/p", "m", " ".join(map(str, ids)), lora_adapter=False, body=body)
    scorer.on_routed(routed, a)  # now the approximate index would say 1.0 too; the exact one decides below
    await sub.on_message(stream, _frames(5, BlockRemoved(block_hashes=[99], medium="GPU")))  # 1-4 lost
    assert not sub.index.is_live(stream.source) and sub.index.size(stream.source) == 0  # no replay: cleared
    assert score() == 1.0  # approximate until caught up (the cleared exact index would say 0)
    await sub.on_message(stream, _frames(6, _stored([1], None, TOKENS[:BS])))
    assert sub.index.is_live(stream.source) and score() == pytest.approx(1 / 3)  # exact again
    await sub.on_message(stream, _frames(0, _stored([8], None, [5] * BS)))  # restarted: empty cache
    assert sub.index.is_live(stream.source) and score() == 0.0
    await sub.on_message(stream, _frames(1, AllBlocksCleared(), _stored([1, 2, 3], None, TOKENS)))
    assert score() == 1.0
    await sub.on_message(stream, _frames(2, AllBlocksCleared()))
    assert sub.index.is_live(stream.source) and score() == 0.0
