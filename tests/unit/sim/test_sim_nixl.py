"""P/D in the simulator without HTTP: the KV transfer config, the engine's remote-KV model, the side channel."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from inferpool.sim.clock import VirtualClock
from inferpool.sim.engine import FINISHED, WAITING_FOR_REMOTE_KVS, Engine, HeldBlocks, SimRequest
from inferpool.sim.metrics import MetricsConfig, NixlMetrics, SimMetrics
from inferpool.sim.nixl import (
    DEFAULT_INTERCONNECT,
    INTERCONNECTS,
    KVTransferConfig,
    NixlConnector,
    wants_remote_prefill,
)
from inferpool.sim.profile import HardwareProfile, load_profile

BS = 16
NIXL = '{"kv_connector": "NixlConnector", "kv_role": "kv_both"}'


def _profile(num_blocks: int = 2000) -> HardwareProfile:
    data = load_profile("llama-3.1-8b-h100").model_dump()
    data.update(name="test", num_gpu_blocks=num_blocks)
    return HardwareProfile.model_validate(data)


# ----- configuration ------------------------------------------------------------------------------


def test_config_takes_vllms_json_and_defaults() -> None:
    cfg = KVTransferConfig.from_json(NIXL)
    assert (cfg.kv_connector, cfg.kv_role, cfg.kv_load_failure_policy) == ("NixlConnector", "kv_both", "fail")
    assert cfg.lease_duration_s == 30  # vLLM 0.32's kv_lease_duration default
    extra = KVTransferConfig.from_json(
        '{"kv_connector": "NixlConnector", "kv_role": "kv_consumer", "kv_load_failure_policy": "recompute",'
        ' "kv_connector_extra_config": {"kv_lease_duration": 12, "backends": ["UCX"]}, "kv_buffer_device": "cuda"}'
    )
    assert extra.lease_duration_s == 12 and extra.kv_load_failure_policy == "recompute"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["NixlConnector"]', "expected a JSON object, got list"),
        ('{"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"}', "models only NixlConnector"),
        ('{"kv_connector": "NixlConnector", "kv_role": "kv_sender"}', "kv_role"),
        ('{"kv_connector": "NixlConnector"}', "Please specify kv_role when kv_connector is set"),
        ('{"kv_role": "kv_both"}', "kv_connector: Field required"),
        ('{"kv_connector": "NixlConnector", "kv_role": "kv_both", "kv_rank": 0}', "kv_rank: Extra inputs"),
        (
            '{"kv_connector": "NixlConnector", "kv_role": "kv_both", "kv_load_failure_policy": "retry"}',
            "kv_load_failure_policy",
        ),
        (
            '{"kv_connector": "NixlConnector", "kv_role": "kv_both",'
            ' "kv_connector_extra_config": {"kv_lease_duration": 0}}',
            "kv_lease_duration must be a whole number of seconds >= 1",
        ),
    ],
)
def test_config_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KVTransferConfig.from_json(text)


def test_config_from_vllm_args_and_per_replica_engine_ids() -> None:
    assert KVTransferConfig.from_vllm_args(["--model", "m", "--port", "8000"]) is None
    spaced = KVTransferConfig.from_vllm_args(["--port", "8000", "--kv-transfer-config", NIXL])
    joined = KVTransferConfig.from_vllm_args([f"--kv-transfer-config={NIXL}"])
    assert spaced == joined and spaced is not None
    fresh = {spaced.for_replica(i, 2).engine_id for i in range(2)}
    assert len(fresh) == 2 and None not in fresh
    named = KVTransferConfig.from_json(
        '{"kv_connector": "NixlConnector", "kv_role": "kv_producer", "engine_id": "p"}'
    )
    assert named.for_replica(0, 1).engine_id == "p"
    assert [named.for_replica(i, 2).engine_id for i in range(2)] == ["p-0", "p-1"]


def test_cli_refuses_a_bad_config_or_interconnect_with_the_flag_named() -> None:
    import typer

    from inferpool.sim.cli import sim_command

    app = typer.Typer()
    app.command()(sim_command)
    bad_json = CliRunner().invoke(app, ["--kv-transfer-config", "{oops"])
    assert bad_json.exit_code == 2 and "--kv-transfer-config" in bad_json.output
    assert "not valid JSON" in bad_json.output
    bad_link = CliRunner().invoke(app, ["--kv-transfer-config", NIXL, "--kv-interconnect", "carrier-pigeon"])
    assert bad_link.exit_code == 2 and "rdma-400g" in bad_link.output


def test_kv_bytes_and_transfer_time_follow_the_profile_and_interconnect() -> None:
    profile = load_profile("llama-3.1-8b-h100")
    assert profile.kv.bytes_per_token == 32 * 8 * 128 * 2 * 2 == 131072
    assert DEFAULT_INTERCONNECT == "rdma-400g"
    rdma = INTERCONNECTS["rdma-400g"]
    one_gib = 8192 * profile.kv.bytes_per_token  # an 8k-token prompt
    assert rdma.transfer_seconds(one_gib) == pytest.approx(rdma.latency_s + one_gib / 42.6e9)
    assert 0.02 < rdma.transfer_seconds(one_gib) < 0.03
    assert INTERCONNECTS["nvlink-h100"].transfer_seconds(one_gib) < rdma.transfer_seconds(one_gib) / 5


def test_remote_prefill_needs_blocks_and_a_full_address() -> None:
    params = {"do_remote_prefill": True, "remote_block_ids": [[1, 2]], "remote_engine_id": "e",
              "remote_request_id": "r1", "remote_host": "h", "remote_port": 1}  # fmt: skip
    assert wants_remote_prefill(params)
    assert wants_remote_prefill({**params, "remote_block_ids": [1, 2]})  # older vLLM's flat list
    assert not wants_remote_prefill({**params, "remote_block_ids": [[]]})
    assert not wants_remote_prefill({**params, "remote_port": None})
    assert not wants_remote_prefill({**params, "do_remote_prefill": False})
    assert not wants_remote_prefill(None)


# ----- the engine's remote-KV model ---------------------------------------------------------------


class ScriptedConnector:
    """Records the engine's connector calls; pulls complete only when the test says so."""

    def __init__(self, lease_s: float | None = 10.0) -> None:
        self.lease_s = lease_s
        self.loads: list[tuple[str, int]] = []
        self.expired: list[str] = []

    def on_new_request(self, req: SimRequest) -> None:
        pass

    def num_external_tokens(self, req: SimRequest, num_local_computed: int) -> int:
        params = req.kv_transfer_params or {}
        return max(0, req.num_prompt_tokens - num_local_computed) if params.get("do_remote_prefill") else 0

    def update_state_after_alloc(self, req: SimRequest, num_external: int) -> None:
        if req.kv_transfer_params and req.kv_transfer_params.get("do_remote_prefill"):
            req.kv_transfer_params["do_remote_prefill"] = False
            self.loads.append((req.request_id, num_external))

    def request_finished(self, req: SimRequest) -> float | None:
        params = req.kv_transfer_params or {}
        if params.get("do_remote_decode") and req.finish_reason in ("stop", "length"):
            req.kv_result = {
                "do_remote_prefill": True,
                "remote_block_ids": [[b.block_id for b in req.blocks]],
            }
            return self.lease_s
        return None

    def on_expired(self, held: HeldBlocks) -> None:
        self.expired.append(held.request_id)


