"""vLLM's NixlConnector in the simulator: P/D disaggregation between simulated replicas.

`--kv-transfer-config` takes vLLM's JSON. With it, a replica behaves like vLLM 0.32 with the
NixlConnector in pull mode (vllm/distributed/kv_transfer/kv_connector/v1/nixl/):

- prefill side: a request whose `kv_transfer_params` ask for remote decode keeps its KV blocks
  after it finishes (counted in the KV usage), answers with the `kv_transfer_params` that locate
  them, and frees them when a decoder has read them or when their lease (`kv_lease_duration`,
  30 s, extended by the decoder's heartbeats) runs out (vllm:nixl_num_kv_expired_reqs);
- decode side: a request with `do_remote_prefill` is admitted with blocks for the prompt tokens
  its local prefix cache lacks, reads them from the prefill replica (taking the time the
  interconnect needs for their bytes), then computes only the last prompt token and decodes.

The transfer itself is not NIXL: the decoder reaches the prefill replica over a sim-only HTTP
side channel on the replica's own port (`/sim/nixl/read`, `/sim/nixl/heartbeat`), which stands
for NIXL's handshake, RDMA read and completion notification. `remote_host`/`remote_port` in the
prefill answer name that port, so replicas in different `inferpool sim` processes pair up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from inferpool.sim.engine import Engine, HeldBlocks, SimRequest

log = logging.getLogger(__name__)

SUPPORTED_CONNECTORS = ("NixlConnector",)
KV_ROLES = ("kv_producer", "kv_consumer", "kv_both")
READ_PATH = "/sim/nixl/read"
HEARTBEAT_PATH = "/sim/nixl/heartbeat"
# vLLM 0.32's default lease on a finished prefill's blocks (kv_connector_extra_config.kv_lease_duration)
DEFAULT_LEASE_S = 30
# How long a decoder waits for the prefill replica's side channel before it counts a failed transfer.
SIDE_CHANNEL_TIMEOUT_S = 10.0
_REMOTE_FIELDS = ("remote_engine_id", "remote_request_id", "remote_host", "remote_port")


@dataclass(frozen=True)
class Interconnect:
    """One KV transfer path: time = latency + bytes / bandwidth (sources in docs/simulator.md)."""

    name: str
    gbytes_per_s: float  # effective, as benchmarks measure it (GB = 1e9 bytes)
    latency_s: float  # fixed cost per transfer: posting the read and its completion notification
    description: str

    def transfer_seconds(self, num_bytes: int) -> float:
        return self.latency_s + num_bytes / (self.gbytes_per_s * 1e9)


INTERCONNECTS = {
    ic.name: ic
    for ic in (
        Interconnect(
            "rdma-400g", 42.6, 100e-6, "GPUDirect RDMA over one 400 Gb/s NIC (ConnectX-7 class), NIXL/UCX"
        ),
        Interconnect("nvlink-h100", 380.0, 20e-6, "NVLink 4 between two H100s of one node (cuda_ipc)"),
        Interconnect("tcpxo-200g", 22.96, 600e-6, "GCP GPUDirect-TCPXO, 200 Gb/s per GPU (A3 Mega)"),
    )
}
DEFAULT_INTERCONNECT = "rdma-400g"  # P and D in separate pods, usually on separate nodes


class KVTransferConfig(BaseModel):
    """vLLM's KVTransferConfig (`vllm serve --kv-transfer-config JSON`), the fields vLLM 0.32 accepts."""

    model_config = ConfigDict(extra="forbid")

    kv_connector: str
    engine_id: str | None = None
    kv_buffer_device: str = "cuda"
    kv_role: Literal["kv_producer", "kv_consumer", "kv_both"] | None = None
    kv_port: int = 14579
    kv_connector_extra_config: dict[str, Any] = Field(default_factory=dict)
    kv_connector_module_path: str | None = None
    enable_permute_local_kv: bool = False
    kv_load_failure_policy: Literal["recompute", "fail"] = "fail"

    @field_validator("kv_connector")
    @classmethod
    def _known_connector(cls, value: str) -> str:
        if value not in SUPPORTED_CONNECTORS:
            raise ValueError(f"the simulator models only {', '.join(SUPPORTED_CONNECTORS)}, not {value!r}")
        return value

    @field_validator("kv_connector_extra_config")
    @classmethod
    def _lease(cls, value: dict[str, Any]) -> dict[str, Any]:
        lease = value.get("kv_lease_duration", DEFAULT_LEASE_S)
        if isinstance(lease, bool) or not isinstance(lease, int) or lease < 1:
            raise ValueError(f"kv_lease_duration must be a whole number of seconds >= 1, got {lease!r}")
        return value

    def model_post_init(self, _context: Any) -> None:
        if self.kv_role is None:  # vLLM's own check and wording
            raise ValueError(
                f"Please specify kv_role when kv_connector is set, supported roles are {KV_ROLES}"
            )

    @classmethod
    def from_json(cls, text: str) -> KVTransferConfig:
        """Parse the flag's JSON; every problem becomes one ValueError that names it."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg'].removeprefix('Value error, ')}"
                for e in err.errors(include_url=False)
            )
            raise ValueError(problems) from None

    @classmethod
    def from_vllm_args(cls, args: list[str]) -> KVTransferConfig | None:
        """The config in a `vllm serve` argument list (`--kv-transfer-config JSON` or `=JSON`), if any."""
        for i, arg in enumerate(args):
            if arg == "--kv-transfer-config" and i + 1 < len(args):
                return cls.from_json(args[i + 1])
            if arg.startswith("--kv-transfer-config="):
                return cls.from_json(arg.partition("=")[2])
        return None

    @property
    def lease_duration_s(self) -> int:
        return int(self.kv_connector_extra_config.get("kv_lease_duration", DEFAULT_LEASE_S))

    def for_replica(self, index: int, replicas: int) -> KVTransferConfig:
        """Each replica is its own engine: a fresh engine id, or the given one suffixed when several share it."""
        if self.engine_id is None:
            engine_id = str(uuid.uuid4())
        else:
            engine_id = f"{self.engine_id}-{index}" if replicas > 1 else self.engine_id
        return self.model_copy(update={"engine_id": engine_id})


def _remote_block_count(block_ids: Any) -> int:
    """Blocks named in remote_block_ids: vLLM 0.32 sends one list per KV-cache group, older ones a flat list."""
    if not isinstance(block_ids, list | tuple) or not block_ids:
        return 0
    if all(isinstance(group, list | tuple) for group in block_ids):
        return len(block_ids[0])
    return len(block_ids)


def wants_remote_prefill(params: dict[str, Any] | None) -> bool:
    """A decode leg whose KV can be pulled: do_remote_prefill with blocks and a complete remote address."""
    return bool(
        params
        and params.get("do_remote_prefill")
        and _remote_block_count(params.get("remote_block_ids")) > 0
        and all(params.get(f) is not None for f in _REMOTE_FIELDS)
    )


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class NixlConnector:
    """One replica's connector: prefill-side leases, decode-side pulls and heartbeats, vLLM's nixl metrics."""

    def __init__(
        self, config: KVTransferConfig, engine: Engine, metrics: Any, interconnect: str, host: str
    ) -> None:
        from inferpool.sim.metrics import NixlMetrics  # metrics imports the engine module too

        assert isinstance(metrics, NixlMetrics)
        self.config = config
        self.engine = engine
        self.metrics = metrics
        self.interconnect = INTERCONNECTS[interconnect]
        self.engine_id = config.engine_id or str(uuid.uuid4())
        self.lease_s = float(config.lease_duration_s)
        # vLLM renews a lease by 2/3 of its length on each heartbeat, sent every 1/6 of it
        self.lease_extension_s = float(config.lease_duration_s * 2 // 3)
        self.heartbeat_interval_s = float(max(1, config.lease_duration_s // 6))
        wildcard = host in ("", "0.0.0.0", "::")
        self.side_channel_host = os.environ.get("VLLM_NIXL_SIDE_CHANNEL_HOST") or (
            "localhost" if wildcard else host
        )
        self.side_channel_port = 0  # the replica's HTTP port, set once it is bound
        self._heartbeats: dict[str, tuple[str, str]] = {}  # local request id -> (remote base URL, remote id)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        engine.kv_connector = self
        engine.kv_load_failure_recompute = config.kv_load_failure_policy == "recompute"

    # ----- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._heartbeat_task = asyncio.create_task(
            self._send_heartbeats(), name=f"nixl-heartbeat-{self.engine_id}"
        )

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._heartbeat_task] if self._heartbeat_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SIDE_CHANNEL_TIMEOUT_S))
        return self._session

    # ----- engine hooks (engine.KVConnector) ----------------------------------------------------

    def on_new_request(self, req: SimRequest) -> None:
        params = req.kv_transfer_params
        if params is not None and wants_remote_prefill(params):
            base = f"http://{_host_port(str(params['remote_host']), int(params['remote_port']))}"
            self._heartbeats[req.request_id] = (base, str(params["remote_request_id"]))

    def num_external_tokens(self, req: SimRequest, num_local_computed: int) -> int:
        if not wants_remote_prefill(req.kv_transfer_params):
            return 0
        return max(0, req.num_prompt_tokens - num_local_computed)

    def update_state_after_alloc(self, req: SimRequest, num_external: int) -> None:
        params = req.kv_transfer_params
        if params is None or not wants_remote_prefill(params):
            return
        params["do_remote_prefill"] = False  # one transfer per request, as vLLM
        self._heartbeats.pop(req.request_id, None)
        bs = self.engine.pool.block_size
        num_blocks = (
            math.ceil(req.num_prompt_tokens / bs) - req.num_computed_tokens // bs if num_external else 0
        )
        self._spawn(self._read(req, params, num_blocks))

    def request_finished(self, req: SimRequest) -> float | None:
        self._heartbeats.pop(req.request_id, None)
        params = req.kv_transfer_params
        if not params:
            return None
        if params.get("do_remote_prefill"):
            # finished (aborted) before its read began: let the prefill replica free its blocks now
            params["do_remote_prefill"] = False
            if wants_remote_prefill({**params, "do_remote_prefill": True}):
                self._spawn(self._read(req, params, 0))
            return None
        if not params.get("do_remote_decode") or req.finish_reason not in ("stop", "length"):
            return None
        block_ids = [b.block_id for b in req.blocks]
        req.kv_result = {
            "do_remote_prefill": True,
            "do_remote_decode": False,
            "remote_block_ids": [block_ids],  # one list per KV-cache group, as vLLM 0.32
            "remote_engine_id": self.engine_id,
            "remote_request_id": req.request_id,
            "remote_host": self.side_channel_host,
            "remote_port": self.side_channel_port,
            "tp_size": 1,
            "dcp_size": 1,
            "pp_size": 1,
            "remote_num_tokens": req.num_computed_tokens if block_ids else 0,
            "remote_blocks_expiry_time": None,
            "transfer_mode": "pull",
        }
        return self.lease_s if block_ids else None

    def on_expired(self, held: HeldBlocks) -> None:
        log.warning("Releasing expired KV blocks for request %s (lease ran out unread)", held.request_id)
        self.metrics.kv_expired_reqs.inc()

    # ----- decode side --------------------------------------------------------------------------

    async def _read(self, req: SimRequest, params: dict[str, Any], num_blocks: int) -> None:
        """Read `num_blocks` from the prefill replica (0: only tell it to free them), then resume the request."""
        bs = self.engine.pool.block_size
        num_bytes = num_blocks * bs * self.engine.profile.kv.bytes_per_token
        transfer_s = self.interconnect.transfer_seconds(num_bytes) if num_blocks else 0.0
        clock = self.engine.clock
        started = clock.now()
        url = f"http://{_host_port(str(params['remote_host']), int(params['remote_port']))}{READ_PATH}"
        body = {
            "remote_engine_id": params["remote_engine_id"],
            "remote_request_id": params["remote_request_id"],
            "num_blocks": num_blocks,
            "transfer_s": transfer_s,
        }
        ok = False
        try:
            async with self._client().post(url, json=body) as resp:
                answer = await resp.read()
                ok = resp.status == 200
                if not ok:
                    log.warning("KV read of %s from %s refused: %s %s", params["remote_request_id"], url,
                                resp.status, answer[:200].decode(errors="replace"))  # fmt: skip
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            log.warning("KV read of %s from %s failed: %s", params["remote_request_id"], url, err)
        if num_blocks == 0:  # a notification only
            if not ok:
                self.metrics.failed_notification()
            return
        if ok:
            remaining = started + transfer_s - clock.now()
            if remaining > 0:
                await asyncio.sleep(self._real_seconds(remaining))
            self.metrics.observe_transfer(transfer_s, self.interconnect.latency_s, num_bytes,
                                          num_blocks * 2 * self.engine.profile.kv.num_layers)  # fmt: skip
        else:
            self.metrics.failed_transfers.inc()
        self.engine.finish_load(req, ok)

    def _real_seconds(self, sim_seconds: float) -> float:
        real = getattr(self.engine.clock, "real_seconds", None)
        return real(sim_seconds) if real is not None else sim_seconds

    async def _send_heartbeats(self) -> None:
        """Renew the leases of prefills this replica will read, grouped by prefill replica (vLLM's heartbeats)."""
        while True:
            await asyncio.sleep(self._real_seconds(self.heartbeat_interval_s))
            by_remote: dict[str, list[str]] = {}
            for base, remote_id in self._heartbeats.values():
                by_remote.setdefault(base, []).append(remote_id)
            for base, ids in by_remote.items():
                try:
                    async with self._client().post(base + HEARTBEAT_PATH, json={"request_ids": ids}) as resp:
                        await resp.read()
                except (aiohttp.ClientError, TimeoutError, OSError) as err:
                    log.warning("Failed to send heartbeat to %s: %s", base, err)

    # ----- prefill side (the side channel's handlers) -------------------------------------------

    def serve_read(self, body: Any) -> tuple[int, dict[str, Any]]:
        """A decoder reads a held prefill's blocks: they stay in use for the transfer, then are freed."""
        if not isinstance(body, dict):
            return 400, {"error": "expected a JSON object"}
        engine_id, request_id = body.get("remote_engine_id"), body.get("remote_request_id")
        num_blocks, transfer_s = body.get("num_blocks"), body.get("transfer_s", 0.0)
        if not isinstance(num_blocks, int) or not isinstance(transfer_s, int | float) or transfer_s < 0:
            return 400, {"error": "num_blocks (int) and transfer_s (seconds >= 0) are required"}
        if engine_id != self.engine_id:
            return 404, {"error": f"unknown engine {engine_id!r}: this replica is {self.engine_id!r}"}
        held = self.engine.take_held(str(request_id))
        if held is None:
            # NIXL reads the named blocks by id, whatever they hold now, and the completion
            # notification finds no lease: vLLM counts it; the decoder never learns (stale KV)
            log.warning(
                "KV read of request %s after its lease ended: the blocks may have been reused", request_id
            )
            if num_blocks > 0:
                self.metrics.notifications_after_expiry.inc()
            return 200, {"num_blocks": num_blocks, "after_expiry": True}
        if num_blocks == 0 or transfer_s == 0:
            self.engine.free_held(held)
        else:  # the blocks stay in use while the decoder reads them
            asyncio.get_running_loop().call_later(self._real_seconds(transfer_s), self.engine.free_held, held)
        return 200, {"num_blocks": num_blocks, "after_expiry": False}

    def serve_heartbeat(self, body: Any) -> tuple[int, dict[str, Any]]:
        ids = body.get("request_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list):
            return 400, {"error": "request_ids (a list) is required"}
        until = self.engine.clock.now() + self.lease_extension_s
        for request_id in ids:
            self.engine.extend_held(str(request_id), until)
        return 200, {"renewed": len(ids)}
