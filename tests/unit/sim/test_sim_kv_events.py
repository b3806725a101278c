"""The simulated engine's KV-cache events: what vLLM's block pool would emit, step by step."""

from __future__ import annotations

import asyncio
import random

import pytest
import zmq
import zmq.asyncio

from inferpool.kvwire import (
    END_SEQ,
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEvent,
    decode_batch,
    decode_seq,
    encode_batch,
    seq_bytes,
)
from inferpool.kvwire import KVEventBatch as WireBatch
from inferpool.scrape.kvevents import apply_events
from inferpool.sim.config import SimConfig
from inferpool.sim.engine import Engine, SimRequest
from inferpool.sim.kvevents import KVEventQueue, KVEventsConfig, offset_endpoint_port
from inferpool.sim.profile import HardwareProfile, load_profile
from inferpool.sim.replica import SimReplica
from inferpool.state.kvindex import KVBlockIndex, chain_keys

BS = 16
MASK = (1 << 64) - 1


def _engine(num_blocks: int = 2000) -> tuple[Engine, list[list[KVEvent]]]:
    base = load_profile("llama-3.1-8b-h100").model_dump()
    base.update(name="test", num_gpu_blocks=num_blocks)
    engine = Engine(HardwareProfile.model_validate(base))
    queue = engine.pool.events = KVEventQueue(engine.pool.block_size, {"food-review": 1})
    batches: list[list[KVEvent]] = []
    engine.step_hooks.append(lambda _r: batches.append(queue.take()))
    return engine, batches


def _run(
    engine: Engine, rid: str, tokens: list[int], max_tokens: int = 4, lora: str | None = None
) -> SimRequest:
    req = SimRequest(rid, tokens, max_tokens, lora=lora, ignore_eos=True)
    engine.add_request(req)
    engine.run_until_idle()
    return req


def _events(batches: list[list[KVEvent]]) -> list[KVEvent]:
    return [e for batch in batches for e in batch]


def test_full_prompt_blocks_are_stored_once_with_their_tokens() -> None:
    engine, batches = _engine()
    tokens = list(range(100, 100 + 5 * BS + 3))
    req = _run(engine, "a", tokens)
    stored = [e for e in _events(batches) if isinstance(e, BlockStored)]
    assert len(stored) == 1  # one prefill step: the five full blocks in one event, as vLLM
    event = stored[0]
    assert event.parent_block_hash is None
    assert event.block_hashes == [h & MASK for h in req.block_hashes[:5]]
    assert event.token_ids == tokens[: 5 * BS]
    assert (event.block_size, event.medium, event.group_idx) == (BS, "GPU", 0)
    assert (event.lora_id, event.lora_name, event.extra_keys) == (None, None, [None] * 5)


def test_a_shared_prefix_stores_only_the_new_blocks_chained_on_the_last_hit() -> None:
    engine, batches = _engine()
    shared = list(range(1000, 1000 + 4 * BS))
    first = _run(engine, "a", [*shared, *range(5000, 5000 + 2 * BS)])
    batches.clear()
    _run(engine, "b", [*shared, *range(7000, 7000 + 2 * BS)])
    stored = [e for e in _events(batches) if isinstance(e, BlockStored)]
    assert [len(e.block_hashes) for e in stored] == [2]
    assert stored[0].parent_block_hash == first.block_hashes[3] & MASK
    assert stored[0].token_ids == list(range(7000, 7000 + 2 * BS))


def test_decode_blocks_are_stored_as_they_fill() -> None:
    engine, batches = _engine()
    _run(engine, "a", list(range(1, BS + 1)), max_tokens=2 * BS + 2)
    stored = [e for e in _events(batches) if isinstance(e, BlockStored)]
    assert sum(len(e.block_hashes) for e in stored) == 3  # the prompt block and two generated ones
    assert all(len(e.token_ids) == BS * len(e.block_hashes) for e in stored)


def test_lora_blocks_carry_the_adapter_as_vllm_does() -> None:
    engine, batches = _engine()
    _run(engine, "a", list(range(1, 2 * BS + 2)), lora="food-review")
    _run(engine, "b", list(range(1, 2 * BS + 2)), lora="cad")
    stored = [e for e in _events(batches) if isinstance(e, BlockStored)]
    assert [(e.lora_id, e.lora_name, e.extra_keys) for e in stored] == [
        (1, "food-review", [("food-review",)] * 2),
        (2, "cad", [("cad",)] * 2),  # an adapter first seen now gets the next id
    ]


def test_eviction_emits_block_removed_for_the_cached_hash() -> None:
    engine, batches = _engine(num_blocks=1 + 8)
    first = _run(engine, "a", list(range(1, 6 * BS + 2)))
    batches.clear()
    _run(engine, "b", list(range(9000, 9000 + 6 * BS + 2)))
    removed = [h for e in _events(batches) if isinstance(e, BlockRemoved) for h in e.block_hashes]
    assert removed  # eight blocks cannot hold both prompts
    assert set(removed) <= {h & MASK for h in first.block_hashes}
    assert all(
        e.medium == "GPU" and e.group_idx == 0 for e in _events(batches) if isinstance(e, BlockRemoved)
    )