def _engine(connector: ScriptedConnector, recompute: bool = False) -> tuple[Engine, list[int]]:
    engine = Engine(_profile(), clock=VirtualClock())
    engine.kv_connector = connector
    engine.kv_load_failure_recompute = recompute
    step_tokens: list[int] = []
    engine.step_hooks.append(lambda report: step_tokens.append(report.num_tokens))
    return engine, step_tokens


def _prompt(n: int, salt: int = 0) -> list[int]:
    return [1000 + salt * 7919 + i for i in range(n)]


def test_prefill_for_remote_decode_keeps_its_blocks_until_the_lease_ends() -> None:
    connector = ScriptedConnector(lease_s=10.0)
    engine, _ = _engine(connector)
    req = SimRequest("p1", _prompt(100), 1, ignore_eos=True, kv_transfer_params={"do_remote_decode": True})
    engine.add_request(req)
    engine.run_until_idle()
    assert req.status == FINISHED and req.finish_reason == "length"
    assert req.kv_result == {"do_remote_prefill": True, "remote_block_ids": [list(range(1, 8))]}
    assert set(engine.held) == {"p1"} and engine.held["p1"].num_tokens == 100
    used = engine.pool.usage()
    assert used == pytest.approx(7 / (engine.pool.num_blocks - 1))  # ceil(100 / 16) blocks stay in use
    engine.advance(9.0)
    assert engine.pool.usage() == used and not connector.expired
    engine.extend_held("p1", engine.clock.now() + 5.0)  # a heartbeat
    engine.advance(2.0)
    assert "p1" in engine.held
    engine.advance(5.0)
    assert connector.expired == ["p1"] and not engine.held and engine.pool.usage() == 0.0
    # freed blocks keep their cached prefix: a later request on the same prompt hits it
    again = SimRequest("p2", _prompt(100), 1, ignore_eos=True)
    engine.add_request(again)
    engine.run_until_idle()
    assert again.num_cached_tokens == 96


