"""`inferpool serve` in front of `inferpool sim`: /v1/embeddings, /v1/responses and /v1/messages pass
through untranslated, streamed and not, with their usage in the access log and their prompts screened."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest

from .conftest import INFERPOOL, free_port, http_ok, sim_argv, wait_until
from .test_gateway_serve import manifests

GUARD = """
---
apiVersion: inferpool.io/v1alpha1
kind: GuardPolicy
metadata: {name: screening}
spec:
  targetRefs: [{kind: Gateway, name: gw}]
  checks:
  - {type: Secrets, action: Block, stages: [Prompt]}
  - {type: PII, action: Redact, stages: [Prompt, Response]}
"""
SECRET = "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture
def stack(spawn, tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    spawn(sim_argv(port, "--model", "tiny", "--speed", "20", "--seed", "7"))
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 60, what="sim")
    (tmp_path / "gw.yaml").write_text(manifests(free_port()) + GUARD)
    endpoints = [{"address": "127.0.0.1", "port": port, "name": "sim-0", "labels": {"app": "sim"}}]
    (tmp_path / "endpoints.yaml").write_text(orjson.dumps({"endpoints": endpoints}).decode())
    gw = spawn(
        [INFERPOOL, "serve", "--no-auth", "-f", str(tmp_path / "gw.yaml"), "--endpoints", str(tmp_path / "endpoints.yaml"),
         "--admin-port", str(free_port())]
    )  # fmt: skip
    url = gw.wait_for_line(r"^gateway\s+(http://\S+)", 60).group(1)
    return url, gw


def _access(gw, request_id: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    def line() -> dict[str, object] | None:
        for text in gw.output().splitlines():
            if text.startswith("{") and request_id in text:
                entry = orjson.loads(text)
                if entry.get("request_id") == request_id:
                    return entry  # type: ignore[no-any-return]
        return None

    wait_until(lambda: line() is not None, 10, what=f"access log of {request_id}")
    entry = line()
    assert entry is not None
    return entry


def _events(raw: bytes) -> list[dict[str, object]]:
    out = []
    for block in raw.decode().split("\n\n"):
        data = [ln[6:] for ln in block.split("\n") if ln.startswith("data: ")]
        if data:
            out.append(orjson.loads(data[0]))
    return out


async def test_each_api_passes_through_with_its_usage_accounted(stack) -> None:  # type: ignore[no-untyped-def]
    url, gw = stack
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:

        async def post(path: str, body: dict[str, object]) -> tuple[int, bytes, str, str]:
            async with s.post(f"{url}{path}", json=body) as resp:
                return (
                    resp.status,
                    await resp.read(),
                    resp.headers["x-request-id"],
                    resp.headers.get("content-type", ""),
                )

        status, raw, rid, _ = await post(
            "/v1/embeddings", {"model": "tiny", "input": ["one text", "two texts"]}
        )
        assert status == 200
        answer = orjson.loads(raw)
        assert len(answer["data"]) == 2
        log = _access(gw, rid)
        assert log["input_tokens"] == answer["usage"]["prompt_tokens"]
        assert log["output_tokens"] == 0

        responses = {
            "model": "tiny",
            "instructions": "Be brief.",
            "input": "Hi there",
            "max_output_tokens": 5,
        }
        status, raw, rid, _ = await post("/v1/responses", responses)
        assert status == 200
        usage = orjson.loads(raw)["usage"]
        log = _access(gw, rid)
        assert (log["input_tokens"], log["output_tokens"]) == (usage["input_tokens"], usage["output_tokens"])

        status, raw, rid, ctype = await post("/v1/responses", {**responses, "stream": True})
        assert status == 200 and ctype.startswith("text/event-stream")
        events = _events(raw)
        assert events[-1]["type"] == "response.completed"
        usage = events[-1]["response"]["usage"]  # type: ignore[index]
        log = _access(gw, rid)
        assert (log["input_tokens"], log["output_tokens"]) == (usage["input_tokens"], usage["output_tokens"])
        assert "ttft_ms" in log

        messages = {
            "model": "tiny",
            "max_tokens": 5,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hi"}],
        }
        status, raw, rid, _ = await post("/v1/messages", messages)
        assert status == 200
        usage = orjson.loads(raw)["usage"]
        log = _access(gw, rid)
        whole_prompt = (
            usage["input_tokens"]
            + usage.get("cache_read_input_tokens", 0)
            + usage.get("cache_creation_input_tokens", 0)
        )
        assert (log["input_tokens"], log["output_tokens"]) == (whole_prompt, usage["output_tokens"])

        status, raw, rid, ctype = await post("/v1/messages", {**messages, "stream": True})
        assert status == 200 and ctype.startswith("text/event-stream")
        events = _events(raw)
        assert [events[0]["type"], events[-1]["type"]] == ["message_start", "message_stop"]
        log = _access(gw, rid)
        assert log["input_tokens"] == events[0]["message"]["usage"]["input_tokens"]  # type: ignore[index]
        assert log["output_tokens"] == events[-2]["usage"]["output_tokens"]  # type: ignore[index]

        # Screening sees the Anthropic prompt (system and content blocks) and refuses a secret in it.
        for bad in (
            {**messages, "system": [{"type": "text", "text": f"key {SECRET}"}]},
            {
                **messages,
                "messages": [{"role": "user", "content": [{"type": "text", "text": f"use {SECRET}"}]}],
            },
        ):
            status, raw, rid, _ = await post("/v1/messages", bad)
            assert status == 400
            assert orjson.loads(raw)["error"]["type"] == "content_filter"
        status, raw, _, _ = await post("/v1/responses", {"model": "tiny", "input": f"key {SECRET}"})
        assert status == 400

        # A malformed body is refused by the gateway with vLLM's 400, before any model server.
        status, raw, rid, _ = await post("/v1/messages", {"model": "tiny", "messages": []})
        error = orjson.loads(raw)["error"]
        assert status == 400 and error["param"] == "body.max_tokens"
        assert "'type': 'missing', 'loc': 'body.max_tokens'" in error["message"]
        log = _access(gw, rid)
        assert "endpoint" not in log  # the gateway answered: no model server saw it
        assert log["model"] == "tiny"  # refused for another field, the body's model is still on record


def _sdk_calls(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)
    embedded = client.embeddings.create(model="tiny", input="through the gateway")
    assert len(embedded.data[0].embedding) > 0
    response = client.responses.create(model="tiny", input="Say hi", max_output_tokens=4)
    assert response.output_text and response.usage is not None
    with client.responses.stream(model="tiny", input="Say hi", max_output_tokens=4) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        assert stream.get_final_response().output_text == text


async def test_openai_sdk_through_the_gateway(stack) -> None:  # type: ignore[no-untyped-def]
    url, _ = stack
    await asyncio.to_thread(_sdk_calls, url + "/v1")
