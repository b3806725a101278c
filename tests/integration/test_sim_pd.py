"""P/D between simulated replicas over real HTTP on loopback, with the shared protocol's exact leg bodies.

The prefill leg is request/disagg.prefill_request(body), the decode leg decode_request(body, params)
with the params transfer_params_of(prefill answer) found: what the gateway and the sidecar send.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from inferpool.request.disagg import decode_request, prefill_request, transfer_params_of
from inferpool.sim import SimConfig, SimReplica
from inferpool.sim.nixl import KVTransferConfig

from .conftest import free_port, sim_argv

SPEED = 50.0
PROMPT = "Summarise the following meeting notes for the team. " * 40
PARAM_KEYS = ["do_remote_prefill", "do_remote_decode", "remote_block_ids", "remote_engine_id", "remote_request_id",
              "remote_host", "remote_port", "tp_size", "dcp_size", "pp_size", "remote_num_tokens",
              "remote_blocks_expiry_time", "transfer_mode"]  # fmt: skip


def _kv(role: str, **extra: Any) -> KVTransferConfig:
    """A long lease unless the test sets one: at speed 50, vLLM's 30 s would be 0.6 s of a busy machine."""
    extra.setdefault("kv_connector_extra_config", {"kv_lease_duration": 600})
    return KVTransferConfig.model_validate({"kv_connector": "NixlConnector", "kv_role": role, **extra})


