"""Real vLLM's /v1/responses and Anthropic /v1/messages beside `inferpool sim`'s: the same fields
and the same SSE event sequence, and the gateway's accounting reads real vLLM's usage from both.

/v1/embeddings needs a pooling model: the tier's tiny model is served once more as one
(`--runner pooling --convert embed`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from inferpool.request.accounting import ResponseAccounting
from realvllm.helpers import post_json
from realvllm.servers import BASE_MODEL, Process, VLLMServer, free_port, inferpool_argv

RESPONSES = {"model": BASE_MODEL, "instructions": "Be brief.", "input": "Say hello", "max_output_tokens": 4}
MESSAGES = {
    "model": BASE_MODEL,
    "max_tokens": 4,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    work = tmp_path_factory.mktemp("sim")
    argv = inferpool_argv("sim", "--port", str(port), "--model", BASE_MODEL)
    proc = Process("sim", argv, work / "sim.log", env={"VLLM_ENABLE_RESPONSES_API_STORE": "1"})
    proc.start()
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/health", 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


# Anthropic usage's cache fields come with --enable-prompt-tokens-details, which the sim has on by
# default and this tier's vLLM servers leave off.
_PROMPT_DETAILS = frozenset({"cache_read_input_tokens", "cache_creation_input_tokens"})


def _shape_differences(real: Any, sim: Any, where: str = "") -> list[str]:
    """Where the two JSON values differ in keys (values are free; null matches anything)."""
    if real is None or sim is None:
        return []
    if isinstance(real, dict) and isinstance(sim, dict):
        out = [f"{where}.{k}: only in vLLM" for k in real if k not in sim]
        out += [f"{where}.{k}: only in the sim" for k in sim if k not in real and k not in _PROMPT_DETAILS]
        for key in real.keys() & sim.keys():
            out += _shape_differences(real[key], sim[key], f"{where}.{key}")
        return out
    if isinstance(real, list) and isinstance(sim, list):
        return _shape_differences(real[0], sim[0], f"{where}[0]") if real and sim else []
    if isinstance(real, dict | list) or isinstance(sim, dict | list):
        return [f"{where}: {type(real).__name__} in vLLM, {type(sim).__name__} in the sim"]
    return []


def _events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        name = next(ln[7:] for ln in lines if ln.startswith("event: "))
        data = json.loads(next(ln[6:] for ln in lines if ln.startswith("data: ")))
        out.append((name, data))
    return out


def _collapsed(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Event names with runs of the same name as one (answers differ in length, not in order)."""
    names: list[str] = []
    for name, _ in events:
        if not names or names[-1] != name:
            names.append(name)
    return names


def _accounted(raw: bytes, content_type: str) -> ResponseAccounting:
    acct = ResponseAccounting()
    acct.started(200, content_type)
    acct.feed(raw)
    acct.close()
    return acct


@pytest.mark.parametrize(("path", "body"), [("/v1/responses", RESPONSES), ("/v1/messages", MESSAGES)])
def test_whole_answers_match_and_are_accounted(
    vllm_one: VLLMServer, sim: str, path: str, body: dict[str, Any]
) -> None:
    status, real_raw, headers = post_json(vllm_one.url + path, body)
    assert status == 200, real_raw
    sim_status, sim_raw, _ = post_json(sim + path, body)
    assert sim_status == 200, sim_raw
    real, simulated = json.loads(real_raw), json.loads(sim_raw)
    assert _shape_differences(real, simulated) == []
    acct = _accounted(real_raw, headers.get("content-type", "application/json"))
    usage = real["usage"]
    assert acct.usage is not None
    assert acct.usage.completion_tokens == usage["output_tokens"]
    prompt = (
        usage["input_tokens"]
        + usage.get("cache_read_input_tokens", 0)
        + usage.get("cache_creation_input_tokens", 0)
    )
    assert acct.usage.prompt_tokens == prompt > 0


@pytest.mark.parametrize(("path", "body"), [("/v1/responses", RESPONSES), ("/v1/messages", MESSAGES)])
def test_streams_match_and_are_accounted(
    vllm_one: VLLMServer, sim: str, path: str, body: dict[str, Any]
) -> None:
    status, real_raw, headers = post_json(vllm_one.url + path, {**body, "stream": True})
    assert status == 200, real_raw
    _, sim_raw, sim_headers = post_json(sim + path, {**body, "stream": True})
    real, simulated = _events(real_raw), _events(sim_raw)
    assert _collapsed(real) == _collapsed(simulated)
    assert all(data["type"] == name for name, data in real + simulated)
    first_of = {name: data for name, data in reversed(simulated)}
    for name, data in real:
        assert _shape_differences(data, first_of[name], name) == []
    assert sim_headers["content-type"].startswith("text/event-stream")
    acct = _accounted(real_raw, headers["content-type"])
    assert acct.done  # response.completed / message_stop
    final = real[-1][1]["response"]["usage"] if path == "/v1/responses" else real[-2][1]["usage"]
    assert acct.usage is not None and acct.usage.completion_tokens == final["output_tokens"]
    assert acct.first_token_at is not None


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_match_and_are_accounted(vllm_embed: str, sim: str, encoding: str) -> None:
    body = {"model": BASE_MODEL, "input": ["Say hello", "and goodbye"], "encoding_format": encoding}
    status, real_raw, headers = post_json(vllm_embed + "/v1/embeddings", body)
    assert status == 200, real_raw
    _, sim_raw, _ = post_json(sim + "/v1/embeddings", body)
    real, simulated = json.loads(real_raw), json.loads(sim_raw)
    assert _shape_differences(real, simulated) == []
    assert [type(d["embedding"]) for d in real["data"]] == [type(d["embedding"]) for d in simulated["data"]]
    acct = _accounted(real_raw, headers.get("content-type", "application/json"))
    assert acct.usage is not None and acct.usage.prompt_tokens == real["usage"]["prompt_tokens"] > 0


def test_stored_responses_continue_and_unknown_ids_are_the_same_404(vllm_one: VLLMServer, sim: str) -> None:
    """With VLLM_ENABLE_RESPONSES_API_STORE=1 a follow-up continues the stored conversation (its
    input grows by the earlier turn); an id the server never stored is a 404 the sim words alike."""
    for url in (vllm_one.url, sim):
        status, raw, _ = post_json(url + "/v1/responses", RESPONSES)
        assert status == 200, raw
        first = json.loads(raw)
        status, raw, _ = post_json(url + "/v1/responses", {**RESPONSES, "previous_response_id": first["id"]})
        assert status == 200, raw
        assert json.loads(raw)["usage"]["input_tokens"] > first["usage"]["input_tokens"]
    unknown = {**RESPONSES, "previous_response_id": "resp_never_stored"}
    real_status, real_raw, _ = post_json(vllm_one.url + "/v1/responses", unknown)
    sim_status, sim_raw, _ = post_json(sim + "/v1/responses", unknown)
    assert real_status == sim_status == 404, real_raw
    real_error, sim_error = json.loads(real_raw)["error"], json.loads(sim_raw)["error"]
    assert {k: real_error[k] for k in ("message", "type", "param", "code")} == {
        k: sim_error[k] for k in ("message", "type", "param", "code")
    }
