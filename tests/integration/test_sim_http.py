"""The simulator over real HTTP on loopback: endpoints, LoRA admin, bad bodies, engine rules, failures."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from inferpool.bench.procs import free_ports
from inferpool.sim import SimConfig, SimFleet, SimReplica

from .conftest import sim_argv, wait_until


@pytest.fixture
async def replica() -> AsyncIterator[SimReplica]:
    rep = SimReplica(SimConfig(port=0, lora_modules=["food-review"], max_loras=2, speed=50.0))
    await rep.start()
    yield rep
    await rep.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        yield s


async def _post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with session.post(url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


async def test_completion_usage_and_cached_tokens(
    replica: SimReplica, session: aiohttp.ClientSession
) -> None:
    prefix = "You are a helpful food critic. Review the dish in detail. " * 30
    url = replica.url + "/v1/completions"
    s1, first = await _post(session, url, {"prompt": prefix + "Dish one?", "max_tokens": 5})
    s2, second = await _post(session, url, {"model": "meta-llama/Llama-3.1-8B-Instruct",
                                           "prompt": prefix + "Dish two?", "max_tokens": 5})  # fmt: skip
    assert s1 == s2 == 200
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0 and cached % 16 == 0
    u = second["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert second["model"] == "meta-llama/Llama-3.1-8B-Instruct"


async def test_prompt_list_n_and_ignore_eos(replica: SimReplica, session: aiohttp.ClientSession) -> None:
    status, body = await _post(session, replica.url + "/v1/completions",
                               {"prompt": ["one", "two"], "n": 2, "max_tokens": 7, "ignore_eos": True})  # fmt: skip
    assert status == 200
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert all(c["finish_reason"] == "length" for c in body["choices"])
    assert body["usage"]["completion_tokens"] == 28


async def test_same_seed_same_text(replica: SimReplica, session: aiohttp.ClientSession) -> None:
    body = {"prompt": "Tell me a story", "max_tokens": 20, "temperature": 0, "ignore_eos": True}
    _, a = await _post(session, replica.url + "/v1/completions", body)
    _, b = await _post(session, replica.url + "/v1/completions", body)
    assert a["choices"][0]["text"] == b["choices"][0]["text"] != ""


async def test_chat_stream_with_usage_and_lora(replica: SimReplica, session: aiohttp.ClientSession) -> None:
    body = {"model": "food-review", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    async with session.post(replica.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
        raw = await resp.text()
    events = [e[len("data: ") :] for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    import json

    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(chunks) == 1 + 4 + 1
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert {c["model"] for c in chunks} == {"food-review"}


async def test_stream_error_is_plain_json(replica: SimReplica, session: aiohttp.ClientSession) -> None:
    body = {"model": "nope", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    async with session.post(replica.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 404 and resp.headers["content-type"] == "application/json"
        err = await resp.json()
    assert err["error"]["type"] == "NotFoundError" and err["error"]["param"] == "model"


@pytest.mark.parametrize(
    ("body", "status", "err_type", "param"),
    [
        ({"prompt": "x", "max_tokens": "lots"}, 400, "Bad Request", "body.max_tokens"),
        ({"prompt": "x", "temperature": "hot"}, 400, "Bad Request", "body.temperature"),
        ({"prompt": "x", "max_tokens": 0}, 400, "BadRequestError", "max_tokens"),
        ({"prompt": "x", "n": 0}, 400, "BadRequestError", "n"),
        ({"prompt": "x", "temperature": -1}, 400, "BadRequestError", "temperature"),
        ({"max_tokens": 3}, 400, "BadRequestError", "prompt"),
        ({"prompt": "x " * 140_000}, 400, "BadRequestError", "input_tokens"),
        ({"model": "other", "prompt": "x"}, 404, "NotFoundError", "model"),
    ],
)
async def test_bad_completion_bodies(replica: SimReplica, session: aiohttp.ClientSession, body: dict[str, Any],
                                     status: int, err_type: str, param: str) -> None:  # fmt: skip
    got_status, err = await _post(session, replica.url + "/v1/completions", body)
    assert got_status == status
    assert (
        err["error"]["type"] == err_type and err["error"]["param"] == param and err["error"]["code"] == status
    )


async def test_lora_load_unload_cycle(replica: SimReplica, session: aiohttp.ClientSession) -> None:
    url = replica.url
    async with session.post(url + "/v1/load_lora_adapter", json={"lora_name": "cad", "lora_path": "/a/cad",
                                                                 "base_model_name": "x"}) as resp:  # fmt: skip
        assert resp.status == 200 and "Content-Type" not in resp.headers
        assert await resp.text() == "Success: LoRA adapter 'cad' added successfully."
    status, err = await _post(
        session, url + "/v1/load_lora_adapter", {"lora_name": "cad", "lora_path": "/a/cad"}
    )
    assert status == 400 and err["error"]["type"] == "InvalidUserInput"
    status, err = await _post(session, url + "/v1/load_lora_adapter",
                              {"lora_name": "bad", "lora_path": "/models/does-not-exist"})  # fmt: skip
    assert status == 404 and "<path>" in err["error"]["message"]
    async with session.get(url + "/v1/models") as resp:
        models = {m["id"]: m for m in (await resp.json())["data"]}
    assert models["cad"]["parent"] == "meta-llama/Llama-3.1-8B-Instruct" and models["cad"]["root"] == "/a/cad"
    assert models["food-review"]["parent"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert models["meta-llama/Llama-3.1-8B-Instruct"]["max_model_len"] == 131072
    status, _ = await _post(
        session, url + "/v1/completions", {"model": "cad", "prompt": "hi", "max_tokens": 2}
    )
    assert status == 200
    async with session.post(url + "/v1/unload_lora_adapter", json={"lora_name": "cad"}) as resp:
        assert resp.status == 200 and await resp.text() == "Success: LoRA adapter 'cad' removed successfully."
    status, err = await _post(session, url + "/v1/unload_lora_adapter", {"lora_name": "cad"})
    assert status == 404 and err["error"]["type"] == "NotFoundError"
    status, _ = await _post(session, url + "/v1/completions", {"model": "cad", "prompt": "hi"})
    assert status == 404
    status, err = await _post(session, url + "/v1/load_lora_adapter", {"lora_path": "/a/x"})
    assert status == 400 and err["error"]["param"] == "body.lora_name"


async def test_small_endpoints(replica: SimReplica, session: aiohttp.ClientSession) -> None:
    url = replica.url
    async with session.get(url + "/health") as resp:
        assert resp.status == 200 and await resp.read() == b"" and "Content-Type" not in resp.headers
        assert resp.headers["server"] == "uvicorn" and resp.headers["vary"] == "Origin"
    async with session.get(url + "/ping") as resp:
        assert resp.status == 200
    async with session.get(url + "/version") as resp:
        assert await resp.json() == {"version": "0.32.0"}
    async with session.get(url + "/load") as resp:
        assert await resp.json() == {"server_load": 0}
    status, tok = await _post(session, url + "/tokenize", {"prompt": "The quick brown fox"})
    assert status == 200 and tok["tokens"][0] == 1 and tok["count"] == len(tok["tokens"])
    assert tok["token_strs"] is None and tok["max_model_len"] == 131072
    status, chat_tok = await _post(
        session, url + "/tokenize", {"messages": [{"role": "user", "content": "Hi"}]}
    )
    assert status == 200 and chat_tok["tokens"][0] != 1
    status, detok = await _post(session, url + "/detokenize", {"tokens": tok["tokens"]})
    assert detok == {"prompt": "<s>The quick brown fox"}
    status, detok = await _post(session, url + "/detokenize", {"tokens": [999999]})
    assert detok == {"prompt": ""}
    async with session.get(url + "/v1/nope") as resp:
        assert resp.status == 404 and await resp.json() == {"detail": "Not Found"}
    async with session.get(url + "/v1/completions") as resp:
        assert resp.status == 405 and resp.headers["allow"] == "POST"
    async with session.post(url + "/v1/completions", data=b'{"prompt":"x"}',
                            headers={"Content-Type": "text/plain"}) as resp:  # fmt: skip
        assert resp.status == 400 and (await resp.json())["error"]["type"] == "Bad Request"


async def test_metrics_page_names_and_counts(replica: SimReplica, session: aiohttp.ClientSession) -> None:
    await _post(
        session, replica.url + "/v1/completions", {"prompt": "hello", "max_tokens": 3, "ignore_eos": True}
    )
    async with session.get(replica.url + "/metrics") as resp:
        assert resp.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
        text = await resp.text()
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:gpu_cache_usage_perc", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
                 "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
                 "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
                 "vllm:request_time_per_output_token_seconds", "vllm:e2e_request_latency_seconds",
                 "vllm:request_queue_time_seconds", "vllm:lora_requests_info", "vllm:cache_config_info"):  # fmt: skip
        assert f"# TYPE {name} " in text, name
    assert _metric(text, "vllm:generation_tokens_total") == 3
    assert _metric(text, "vllm:time_to_first_token_seconds_count") == 1
    assert 'block_size="16"' in text and 'num_gpu_blocks="28000"' in text
    assert 'vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""}' in text


async def test_kv_exhaustion_preempts_and_waiting_grows(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    profile = tmp_path / "small.yaml"
    profile.write_text("name: small\nnum_gpu_blocks: 48\nmax_model_len: 700\nmax_num_seqs: 64\n")
    rep = SimReplica(SimConfig(port=0, profile=str(profile), speed=20.0))
    await rep.start()
    try:
        body = {"prompt": "a question " * 40, "max_tokens": 200, "ignore_eos": True}
        tasks = [asyncio.create_task(_post(session, rep.url + "/v1/completions", {**body, "seed": i}))
                 for i in range(8)]  # fmt: skip
        max_waiting = 0.0
        while not all(t.done() for t in tasks):
            async with session.get(rep.url + "/metrics") as resp:
                max_waiting = max(max_waiting, _metric(await resp.text(), "vllm:num_requests_waiting"))
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*tasks)
        async with session.get(rep.url + "/metrics") as resp:
            text = await resp.text()
    finally:
        await rep.stop()
    assert all(s == 200 and b["usage"]["completion_tokens"] == 200 for s, b in results)
    assert _metric(text, "vllm:num_preemptions_total") > 0
    assert max_waiting > 0


async def test_ttft_grows_with_queue_depth(session: aiohttp.ClientSession) -> None:
    rep = SimReplica(SimConfig(port=0, speed=10.0))
    await rep.start()
    try:
        url = rep.url + "/v1/completions"
        body = {"max_tokens": 1, "ignore_eos": True}
        await _post(session, url, {**body, "prompt": "warm up"})

        async def mean_ttft(depth: int) -> float:
            async with session.get(rep.url + "/metrics") as resp:
                before = await resp.text()
            await asyncio.gather(*(_post(session, url, {**body, "prompt": f"{depth} {i} " + "word " * 3000})
                                   for i in range(depth)))  # fmt: skip
            async with session.get(rep.url + "/metrics") as resp:
                after = await resp.text()
            name = "vllm:time_to_first_token_seconds"
            total = _metric(after, name + "_sum") - _metric(before, name + "_sum")
            return total / (_metric(after, name + "_count") - _metric(before, name + "_count"))

        shallow = await mean_ttft(1)
        deep = await mean_ttft(24)
    finally:
        await rep.stop()
    assert deep > 3 * shallow


async def test_fail_rate_and_admin_health(session: aiohttp.ClientSession) -> None:
    rep = SimReplica(SimConfig(port=0, speed=50.0, fail_rate=1.0))
    await rep.start()
    try:
        status, err = await _post(session, rep.url + "/v1/completions", {"prompt": "x"})
        assert status == 500 and err["error"]["code"] == 500
        status, _ = await _post(session, rep.url + "/sim/admin/health", {"healthy": False})
        assert status == 200
        async with session.get(rep.url + "/health") as resp:
            assert resp.status == 503
        status, err = await _post(session, rep.url + "/v1/chat/completions",
                                  {"messages": [{"role": "user", "content": "x"}]})  # fmt: skip
        assert status == 503
        await _post(session, rep.url + "/sim/admin/health", {"healthy": True})
        async with session.get(rep.url + "/health") as resp:
            assert resp.status == 200
    finally:
        await rep.stop()


async def test_drop_connections(replica: SimReplica, session: aiohttp.ClientSession) -> None:
    status, _ = await _post(session, replica.url + "/sim/admin/drop-connections", {"count": 2})
    assert status == 200
    for _ in range(2):
        with pytest.raises(aiohttp.ClientError):
            await _post(session, replica.url + "/v1/completions", {"prompt": "x", "max_tokens": 2})
    status, _ = await _post(session, replica.url + "/v1/completions", {"prompt": "x", "max_tokens": 2})
    assert status == 200


async def test_startup_delay_then_ready(session: aiohttp.ClientSession) -> None:
    rep = SimReplica(SimConfig(port=0, startup_delay_s=0.5))
    await rep.start()
    try:
        async with session.get(rep.url + "/health") as resp:
            assert resp.status == 503
        await asyncio.wait_for(rep.wait_ready(), 30)
        async with session.get(rep.url + "/health") as resp:
            assert resp.status == 200
    finally:
        await rep.stop()


async def test_fleet_and_legacy_lora_semantics(session: aiohttp.ClientSession) -> None:
    cfgs = [SimConfig(port=0, lora_modules=["a", "b"], max_loras=1, speed=5.0, lora_info_semantics="legacy")
            for _ in range(2)]  # fmt: skip
    async with SimFleet(cfgs) as fleet:
        assert len(set(fleet.urls)) == 2
        url = fleet.replicas[0].url
        body = {"max_tokens": 100, "ignore_eos": True}
        tasks = [asyncio.create_task(_post(session, url + "/v1/completions",
                                           {**body, "model": "a" if i % 2 == 0 else "b", "prompt": f"p{i}"}))
                 for i in range(4)]  # fmt: skip
        seen = set()
        while not all(t.done() for t in tasks):
            async with session.get(url + "/metrics") as resp:
                text = await resp.text()
            seen.update(re.findall(r'running_lora_adapters="([^"]*)",waiting_lora_adapters="([^"]*)"', text))
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
    assert ("a", "b") in seen  # legacy: a runs while b waits for the only slot


async def test_cli_reports_a_port_in_use_without_a_traceback(spawn: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = spawn(sim_argv(taken.getsockname()[1]))
        wait_until(lambda: proc.popen.poll() is not None, 60, what="inferpool sim to exit")
    assert proc.popen.returncode == 1
    assert "inferpool sim: cannot listen" in proc.output()
    assert "Traceback" not in proc.output()


async def test_cli_starts_replicas_and_stops_on_sigint(spawn: Any) -> None:
    port, _ = free_ports(2)  # consecutive: the second replica takes port + 1
    proc = spawn(sim_argv(port, "--replicas", "2", "--lora", "food-review", "--speed", "20"))
    proc.wait_for_line(rf"ready at http://127\.0\.0\.1:{port + 1}", timeout=60)
    async with aiohttp.ClientSession() as s:
        for p in (port, port + 1):
            async with s.get(f"http://127.0.0.1:{p}/v1/models") as resp:
                ids = [m["id"] for m in (await resp.json())["data"]]
                assert ids == ["meta-llama/Llama-3.1-8B-Instruct", "food-review"]
    assert proc.interrupt(timeout=30) == 0


def test_port_0_gives_each_replica_a_free_port_and_says_which(spawn) -> None:  # type: ignore[no-untyped-def]
    # the CLI runs on uvloop, whose server the replica used not to read its port from ("ready at :0"),
    # and `--port 0 --replicas 2` made the second replica port 1
    proc = spawn(sim_argv(0, "--model", "tiny", "--replicas", "2"))
    proc.wait_for_line(r"(?s)ready at .*ready at ")
    ports = [int(p) for p in re.findall(r"ready at http://127\.0\.0\.1:(\d+) ", proc.output())]
    assert len(ports) == 2 and len(set(ports)) == 2 and min(ports) > 1024, proc.output()
    for port in ports:
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # each is listening where it said