def test_an_ordinary_or_aborted_request_frees_its_blocks() -> None:
    connector = ScriptedConnector()
    engine, _ = _engine(connector)
    plain = SimRequest("a", _prompt(100), 2, ignore_eos=True)
    engine.add_request(plain)
    engine.run_until_idle()
    assert plain.kv_result is None and not engine.held and engine.pool.usage() == 0.0


def test_decoder_pulls_instead_of_computing_then_computes_the_last_prompt_token() -> None:
    connector = ScriptedConnector()
    engine, step_tokens = _engine(connector)
    params = {"do_remote_prefill": True}
    req = SimRequest("d1", _prompt(100), 3, ignore_eos=True, kv_transfer_params=params)
    engine.add_request(req)
    engine.advance(1.0)
    assert req.status == WAITING_FOR_REMOTE_KVS and connector.loads == [("d1", 100)]
    assert step_tokens == [] and len(req.blocks) == 7  # blocks taken, nothing computed
    assert engine.num_waiting == 1 and engine.num_deferred() == 1
    assert req.num_cached_tokens == 100 and req.num_external_tokens == 100
    engine.finish_load(req, ok=True)
    engine.run_until_idle()
    assert req.finish_reason == "length" and len(req.output_token_ids) == 3
    assert step_tokens == [1, 1, 1]  # the last prompt token (with the first sample), then two decodes
    # the pulled blocks are cached like computed ones
    follow = SimRequest("d2", _prompt(100), 1, ignore_eos=True)
    engine.add_request(follow)
    engine.run_until_idle()
    assert follow.num_cached_tokens == 96


def test_decoder_pulls_only_what_its_own_prefix_cache_lacks() -> None:
    connector = ScriptedConnector()
    engine, _ = _engine(connector)
    warm = SimRequest("w", _prompt(64), 1, ignore_eos=True)
    engine.add_request(warm)
    engine.run_until_idle()
    req = SimRequest("d", _prompt(64) + _prompt(40, salt=1), 2, ignore_eos=True,
                     kv_transfer_params={"do_remote_prefill": True})  # fmt: skip
    engine.add_request(req)
    engine.advance(0.5)
    assert connector.loads == [("d", 104 - 64)]  # the warm request's 4 full blocks are local hits
    assert req.num_cached_tokens == 104
    engine.finish_load(req, ok=True)
    engine.run_until_idle()
    assert req.finish_reason == "length"


