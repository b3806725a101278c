"""/api/kv-index on the admin port: the precise index's streams, and a prompt's blocks per endpoint."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from inferpool.bench.procs import free_ports
from inferpool.observe.admin import admin_app
from inferpool.observe.decisions import DecisionLog
from inferpool.observe.kvindex_view import KVIndexView
from inferpool.observe.metrics import GatewayMetrics
from inferpool.scheduling import Scheduler, load_scheduler
from inferpool.scrape.kvevents import KVEventSubscriber
from inferpool.state import Datastore, Endpoint, Pool
from inferpool.state.kvindex import PORT_LABEL, KVEventsSettings, chain_keys
from inferpool.tokenization import Tokenizer

PROMPT = "a system prompt every tenant shares, and then a question " * 10


async def _client(view: KVIndexView | None, ds: Datastore) -> TestClient:
    client = TestClient(
        TestServer(admin_app(ds, GatewayMetrics(ds), DecisionLog(), lambda: None, kv_index=view))
    )
    await client.start_server()
    return client


async def test_streams_and_a_prompts_blocks_per_endpoint() -> None:
    ds = Datastore()
    ds.upsert_pool(Pool(name="p", namespace="default", selector={"app": "x"}, target_ports=[8000]))
    # loopback ports where nothing listens: the streams stay connecting, the index is the test's
    port_a, port_b = free_ports(2)
    a = Endpoint("a", "127.0.0.1", 8000, "default/p", labels={PORT_LABEL: str(port_a)})
    b = Endpoint("b", "127.0.0.1", 8001, "default/p", labels={PORT_LABEL: str(port_b)})
    ds.upsert_endpoint(a)
    ds.upsert_endpoint(b)
    scheduler = load_scheduler("precise")
    schedulers: dict[str, Scheduler] = {"default/p": scheduler}
    sub = KVEventSubscriber(ds, schedulers.__getitem__, KVEventsSettings())
    await sub.start()  # one stream per endpoint, the scorer bound to the index
    try:
        index = sub.index
        tokens = Tokenizer(remember_pieces=False).encode(PROMPT)
        source_a = KVEventsSettings().source(a)
        index.set_live(source_a, True)
        index.stored(source_a, [1, 2], None, tokens[:32], 16, None)  # two blocks confirmed
        keys = chain_keys(tokens[:-1], 16, None)
        index.speculate(source_a, keys, 30.0)  # the rest in flight
        client = await _client(KVIndexView(sub, ds, schedulers.__getitem__), ds)
        try:
            got = await (await client.get("/api/kv-index")).json()
            assert got["streams"] == [
                {
                    "source": f"127.0.0.1:{port_a}",
                    "live": True,
                    "block_size": 16,
                    "blocks": 2,
                    "speculative": len(keys) - 2,
                },
                {
                    "source": f"127.0.0.1:{port_b}",
                    "live": False,
                    "block_size": None,
                    "blocks": 0,
                    "speculative": 0,
                },
            ]
            resp = await client.post("/api/kv-index", json={"model": "m", "prompt": PROMPT})
            rows = {r["endpoint"]: r for r in (await resp.json())["endpoints"]}
            assert rows["a"]["prompt_blocks"] == len(keys) and rows["a"]["pool"] == "default/p"
            assert (rows["a"]["held"], rows["a"]["confirmed"]) == (len(keys), 2)
            assert (rows["b"]["held"], rows["b"]["confirmed"], rows["b"]["prompt_blocks"]) == (0, 0, None)
            assert (await client.post("/api/kv-index", data=b"{nope")).status == 400
            assert (await client.post("/api/kv-index", json={"model": "m"})).status == 400
        finally:
            await client.close()
    finally:
        await sub.stop()


async def test_404_when_the_profile_reads_no_kv_events() -> None:
    ds = Datastore()
    client = await _client(None, ds)
    try:
        assert (await client.get("/api/kv-index")).status == 404
    finally:
        await client.close()