async def _replica(kv: KVTransferConfig | None, speed: float = SPEED) -> SimReplica:
    rep = SimReplica(SimConfig(port=0, speed=speed, kv_transfer=kv.for_replica(0, 1) if kv else None))
    await rep.start()
    return rep


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def _post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with session.post(url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def _state(session: aiohttp.ClientSession, rep: SimReplica) -> dict[str, Any]:
    async with session.get(rep.url + "/sim/admin/state") as resp:
        return dict(await resp.json())


async def _metric(session: aiohttp.ClientSession, rep: SimReplica, name: str) -> float:
    async with session.get(rep.url + "/metrics") as resp:
        text = await resp.text()
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


async def _until(check: Any) -> None:
    """Poll `check` until true, for at most 5 s."""
    async with asyncio.timeout(5.0):
        while not await check():  # noqa: ASYNC110 - state seen over HTTP has no event to wait on
            await asyncio.sleep(0.02)


async def test_completion_prefill_then_decode(session: aiohttp.ClientSession) -> None:
    prefill, decode = await _replica(_kv("kv_producer")), await _replica(_kv("kv_consumer"))
    try:
        body = {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "prompt": PROMPT,
            "max_tokens": 12,
            "ignore_eos": True,
        }
        status, answer = await _post(session, prefill.url + "/v1/completions", prefill_request(body))
        assert status == 200 and answer["usage"]["completion_tokens"] == 1
        params = answer["kv_transfer_params"]
        assert list(params) == PARAM_KEYS
        prompt_tokens = answer["usage"]["prompt_tokens"]
        num_blocks = -(-prompt_tokens // 16)
        assert params["do_remote_prefill"] is True and params["do_remote_decode"] is False
        assert len(params["remote_block_ids"]) == 1 and len(params["remote_block_ids"][0]) == num_blocks
        assert params["remote_engine_id"] == prefill.kv_connector.engine_id  # type: ignore[union-attr]
        assert (params["remote_host"], params["remote_port"]) == ("127.0.0.1", prefill.port)
        assert params["remote_num_tokens"] == prompt_tokens and params["transfer_mode"] == "pull"
        held = await _state(session, prefill)
        assert held["kv_held_requests"] == 1 and held["kv_cache_usage"] > 0  # pinned, counted as used

        found = transfer_params_of(answer)
        assert found is not None and found == params
        status, decoded = await _post(session, decode.url + "/v1/completions", decode_request(body, found))
        assert status == 200, decoded
        assert decoded["usage"]["prompt_tokens"] == prompt_tokens
        assert decoded["usage"]["completion_tokens"] == 12
        assert (
            decoded["usage"]["prompt_tokens_details"]["cached_tokens"] == prompt_tokens
        )  # as vLLM's decoder
        assert decoded["kv_transfer_params"] is None

        async def released() -> bool:
            state = await _state(session, prefill)
            return state["kv_held_requests"] == 0 and state["kv_cache_usage"] == 0.0

        await _until(released)
        assert await _metric(session, decode, "vllm:nixl_xfer_time_seconds_count") == 1
        assert await _metric(session, decode, "vllm:nixl_bytes_transferred_sum") == num_blocks * 16 * 131072
        assert await _metric(session, decode, "vllm:nixl_num_descriptors_sum") == num_blocks * 64
        assert await _metric(session, decode, "vllm:prefix_cache_hits_total") == 0
        assert await _metric(session, decode, "vllm:external_prefix_cache_hits_total") == prompt_tokens
        assert await _metric(session, decode, "vllm:nixl_num_failed_transfers_total") == 0
        assert await _metric(session, prefill, "vllm:nixl_num_kv_expired_reqs_total") == 0
        assert await _metric(session, prefill, "vllm:nixl_xfer_time_seconds_count") == 0  # the reader counts
    finally:
        await prefill.stop()
        await decode.stop()


async def test_prefill_leg_of_an_n3_request_computes_the_prompt_once(session: aiohttp.ClientSession) -> None:
    prefill = await _replica(_kv("kv_producer"))
    try:
        body = {"prompt": PROMPT, "max_tokens": 12, "n": 3, "min_tokens": 5}
        before = await _metric(session, prefill, "vllm:prompt_tokens_total")
        status, answer = await _post(session, prefill.url + "/v1/completions", prefill_request(body))
        assert status == 200
        after = await _metric(session, prefill, "vllm:prompt_tokens_total")
        assert after - before == answer["usage"]["prompt_tokens"]  # one prompt, not three
        assert len(answer["choices"]) == 1
        assert (await _state(session, prefill))["kv_held_requests"] == 1  # one set of blocks to pull
    finally:
        await prefill.stop()


async def test_chat_streamed_decode_reports_usage_once(session: aiohttp.ClientSession) -> None:
    prefill, decode = await _replica(_kv("kv_both")), await _replica(_kv("kv_both"))
    try:
        body = {"messages": [{"role": "user", "content": PROMPT}], "max_completion_tokens": 8, "ignore_eos": True,
                "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
        leg = prefill_request(body)
        assert leg["stream"] is False and leg["max_completion_tokens"] == 1
        status, answer = await _post(session, prefill.url + "/v1/chat/completions", leg)
        assert status == 200 and answer["object"] == "chat.completion"
        params = transfer_params_of(answer)
        assert params is not None
        events: list[Any] = []
        async with session.post(
            decode.url + "/v1/chat/completions", json=decode_request(body, params)
        ) as resp:
            assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
            async for raw in resp.content:
                line = raw.decode().strip()
                if line.startswith("data: ") and line != "data: [DONE]":
                    events.append(json.loads(line[6:]))
        usage = [e["usage"] for e in events if e.get("usage")]
        assert len(usage) == 1 and usage[0]["completion_tokens"] == 8
        assert usage[0]["prompt_tokens_details"]["cached_tokens"] == answer["usage"]["prompt_tokens"]
        text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
        assert text
    finally:
        await prefill.stop()
        await decode.stop()


async def test_unread_blocks_expire_and_a_late_read_reads_stale_blocks(
    session: aiohttp.ClientSession,
) -> None:
    # a 6 s lease at speed 50 lasts 0.12 s of wall time
    prefill = await _replica(_kv("kv_producer", kv_connector_extra_config={"kv_lease_duration": 6}))
    decode = await _replica(_kv("kv_consumer"))
    try:
        body = {"prompt": PROMPT, "max_tokens": 4}
        _, answer = await _post(session, prefill.url + "/v1/completions", prefill_request(body))
        params = transfer_params_of(answer)
        assert params is not None

        async def expired() -> bool:
            return await _metric(session, prefill, "vllm:nixl_num_kv_expired_reqs_total") == 1

        await _until(expired)
        state = await _state(session, prefill)
        assert state["kv_held_requests"] == 0 and state["kv_cache_usage"] == 0.0
        # NIXL reads blocks by id: the decoder is not told, the prefill side counts the late notification
        status, decoded = await _post(session, decode.url + "/v1/completions", decode_request(body, params))
        assert status == 200, decoded
        assert await _metric(session, prefill, "vllm:nixl_num_notifications_after_expiry_total") == 1
        assert await _metric(session, decode, "vllm:nixl_num_failed_transfers_total") == 0
    finally:
        await prefill.stop()
        await decode.stop()


async def test_heartbeats_keep_a_queued_decoders_blocks(session: aiohttp.ClientSession) -> None:
    # lease 30 s on both (as vLLM, each side reads its own): the decoder renews every 5 s by 20 s;
    # without it the blocks would go after 30 s
    lease = {"kv_lease_duration": 30}
    prefill = await _replica(_kv("kv_producer", kv_connector_extra_config=lease))
    decode = await _replica(_kv("kv_consumer", kv_connector_extra_config=lease))
    try:
        _, answer = await _post(session, prefill.url + "/v1/completions", prefill_request({"prompt": PROMPT}))
        params = transfer_params_of(answer)
        assert params is not None
        # the decoder has the request queued but not admitted: it heartbeats as vLLM's does
        from inferpool.sim.engine import SimRequest

        queued = SimRequest("queued", [1, 2, 3], 1, kv_transfer_params=params)
        assert decode.kv_connector is not None
        decode.kv_connector.on_new_request(queued)
        await asyncio.sleep(60 / SPEED)  # 60 simulated seconds, twice the lease
        assert (await _state(session, prefill))["kv_held_requests"] == 1
        decode.kv_connector.request_finished(queued)  # stops the heartbeats (and frees the blocks now)

        async def freed() -> bool:
            return (await _state(session, prefill))["kv_held_requests"] == 0

        await _until(freed)
        assert await _metric(session, prefill, "vllm:nixl_num_kv_expired_reqs_total") == 0
    finally:
        await prefill.stop()
        await decode.stop()


@pytest.mark.parametrize("stream", [False, True])
async def test_failed_pull_fails_the_request_under_vllms_default_policy(
    session: aiohttp.ClientSession, stream: bool
) -> None:
    prefill, decode = await _replica(_kv("kv_producer")), await _replica(_kv("kv_consumer"))
    try:
        body = {"prompt": PROMPT, "max_tokens": 4, "stream": stream}
        _, answer = await _post(session, prefill.url + "/v1/completions", prefill_request(body))
        params = transfer_params_of(answer)
        assert params is not None
    finally:
        await prefill.stop()  # the prefill replica is gone before the decoder reads
    try:
        async with session.post(decode.url + "/v1/completions", json=decode_request(body, params)) as resp:
            raw = await resp.read()
            if stream:
                assert resp.status == 200
                events = [ln[6:] for ln in raw.decode().splitlines() if ln.startswith("data: ")]
                assert events[-1] == "[DONE]"
                error = json.loads(events[-2])["error"]
            else:
                assert resp.status == 500
                error = json.loads(raw)["error"]
        assert error == {"message": "Internal server error", "type": "InternalServerError", "param": None,
                         "code": 500}  # fmt: skip
        assert await _metric(session, decode, "vllm:nixl_num_failed_transfers_total") == 1
        assert (await _state(session, decode))["kv_cache_usage"] == 0.0
    finally:
        await decode.stop()


async def test_failed_pull_prefills_locally_under_recompute_policy(session: aiohttp.ClientSession) -> None:
    prefill = await _replica(_kv("kv_producer"))
    decode = await _replica(_kv("kv_consumer", kv_load_failure_policy="recompute"))
    try:
        body = {"prompt": PROMPT, "max_tokens": 6, "ignore_eos": True}
        _, answer = await _post(session, prefill.url + "/v1/completions", prefill_request(body))
        params = transfer_params_of(answer)
        assert params is not None
        # an unknown engine id: the prefill replica restarted (vLLM's handshake fails the same way)
        stale = {**params, "remote_engine_id": "engine-before-restart"}
        status, decoded = await _post(session, decode.url + "/v1/completions", decode_request(body, stale))
        assert status == 200 and decoded["usage"]["completion_tokens"] == 6
        assert decoded["usage"]["prompt_tokens_details"]["cached_tokens"] == 0  # computed here after all
        assert await _metric(session, decode, "vllm:nixl_num_failed_transfers_total") == 1
        assert await _metric(session, decode, "vllm:nixl_xfer_time_seconds_count") == 0
        assert (await _state(session, prefill))["kv_held_requests"] == 1  # untouched: expires on its lease
    finally:
        await prefill.stop()
        await decode.stop()


async def test_without_a_connector_kv_transfer_params_are_ignored(session: aiohttp.ClientSession) -> None:
    plain_prefill, plain_decode = await _replica(None), await _replica(None)
    try:
        body = {"prompt": PROMPT, "max_tokens": 3, "ignore_eos": True}
        status, answer = await _post(session, plain_prefill.url + "/v1/completions", prefill_request(body))
        assert status == 200 and answer["kv_transfer_params"] is None  # as vLLM without a KV connector
        assert transfer_params_of(answer) is None
        assert (await _state(session, plain_prefill))["kv_cache_usage"] == 0.0
        fake = {"do_remote_prefill": True, "do_remote_decode": False, "remote_block_ids": [[1, 2]],
                "remote_engine_id": "x", "remote_request_id": "r1", "remote_host": "127.0.0.1",
                "remote_port": free_port()}  # fmt: skip
        status, decoded = await _post(
            session, plain_decode.url + "/v1/completions", decode_request(body, fake)
        )
        assert status == 200 and decoded["usage"]["completion_tokens"] == 3
        status, _ = await _post(session, plain_prefill.url + "/sim/nixl/read", {})
        assert status == 404  # no side channel without a connector
        status, bad = await _post(
            session, plain_decode.url + "/v1/completions", {**body, "kv_transfer_params": 3}
        )
        assert status == 400 and "kv_transfer_params" in bad["error"]["message"]
    finally:
        await plain_prefill.stop()
        await plain_decode.stop()


def test_two_sim_processes_prefill_then_decode(spawn: Any) -> None:
    """`inferpool sim --kv-transfer-config` in two processes: the decoder reaches the prefill over loopback."""
    import urllib.request

    kv = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'
    p_port, d_port = free_port(), free_port()
    p = spawn(sim_argv(p_port, "--speed", str(SPEED), "--kv-transfer-config", kv))
    d = spawn(
        sim_argv(
            d_port, "--speed", str(SPEED), "--kv-transfer-config", kv, "--kv-interconnect", "nvlink-h100"
        )
    )
    line = p.wait_for_line(r"ready at .* kv-transfer=NixlConnector/kv_both engine-id=(\S+)")
    d.wait_for_line("ready at")

    def post(port: int, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as resp:
            return dict(json.loads(resp.read()))

    body = {"prompt": PROMPT, "max_tokens": 5, "ignore_eos": True}
    answer = post(p_port, prefill_request(body))
    params = transfer_params_of(answer)
    assert params is not None and params["remote_engine_id"] == line.group(1)
    assert params["remote_port"] == p_port
    decoded = post(d_port, decode_request(body, params))
    assert decoded["usage"]["prompt_tokens_details"]["cached_tokens"] == answer["usage"]["prompt_tokens"]
    with urllib.request.urlopen(f"http://127.0.0.1:{d_port}/metrics", timeout=10) as resp:
        page = resp.read().decode()
    assert re.search(r"^vllm:nixl_xfer_time_seconds_count\{[^}]*\} 1\.0$", page, re.M)