def test_failed_pull_recomputes_locally_under_recompute_policy() -> None:
    connector = ScriptedConnector()
    engine, step_tokens = _engine(connector, recompute=True)
    req = SimRequest("d", _prompt(100), 2, ignore_eos=True, kv_transfer_params={"do_remote_prefill": True})
    engine.add_request(req)
    engine.advance(0.5)
    engine.finish_load(req, ok=False)
    engine.run_until_idle()
    assert req.finish_reason == "length" and step_tokens[0] == 100  # the whole prompt, locally
    assert len(connector.loads) == 1  # no second pull
    assert req.num_cached_tokens == 0 and engine.pool.usage() == 0.0


def test_failed_pull_fails_the_request_under_vllms_default_policy() -> None:
    connector = ScriptedConnector()
    engine, step_tokens = _engine(connector)
    req = SimRequest("d", _prompt(100), 2, ignore_eos=True, kv_transfer_params={"do_remote_prefill": True})
    engine.add_request(req)
    engine.advance(0.5)
    engine.finish_load(req, ok=False)
    assert req.status == FINISHED and req.finish_reason == "error" and step_tokens == []
    assert engine.pool.usage() == 0.0 and not engine.has_work()


def test_aborting_a_pulling_request_frees_its_blocks_and_ignores_the_late_kv() -> None:
    connector = ScriptedConnector()
    engine, _ = _engine(connector)
    req = SimRequest("d", _prompt(100), 2, ignore_eos=True, kv_transfer_params={"do_remote_prefill": True})
    engine.add_request(req)
    engine.advance(0.5)
    engine.abort("d")
    assert req.finish_reason == "abort" and not engine.loading and engine.pool.usage() == 0.0
    engine.finish_load(req, ok=True)
    assert req.status == FINISHED and not engine.has_work()


def test_metrics_count_pulled_tokens_as_external_not_local_hits() -> None:
    connector = ScriptedConnector()
    engine, _ = _engine(connector)
    metrics = SimMetrics(engine, MetricsConfig("m", 1))
    metrics.enable_nixl()
    req = SimRequest("d", _prompt(100), 2, ignore_eos=True, kv_transfer_params={"do_remote_prefill": True})
    engine.add_request(req)
    engine.advance(0.5)
    engine.finish_load(req, ok=True)
    engine.run_until_idle()
    page = metrics.render().decode()

    def value(name: str) -> float:
        line = next(x for x in page.splitlines() if x.startswith(name))
        return float(line.rsplit(" ", 1)[1])

    assert value("vllm:prefix_cache_hits_total") == 0
    assert value("vllm:external_prefix_cache_queries_total") == 100
    assert value("vllm:external_prefix_cache_hits_total") == 100
    assert (
        value('vllm:prompt_tokens_by_source_total{engine="0",model_name="m",source="external_kv_transfer"}')
        == 100
    )
    assert value('vllm:prompt_tokens_by_source_total{engine="0",model_name="m",source="local_compute"}') == 0
    assert value('vllm:prompt_tokens_cached_by_source_total{engine="0",model_name="m",source="p2p"}') == 100
    assert value("vllm:prompt_tokens_cached_total") == 100
    assert value("vllm:prompt_tokens_total") == 100


def test_without_a_connector_kv_transfer_params_change_nothing() -> None:
    engine = Engine(_profile(), clock=VirtualClock())
    metrics = SimMetrics(engine, MetricsConfig("m", 1))
    req = SimRequest("d", _prompt(100), 2, ignore_eos=True,
                     kv_transfer_params={"do_remote_prefill": True, "do_remote_decode": True})  # fmt: skip
    engine.add_request(req)
    engine.run_until_idle()
    assert req.finish_reason == "length" and req.kv_result is None and not engine.held
    assert b"nixl" not in metrics.render()


