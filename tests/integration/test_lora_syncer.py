"""The LoRA syncer against simulated vLLM replicas on loopback (and one small fake for failing loads)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from free_ports import free_port
from inferpool.api.lora_config import load_lora_config
from inferpool.lora import BackoffPolicy, LoRASyncer, SyncerOptions
from inferpool.lora.server import serve_status
from inferpool.sim import SimReplica
from inferpool.sim.config import SimConfig

BASE = "meta-llama/Llama-3.1-8B-Instruct"
FAST = SyncerOptions(resync_interval_s=0.3, watch_interval_s=0.05, health_interval_s=0.1,
                     backoff=BackoffPolicy(base_s=0.05, cap_s=0.5))  # fmt: skip


def config_doc(
    exist: list[str],
    not_exist: list[str] = (),
    port: int = 8000,
    host: str = "localhost",  # type: ignore[assignment]
) -> dict[str, object]:
    return {
        "vLLMLoRAConfig": {
            "name": "test",
            "host": host,
            "port": port,
            "defaultBaseModel": BASE,
            "ensureExist": {"models": [{"id": n, "source": f"/adapters/{n}"} for n in exist]},
            "ensureNotExist": {"models": [{"id": n, "source": f"/adapters/{n}"} for n in not_exist]},
        }
    }


def write_atomic(path: Path, doc: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc))
    tmp.replace(path)


async def eventually(cond: Callable[[], object], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = cond()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def served(url: str) -> set[str]:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/v1/models") as resp:
        data = orjson.loads(await resp.read())["data"]
    return {m["id"] for m in data if m.get("parent")}


def status_line(syncer: LoRASyncer, name: str, value: int) -> bool:
    line = f'lora_syncer_adapter_status{{adapter_name="{name}"}} {float(value)}'.encode()
    return line in syncer.metrics.exposition()


@pytest.fixture
async def replica() -> AsyncIterator[SimReplica]:
    sim = SimReplica(SimConfig(model=BASE, port=0, max_loras=2))
    await sim.start()
    await asyncio.wait_for(sim.wait_ready(), 10)
    yield sim
    await sim.stop()


def syncer_for(sim_url: str, cfg_path: Path, **overrides: object) -> LoRASyncer:
    opts = SyncerOptions(**{**FAST.__dict__, "base_url": sim_url, **overrides})  # type: ignore[arg-type]
    return LoRASyncer(load_lora_config(cfg_path), config_path=cfg_path, options=opts)


async def test_initial_load_and_status_endpoints(replica: SimReplica, tmp_path: Path) -> None:
    cfg = tmp_path / "configmap.yaml"
    write_atomic(cfg, config_doc(["food-review", "cad-fabricator"]))
    syncer = syncer_for(replica.url, cfg)
    runner, port = await serve_status(syncer, "127.0.0.1", 0)
    try:
        async with syncer:
            await eventually(lambda: syncer.synced, "initial sync")
            assert await served(replica.url) == {"food-review", "cad-fabricator"}
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    text = await resp.text()
                async with s.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert resp.status == 200
                    health = await resp.json()
            assert 'lora_syncer_adapter_status{adapter_name="food-review"} 1.0' in text
            assert 'lora_syncer_adapter_status{adapter_name="cad-fabricator"} 1.0' in text
            assert health["status"] == "ok" and health["synced"] is True
            assert health["adapters"]["food-review"]["loaded"] is True
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 503  # the loop is stopped
    finally:
        await runner.cleanup()


async def test_editing_the_file_adds_and_removes(replica: SimReplica, tmp_path: Path) -> None:
    cfg = tmp_path / "configmap.yaml"
    write_atomic(cfg, config_doc(["a1", "a2"]))
    async with syncer_for(replica.url, cfg, resync_interval_s=60.0) as syncer:
        await eventually(lambda: syncer.synced, "initial sync")
        write_atomic(cfg, config_doc(["a1", "a3"], not_exist=["a2"]))
        await eventually(lambda: served(replica.url), "models")
        await eventually(
            lambda: _served_is(replica.url, {"a1", "a3"}), "a3 loaded and a2 unloaded after the edit", 10
        )
        await eventually(lambda: status_line(syncer, "a2", 0) and status_line(syncer, "a3", 1), "gauges")
        # Dropping an adapter from both lists leaves it on the server and forgets its series.
        write_atomic(cfg, config_doc(["a1"]))
        await eventually(lambda: b'adapter_name="a3"' not in syncer.metrics.exposition(), "a3 forgotten")
        assert await served(replica.url) == {"a1", "a3"}


async def _served_is(url: str, want: set[str]) -> bool:
    return await served(url) == want


async def test_configmap_symlink_swap(replica: SimReplica, tmp_path: Path) -> None:
    """The kubelet's layout: configmap.yaml -> ..data/configmap.yaml, ..data -> ..TIMESTAMP, swapped by rename."""
    vol = tmp_path / "config"
    (vol / "..2024_01_01_v1").mkdir(parents=True)
    (vol / "..2024_01_01_v1" / "configmap.yaml").write_text(yaml.safe_dump(config_doc(["food-review"])))
    os.symlink("..2024_01_01_v1", vol / "..data")
    os.symlink("..data/configmap.yaml", vol / "configmap.yaml")
    cfg = vol / "configmap.yaml"
    old_stat = os.stat(cfg)

    async with syncer_for(replica.url, cfg, resync_interval_s=60.0) as syncer:
        await eventually(lambda: _served_is(replica.url, {"food-review"}), "initial load")
        new_dir = vol / "..2024_01_01_v2"
        new_dir.mkdir()
        new_file = new_dir / "configmap.yaml"
        new_file.write_text(yaml.safe_dump(config_doc(["cad-fabricator"], not_exist=["food-review"])))
        # Same mtime as the old file: only the swap (new real path / inode) can reveal the change.
        os.utime(new_file, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
        os.symlink("..2024_01_01_v2", vol / "..data_tmp")
        os.replace(vol / "..data_tmp", vol / "..data")
        await eventually(lambda: _served_is(replica.url, {"cad-fabricator"}), "reconcile after the swap", 10)
        assert status_line(syncer, "food-review", 0)


async def test_restarted_replica_gets_its_adapters_back(tmp_path: Path) -> None:
    sim = SimReplica(SimConfig(model=BASE, port=0, max_loras=2))
    await sim.start()
    port = sim.port
    cfg = tmp_path / "configmap.yaml"
    write_atomic(cfg, config_doc(["food-review", "cad-fabricator"]))
    try:
        async with syncer_for(sim.url, cfg) as syncer:
            await eventually(lambda: syncer.synced, "initial sync")
            await sim.stop()
            await eventually(lambda: not syncer.status()["server_healthy"], "syncer notices the outage")
            assert status_line(syncer, "food-review", 0)
            sim = SimReplica(SimConfig(model=BASE, port=port, max_loras=2))  # a fresh process: no adapters
            await sim.start()
            await eventually(
                lambda: _served_is(sim.url, {"food-review", "cad-fabricator"}), "adapters reloaded", 10
            )
            await eventually(lambda: status_line(syncer, "food-review", 1), "gauge back to 1")
    finally:
        await sim.stop()


async def test_a_load_that_fails_twice_then_succeeds(tmp_path: Path) -> None:
    """Retried on the adapter's own backoff timer: the periodic resync is set far beyond the test."""
    attempts: list[float] = []
    loaded: set[str] = set()

    async def health(_: web.Request) -> web.Response:
        return web.Response()

    async def models(_: web.Request) -> web.Response:
        data = [{"id": BASE, "parent": None}] + [{"id": n, "parent": BASE} for n in sorted(loaded)]
        return web.json_response({"object": "list", "data": data})

    async def load(request: web.Request) -> web.Response:
        body = await request.json()
        assert body == {
            "lora_name": "food-review",
            "lora_path": "/adapters/food-review",
            "base_model_name": BASE,
        }
        attempts.append(time.monotonic())
        if len(attempts) <= 2:
            return web.json_response(
                {
                    "error": {
                        "message": "engine busy",
                        "type": "InternalServerError",
                        "param": None,
                        "code": 500,
                    }
                },
                status=500,
            )
        loaded.add(body["lora_name"])
        return web.Response(text="Success")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/load_lora_adapter", load)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    cfg = tmp_path / "configmap.yaml"
    write_atomic(cfg, config_doc(["food-review"]))
    try:
        async with syncer_for(url, cfg, resync_interval_s=3600.0) as syncer:
            await eventually(lambda: syncer.synced, "loaded after retries", 10)
            exposition = syncer.metrics.exposition().decode()
    finally:
        await runner.cleanup()
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.05 * 0.5  # backoff delay, with jitter at most halving it
    assert attempts[2] - attempts[1] >= 0.1 * 0.5
    assert 'lora_syncer_failed_attempts_total{adapter_name="food-review",operation="load"} 2.0' in exposition
    assert 'lora_syncer_adapter_status{adapter_name="food-review"} 1.0' in exposition


async def test_invalid_edit_keeps_the_previous_config(replica: SimReplica, tmp_path: Path) -> None:
    cfg = tmp_path / "configmap.yaml"
    write_atomic(cfg, config_doc(["food-review"]))
    async with syncer_for(replica.url, cfg) as syncer:
        await eventually(lambda: syncer.synced, "initial sync")
        write_atomic(cfg, config_doc(["food-review"], not_exist=["food-review"]))  # in both lists
        await eventually(lambda: b"lora_syncer_config_valid 0.0" in syncer.metrics.exposition(), "rejected")
        assert "both ensureExist and ensureNotExist" in str(syncer.status()["config_error"])
        await asyncio.sleep(0.5)  # a few resyncs under the rejected file
        assert await served(replica.url) == {"food-review"}
        write_atomic(cfg, config_doc(["cad-fabricator"], not_exist=["food-review"]))
        await eventually(lambda: _served_is(replica.url, {"cad-fabricator"}), "valid edit applied")
        assert b"lora_syncer_config_valid 1.0" in syncer.metrics.exposition()


async def test_command_line(replica: SimReplica, tmp_path: Path) -> None:
    """`inferpool lora-syncer` with the config from $DYNAMIC_LORA_ROLLOUT_CONFIG; SIGTERM stops it cleanly."""
    cfg = tmp_path / "configmap.yaml"
    # 127.0.0.1, not the default localhost: ::1 may belong to another server on a shared test machine.
    write_atomic(cfg, config_doc(["food-review"], port=replica.port, host="127.0.0.1"))
    mport = free_port()
    env = {**os.environ, "DYNAMIC_LORA_ROLLOUT_CONFIG": str(cfg)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "inferpool.cli", "lora-syncer", "--metrics-port", str(mport),
        "--resync-interval", "0.5", "--watch-interval", "0.1",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await eventually(lambda: _served_is(replica.url, {"food-review"}), "loaded by the command", 60)

        async def metrics_say_loaded() -> bool:
            try:
                async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{mport}/metrics") as r:
                    return 'lora_syncer_adapter_status{adapter_name="food-review"} 1.0' in await r.text()
            except aiohttp.ClientError:
                return False

        await eventually(metrics_say_loaded, "metrics endpoint", 30)
        proc.send_signal(signal.SIGTERM)
        out_bytes, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, out_bytes.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            print((await proc.communicate())[0].decode())
    out = out_bytes.decode()
    assert f"reconciling http://127.0.0.1:{replica.port}" in out


async def test_command_rejects_an_invalid_config(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    write_atomic(cfg, config_doc(["x"], not_exist=["x"]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "inferpool.cli", "lora-syncer", "--config", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"both ensureExist and ensureNotExist" in out
