"""A simulated vLLM data-parallel rank (`--data-parallel-rank r`, one API server per rank): its metrics
say engine="r", /kv_event_sources names rank r, and its KV-event batches carry r."""

from __future__ import annotations

import asyncio

import aiohttp
import zmq
import zmq.asyncio

from free_ports import free_port
from inferpool.kvwire import decode_batch
from inferpool.scrape.parser import parse_metrics
from inferpool.sim import SimConfig, SimReplica
from inferpool.sim.kvevents import KVEventsConfig
from inferpool.sim.metrics import cache_config_labels
from inferpool.state.kvindex import parse_announcement


async def test_rank_one_labels_its_metrics_and_kv_events_with_its_rank() -> None:
    kv_port = free_port()  # a fixed port: an announcement of port 0 names no reachable stream
    kv = KVEventsConfig(enable_kv_cache_events=True, endpoint=f"tcp://*:{kv_port}")
    replica = SimReplica(SimConfig(model="tiny", port=0, speed=100, kv_events=kv, data_parallel_rank=1))
    await replica.start()
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        assert replica.kv_events is not None
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(replica.kv_events.endpoint)
        await asyncio.sleep(0.2)  # let the subscription reach the publisher
        async with aiohttp.ClientSession() as s:
            body = {"model": "tiny", "prompt": "word " * 40, "max_tokens": 2}
            async with s.post(replica.url + "/v1/completions", json=body) as resp:
                assert resp.status == 200
            async with s.get(replica.url + "/metrics") as resp:
                page = await resp.text()
            async with s.get(replica.url + "/kv_event_sources") as resp:
                sources = await resp.json()
        assert 'engine="1"' in page and 'engine="0"' not in page
        assert parse_metrics(page).cache_num_blocks is not None  # the scraper reads a rank's page as any
        assert list(sources) == ["1"]
        # The gateway follows the rank this port announces (one API server per rank).
        announced = parse_announcement(sources, "127.0.0.1")
        assert announced is not None and announced.source == f"127.0.0.1:{kv_port}"
        frames = await asyncio.wait_for(sub.recv_multipart(), 10)
        assert decode_batch(frames[-1]).data_parallel_rank == 1
    finally:
        sub.close(0)
        ctx.term()
        await replica.stop()


def test_cache_config_info_names_the_engine() -> None:
    replica = SimReplica(SimConfig(model="tiny", port=0))
    assert cache_config_labels(replica.engine, 3)["engine"] == "3"


def test_one_port_serving_several_engines_is_one_endpoint() -> None:
    """vLLM's internal load balancing (one API server for all ranks) reports each engine on one
    page: the endpoint's queue is their sum and its KV-cache use their mean."""
    page = "\n".join(
        [
            'vllm:num_requests_waiting{engine="0",model_name="m"} 2.0',
            'vllm:num_requests_waiting{engine="1",model_name="m"} 3.0',
            'vllm:num_requests_running{engine="0",model_name="m"} 4.0',
            'vllm:num_requests_running{engine="1",model_name="m"} 1.0',
            'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5',
            'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.25',
        ]
    )
    metrics = parse_metrics(page)
    assert (metrics.waiting_queue_size, metrics.running_requests, metrics.kv_cache_usage) == (5, 5, 0.375)