# ----- the side channel (prefill side) ------------------------------------------------------------


async def _prefilled(lease: int = 30) -> tuple[NixlConnector, Engine, SimRequest, NixlMetrics]:
    engine = Engine(_profile(), clock=VirtualClock())
    nixl = NixlMetrics(CollectorRegistry(), ("0", "m"))
    config = KVTransferConfig.from_json(
        '{"kv_connector": "NixlConnector", "kv_role": "kv_producer", "engine_id": "P",'
        f' "kv_connector_extra_config": {{"kv_lease_duration": {lease}}}}}'
    )
    connector = NixlConnector(config, engine, nixl, DEFAULT_INTERCONNECT, "127.0.0.1")
    connector.side_channel_port = 8123
    req = SimRequest("r1", _prompt(100), 1, ignore_eos=True, kv_transfer_params={"do_remote_decode": True})
    engine.add_request(req)
    engine.run_until_idle()
    return connector, engine, req, nixl


async def test_prefill_answer_carries_vllms_kv_transfer_params() -> None:
    _, engine, req, _ = await _prefilled()
    assert req.kv_result == {
        "do_remote_prefill": True,
        "do_remote_decode": False,
        "remote_block_ids": [[1, 2, 3, 4, 5, 6, 7]],
        "remote_engine_id": "P",
        "remote_request_id": "r1",
        "remote_host": "127.0.0.1",
        "remote_port": 8123,
        "tp_size": 1,
        "dcp_size": 1,
        "pp_size": 1,
        "remote_num_tokens": 100,
        "remote_blocks_expiry_time": None,
        "transfer_mode": "pull",
    }
    assert list(req.kv_result) == list(dict.fromkeys(req.kv_result))  # key order as vLLM's dict(...)
    assert engine.held["r1"].expires == pytest.approx(req.finish_time + 30.0)  # type: ignore[operator]


async def test_side_channel_read_frees_the_blocks_once() -> None:
    connector, engine, _, nixl = await _prefilled()
    body: dict[str, Any] = {
        "remote_engine_id": "P",
        "remote_request_id": "r1",
        "num_blocks": 7,
        "transfer_s": 0,
    }
    assert connector.serve_read(body) == (200, {"num_blocks": 7, "after_expiry": False})
    assert not engine.held and engine.pool.usage() == 0.0
    # a second read finds no lease: like NIXL, it reads stale blocks and the prefill side counts it
    assert connector.serve_read(body) == (200, {"num_blocks": 7, "after_expiry": True})
    assert nixl.notifications_after_expiry._value.get() == 1


async def test_side_channel_refuses_another_engine_and_bad_bodies() -> None:
    connector, engine, _, _ = await _prefilled()
    status, answer = connector.serve_read(
        {"remote_engine_id": "Q", "remote_request_id": "r1", "num_blocks": 7}
    )
    assert status == 404 and "unknown engine 'Q'" in answer["error"]
    assert connector.serve_read(None)[0] == 400
    assert connector.serve_read({"remote_engine_id": "P", "remote_request_id": "r1"})[0] == 400
    assert connector.serve_heartbeat({"request_ids": "r1"})[0] == 400
    assert "r1" in engine.held  # nothing was freed by the refused calls


async def test_heartbeat_extends_the_lease_by_two_thirds() -> None:
    connector, engine, _, nixl = await _prefilled(lease=30)
    assert isinstance(engine.clock, VirtualClock)
    engine.clock.t += 25.0
    assert connector.serve_heartbeat({"request_ids": ["r1", "unknown"]}) == (200, {"renewed": 2})
    assert engine.held["r1"].expires == pytest.approx(engine.clock.t + 20.0)
    engine.advance(19.0)
    assert "r1" in engine.held
    engine.advance(2.0)
    assert not engine.held and nixl.kv_expired_reqs._value.get() == 1
