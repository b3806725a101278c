"""Where an endpoint publishes its KV events, on the engine's own word (GET /kv_event_sources)."""

from __future__ import annotations

import asyncio
from typing import Any

from inferpool.bench.procs import free_ports
from inferpool.scheduling import load_scheduler
from inferpool.scrape.kvevents import kv_event_subscriber
from inferpool.sim.config import SimConfig
from inferpool.sim.kvevents import KVEventsConfig
from inferpool.sim.replica import SimReplica
from inferpool.state import Datastore, Endpoint, Pool
from inferpool.state.kvindex import PORT_LABEL, Announced, KVEventsSettings, parse_announcement


def _vllm(endpoint: str, **kw: Any) -> dict[str, Any]:
    """vLLM 0.32's answer: KVEventsConfig per data-parallel rank."""
    config = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": endpoint, "replay_endpoint": None,
              "buffer_steps": 10000, "hwm": 100000, "max_queue_size": 100000, "topic": ""}  # fmt: skip
    return {"0": {**config, **kw}}


def test_announcements_name_a_stream_the_gateway_can_reach() -> None:
    assert parse_announcement(_vllm("tcp://*:6001"), "10.0.0.5") == Announced("10.0.0.5:6001")
    assert parse_announcement(
        _vllm("tcp://0.0.0.0:6001", replay_endpoint="tcp://*:6002", topic="kv"), "fd00::5"
    ) == Announced("[fd00::5]:6001", "[fd00::5]:6002", "kv")
    # vLLM binds ipc paths: reachable only from the same host
    assert parse_announcement(_vllm("ipc:///tmp/kv.sock"), "127.0.0.1") == Announced("ipc:///tmp/kv.sock")
    assert parse_announcement(_vllm("ipc:///tmp/kv.sock"), "10.0.0.5") is None
    # a concrete tcp host is one vLLM connects to; port 0 names no port; events off; nothing announced
    assert parse_announcement(_vllm("tcp://10.0.0.9:6001"), "10.0.0.5") is None
    assert parse_announcement(_vllm("tcp://*:0"), "10.0.0.5") is None
    assert parse_announcement(_vllm("tcp://*:6001", enable_kv_cache_events=False), "10.0.0.5") is None
    assert parse_announcement(_vllm("tcp://*:6001", publisher="null"), "10.0.0.5") is None
    assert parse_announcement({}, "10.0.0.5") is None
    assert parse_announcement(["not", "a", "map"], "10.0.0.5") is None
    two_ranks = {"1": _vllm("tcp://*:6002")["0"], "0": _vllm("tcp://*:6001")["0"]}
    assert parse_announcement(two_ranks, "10.0.0.5") == Announced("10.0.0.5:6001")  # rank 0's


def test_the_label_wins_then_the_announcement_then_the_default_port() -> None:
    settings = KVEventsSettings(port=5557, replay_port=5558, topic="t")
    plain = Endpoint("e-0", "10.0.0.5", 8000, "default/p")
    labelled = Endpoint("e-1", "10.0.0.6", 8000, "default/p", labels={PORT_LABEL: "7000"})
    announced = {
        "10.0.0.5:8000": Announced("10.0.0.5:6001", "10.0.0.5:6002", "kv"),
        "10.0.0.6:8000": Announced("10.0.0.6:6001"),
    }
    assert settings.source(plain) == "10.0.0.5:5557"
    assert settings.source(plain, announced) == "10.0.0.5:6001"
    assert settings.replay_source(plain, announced) == "10.0.0.5:6002"
    assert settings.topic_of(plain, announced) == "kv"
    assert settings.source(labelled, announced) == "10.0.0.6:7000"
    assert settings.replay_source(labelled, announced) == "10.0.0.6:5558"
    assert settings.topic_of(labelled, announced) == "t"


async def _until(check: Any, limit_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _warm(replica: SimReplica, live: Any) -> None:
    """Requests on the replica until the gateway's subscription has seen one (ZMQ's slow joiner)."""
    from inferpool.sim.engine import SimRequest

    for attempt in range(200):
        if live():
            return
        done = asyncio.Event()
        tokens = replica.engine.tokenizer.encode(f"warm-up {attempt}" + " a long shared system prompt" * 20)
        req = SimRequest(f"w{attempt}", tokens, 2, ignore_eos=True)
        req.on_token = lambda ev, done=done: done.set() if ev.finish_reason else None  # type: ignore[misc]
        replica.engine.add_request(req)
        await asyncio.wait_for(done.wait(), 30)
        await asyncio.sleep(0.05)
    raise AssertionError("the stream never went live")


async def test_a_replica_is_found_by_its_announcement_and_again_after_a_restart_moves_it() -> None:
    http, first_events, second_events = free_ports(3)

    def replica(events_port: int) -> SimReplica:
        kv = KVEventsConfig(enable_kv_cache_events=True, endpoint=f"tcp://*:{events_port}")
        return SimReplica(SimConfig(model="tiny", port=http, speed=100, kv_events=kv))

    server = replica(first_events)
    await server.start()
    ds = Datastore()
    ds.upsert_pool(Pool(name="p", namespace="default", selector={"app": "sim"}, target_ports=[8000]))
    ds.upsert_endpoint(Endpoint("sim-0", "127.0.0.1", http, "default/p"))  # no label: only the engine knows
    scheduler = load_scheduler("precise")
    sub = kv_event_subscriber(ds, lambda _p: scheduler, scheduler)
    assert sub is not None
    first, second = f"127.0.0.1:{first_events}", f"127.0.0.1:{second_events}"
    await sub.start()
    try:
        await _until(lambda: first in sub.streams())
        assert sub.index.announced == {f"127.0.0.1:{http}": Announced(first)}
        assert sub.streams() == [first]  # not the default port 5557
        await _warm(server, lambda: sub.index.is_live(first))

        await server.stop()  # the engine restarts with its publisher on another port
        await _until(lambda: not sub.index.is_live(first))
        server = replica(second_events)
        await server.start()
        await _until(lambda: sub.streams() == [second], 60)
        assert sub.index.announced == {f"127.0.0.1:{http}": Announced(second)}
        assert first not in sub.index.sources()
        await _warm(server, lambda: sub.index.is_live(second))
    finally:
        await sub.stop()
        await server.stop()