def test_reset_prefix_cache_is_refused_while_blocks_are_held_then_clears() -> None:
    engine, _ = _engine()
    req = SimRequest("a", list(range(1, 3 * BS)), 50, ignore_eos=True)
    engine.add_request(req)
    engine.step()
    assert engine.reset_prefix_cache() is False
    engine.run_until_idle()
    assert engine.pool.cached
    assert engine.reset_prefix_cache() is True
    assert not engine.pool.cached
    assert engine.pool.events is not None
    assert engine.pool.events.take() == [AllBlocksCleared()]  # queued: vLLM publishes it with the next step


def test_reset_running_requests_preempts_them_first() -> None:
    engine, _ = _engine()
    engine.add_request(SimRequest("a", list(range(1, 3 * BS)), 50, ignore_eos=True))
    engine.step()
    assert engine.reset_prefix_cache(reset_running_requests=True) is True
    engine.run_until_idle()  # the preempted request recomputes and finishes
    assert not engine.has_work()


def test_index_fed_by_the_events_mirrors_the_engine_cache_exactly() -> None:
    """Random prompts over shared prefixes with heavy eviction; every step's batch goes through the wire."""
    rng = random.Random(7)
    engine, batches = _engine(num_blocks=1 + 40)
    index = KVBlockIndex()
    prefixes = [[rng.randrange(3, 50_000) for _ in range(rng.choice([BS, 3 * BS, 5 * BS]))] for _ in range(6)]
    requests: list[SimRequest] = []
    for i in range(60):
        tokens = rng.choice(prefixes) + [rng.randrange(3, 50_000) for _ in range(rng.randrange(1, 2 * BS))]
        req = SimRequest(f"r{i}", tokens, rng.randrange(1, 20), lora=rng.choice([None, None, "food-review"]))
        engine.add_request(req)
        requests.append(req)
        for _ in range(rng.randrange(1, 4)):
            engine.step()
        for batch in batches:
            apply_events(index, "sim", decode_batch(encode_batch(WireBatch(ts=0.0, events=batch))).events)
        batches.clear()
    engine.run_until_idle()
    for batch in batches:
        apply_events(index, "sim", decode_batch(encode_batch(WireBatch(ts=0.0, events=batch))).events)

    assert index.size("sim") == len(engine.pool.cached)
    checked = 0
    for req in requests:
        keys = chain_keys(req.all_token_ids(), BS, req.lora)
        for key, block_hash in zip(keys, req.block_hashes, strict=False):
            cached = block_hash in engine.pool.cached
            assert index.match([key], ["sim"])["sim"] == int(cached)
            checked += cached
    assert checked > 50


def test_for_replica_offsets_ports_as_vllm_offsets_dp_ranks() -> None:
    cfg = KVEventsConfig.from_json('{"enable_kv_cache_events": true, "replay_endpoint": "tcp://*:6000"}')
    assert cfg.publisher == "zmq" and cfg.publishes
    second = cfg.for_replica(2)
    assert (second.endpoint, second.replay_endpoint) == ("tcp://*:5559", "tcp://*:6002")
    assert offset_endpoint_port("tcp://*:0", 3) == "tcp://*:0"
    assert offset_endpoint_port("inproc://x", 1) == "inproc://x_dp1"
    assert not KVEventsConfig.from_json('{"publisher": "zmq"}').publishes  # events not enabled
    with pytest.raises(ValueError, match="enable_kv_cache_event"):
        KVEventsConfig.from_json('{"enable_kv_cache_event": true}')
    with pytest.raises(ValueError, match="not JSON"):
        KVEventsConfig.from_json("{")


async def test_replica_publishes_one_batch_per_step_and_replays_them() -> None:
    kv = KVEventsConfig(enable_kv_cache_events=True, endpoint="tcp://*:0", replay_endpoint="tcp://*:0")
    replica = SimReplica(SimConfig(model="tiny", port=0, speed=100, kv_events=kv))
    await replica.start()
    ctx = zmq.asyncio.Context()
    dealer = ctx.socket(zmq.DEALER)
    try:
        assert replica.kv_events is not None and replica.kv_events.replay_endpoint is not None
        assert replica.kv_events.endpoint.startswith("tcp://127.0.0.1:")
        engine = replica.engine
        for i in range(3):
            req = SimRequest(
                f"x{i}", engine.tokenizer.encode(f"prompt {i} " + "word " * 40), 3, ignore_eos=True
            )
            done = asyncio.Event()
            req.on_token = lambda ev, d=done: d.set() if ev.finish_reason else None  # type: ignore[misc]
            engine.add_request(req)
            await asyncio.wait_for(done.wait(), 30)
        dealer.connect(replica.kv_events.replay_endpoint)
        await dealer.send_multipart([b"", seq_bytes(0)])
        seqs, kinds = [], []
        while True:
            frames = await asyncio.wait_for(dealer.recv_multipart(), 10)
            if frames[2] == END_SEQ:
                break
            seqs.append(decode_seq(frames[2]))
            kinds.append([type(e).__name__ for e in decode_batch(frames[3]).events])
        assert seqs == list(range(len(seqs))) and seqs  # consecutive from 0
        assert all(kinds)  # steps without events publish nothing
        assert sum(k.count("BlockStored") for k in kinds) == 3
    finally:
        dealer.close(0)
        ctx.term()
        await replica.stop()
