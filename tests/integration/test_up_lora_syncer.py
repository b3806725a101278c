"""`inferpool up` runs a LoRA syncer per simulated replica, driven by the mounted ConfigMap.

Editing the ConfigMap in the manifest file (as `kubectl apply` of a new ConfigMap would)
loads the new adapter on every replica, without a restart.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp

from inferpool.local.stack import LocalStack, UpConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "gke-quickstart"


async def _adapters(http: aiohttp.ClientSession, url: str) -> set[str]:
    async with http.get(f"{url}/v1/models") as response:
        listing = await response.json()
    return {m["id"] for m in listing["data"] if m.get("parent")}


async def test_configmap_edit_reaches_every_replica(tmp_path: Path) -> None:
    manifests = tmp_path / "gke-quickstart"
    shutil.copytree(EXAMPLES, manifests)
    stack = LocalStack(UpConfig(paths=(str(manifests),), admin_port=None, speed=20, access_log=False))
    await stack.start()
    try:
        assert stack.fleet is not None
        urls = [r.url for r in stack.fleet.replicas]
        assert len(urls) == 3 and len(stack.syncers) == 3
        async with aiohttp.ClientSession() as http:
            for url in urls:  # loaded before `up` reports ready
                assert await _adapters(http, url) == {"food-review", "cad-fabricator"}

            deployment = manifests / "vllm-llama3-8b-instruct.yaml"
            lines = deployment.read_text().splitlines(keepends=True)
            at = next(i for i, line in enumerate(lines) if line.strip() == "- id: cad-fabricator")
            indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
            lines[at:at] = [f"{indent}- id: sql-helper\n", f"{indent}  source: example/sql-helper\n"]
            deployment.write_text("".join(lines))
            async with asyncio.timeout(30):
                while True:
                    found = [await _adapters(http, url) for url in urls]
                    if all("sql-helper" in f for f in found):
                        break
                    await asyncio.sleep(0.1)
    finally:
        await stack.stop()
