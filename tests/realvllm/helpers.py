"""Small HTTP helpers shared by the real-vLLM tests (sync, urllib: no event loop needed)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def post_json(url: str, body: dict[str, Any], timeout: float = 120.0) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read(), dict(exc.headers)


def get(url: str, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def served_adapters(base_url: str) -> set[str]:
    data = json.loads(get(f"{base_url}/v1/models"))["data"]
    return {m["id"] for m in data if m.get("parent")}


def ensure_adapter(base_url: str, name: str, path: Path) -> None:
    """Loads an adapter unless it is already there (400 InvalidUserInput means it is)."""
    if name in served_adapters(base_url):
        return
    status, body, _ = post_json(
        f"{base_url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}
    )
    assert status == 200, body


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
