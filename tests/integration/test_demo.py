"""`inferpool demo` as a user runs it: the guide's curl works, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import urllib.error
import urllib.request

import orjson

from .conftest import INFERPOOL, free_port, http_ok, port_is_free, wait_until


def test_demo_guide_curl_then_ctrl_c(spawn) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    proc = spawn([INFERPOOL, "demo", "--speed", "50", "--admin-port", str(admin), "--no-access-log"])
    proc.wait_for_line(r"^ready\.", timeout=90)
    out = proc.output()
    gateway = re.search(r"^gateway\s+(http://127\.0\.0\.1:(\d+))", out, re.M)
    assert gateway, out
    gw_url, gw_port = gateway.group(1), int(gateway.group(2))
    assert "listener port 80 remapped to" in out
    replica_ports = [int(p) for p in re.findall(r"^replica\s+http://127\.0\.0\.1:(\d+)", out, re.M)]
    assert len(replica_ports) == 3
    curl_line = re.search(r"^\s+(curl .*)$", out, re.M)
    assert curl_line, out
    printed = shlex.split(curl_line.group(1))
    assert printed[4] == f"127.0.0.1:{gw_port}/v1/completions"
    body = orjson.loads(printed[-1])
    assert body == {"model": "food-review", "prompt": "What is the best pizza in the world?",
                    "max_tokens": 2048, "temperature": "0"}  # fmt: skip
    assert http_ok(f"http://127.0.0.1:{admin}/readyz")

    # The guide's request, with its Authorization header exactly as its single quotes send it.
    argv = [*printed[:-2], "-H", "Authorization: Bearer $(gcloud auth print-access-token)", *printed[-2:]]
    argv[argv.index("-i")] = "-si"
    result = subprocess.run(argv, capture_output=True, timeout=120)
    head, _, payload = result.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), result.stdout + result.stderr
    completion = orjson.loads(payload)
    assert completion["object"] == "text_completion" and completion["model"] == "food-review"
    assert completion["choices"][0]["text"] and completion["usage"]["completion_tokens"] > 0
    assert "x-gateway-destination-endpoint-served: 127.0.0.1:" in head.lower()
    assert "/api/dashboard /api/stream" in out  # what `top` and the dashboard page read

    # The guide's other adapter: loaded on every replica, declared by no InferenceModel.
    def says_loaded_not_declared() -> bool:
        request = urllib.request.Request(
            f"{gw_url}/v1/completions",
            data=orjson.dumps({"model": "cad-fabricator", "prompt": "hi", "max_tokens": 1}),
            headers={"Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as err:
            message = orjson.loads(err.read())["error"]["message"]
            assert err.code == 404 and message.startswith("The model `cad-fabricator` does not exist."), (
                message
            )
            return "have it loaded" in message  # once the servers' model lists were read (every 1 s)
        raise AssertionError("cad-fabricator was routed, though no InferenceModel names it")

    wait_until(says_loaded_not_declared, 30, interval=0.5, what="the 404 to say cad-fabricator is loaded")

    assert proc.interrupt(60) == 0
    assert "stopped" in proc.output()
    # No orphans: the process group is gone, and every port it held is free again.
    try:
        os.killpg(proc.pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive
    wait_until(lambda: all(port_is_free(p) for p in [gw_port, admin, *replica_ports]), 10, what="ports freed")
