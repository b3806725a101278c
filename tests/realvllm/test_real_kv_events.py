"""Real vLLM 0.32's KV-cache events, read by inferpool's subscriber and indexed under its chain keys.

The servers of this tier publish with `--kv-events-config` on an ipc path that vLLM binds (a
wildcard tcp address would listen on every interface, not wanted in tests); the test connects
a SUB there and hands each message to the subscriber's handler. test_real_precise.py has the
gateway find and follow the same sockets itself.
"""

from __future__ import annotations

import asyncio
import json

import zmq
import zmq.asyncio

from inferpool.kvwire import BlockStored, decode_batch
from inferpool.scheduling import load_scheduler
from inferpool.scrape.kvevents import KVEventSubscriber, _Stream
from inferpool.state import Datastore
from inferpool.state.kvindex import KVEventsSettings, chain_keys
from realvllm.helpers import post_json
from realvllm.servers import BASE_MODEL, VLLMServer

SENTENCE = "The quick brown fox jumps over the lazy dog. "


async def test_subscriber_indexes_real_vllm_events(vllm_one: VLLMServer) -> None:
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(vllm_one.kv_events_endpoint)
    subscriber = KVEventSubscriber(
        Datastore(), lambda _p: load_scheduler("precise-prefix"), KVEventsSettings()
    )
    stream = _Stream("vllm", replay=None)
    loop = asyncio.get_running_loop()

    async def complete(prompt: str) -> list[list[bytes]]:
        body = {"model": BASE_MODEL, "prompt": prompt, "max_tokens": 2, "ignore_eos": True}
        status, answer, _ = await loop.run_in_executor(
            None, post_json, f"{vllm_one.url}/v1/completions", body
        )
        assert status == 200, answer
        frames = []
        while await sock.poll(3000):
            frames.append(await sock.recv_multipart())
        return frames

    try:
        # a SUB joining a PUB may miss the first batches (ZMQ's slow joiner): new prompts until one arrives
        for attempt in range(20):
            if await complete(f"{attempt} " + SENTENCE * 26):
                break
        else:
            raise AssertionError("no KV events from vLLM")

        prompt = "Hello there. " + SENTENCE * 26  # ~400 tokens: full blocks at vLLM's CPU block size (128)
        frames = await complete(prompt)
        assert frames
        events = [e for f in frames for e in decode_batch(f[2]).events]
        stored = [e for e in events if isinstance(e, BlockStored)]
        assert stored and all(e.medium == "GPU" and e.group_idx == 0 for e in stored)
        for f in frames:
            await subscriber.on_message(stream, f)
        assert subscriber.index.is_live("vllm") and subscriber.gaps == 0

        status, answer, _ = await loop.run_in_executor(
            None, post_json, f"{vllm_one.url}/tokenize", {"model": BASE_MODEL, "prompt": prompt}
        )
        assert status == 200
        ids = json.loads(answer)["tokens"]
        block_size = subscriber.index.block_size("vllm")
        assert block_size == stored[0].block_size
        keys = chain_keys(ids[:-1], block_size, None)
        assert keys  # the prompt spans at least one full block
        assert subscriber.index.match(keys, ["vllm"]) == {
            "vllm": len(keys)
        }  # every block, under our own keys
    finally:
        sock.close(0)
        ctx.term()
