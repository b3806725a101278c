"""`bench compare` without processes: contender names, the KV-events fleet option, the Envoy
config it renders, the per-class breakdown, and a rate sweep where one contender breaks."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from inferpool.bench import compare
from inferpool.bench.client import SERVED_HEADER, ClientConfig, RequestResult
from inferpool.bench.command import bench_app
from inferpool.bench.compare import (
    KV_EVENTS_PORT_LABEL,
    Contender,
    ContenderRun,
    FleetPorts,
    FleetSpec,
    PickerStats,
    fleet_argv,
    needs_kv_events,
    parse_contenders,
    write_manifests,
)
from inferpool.bench.report import SweepPoint, class_table, picker_markdown, sweep_markdown
from inferpool.bench.stats import Slo, summarize, summarize_by_tag
from inferpool.bench.workloads import BenchRequest, request_classes
from inferpool.extproc.envoy import EnvoyConfig
from inferpool.scheduling.config import BUILTIN_PROFILES, builtin_config_text


def test_every_builtin_profile_is_a_contender_behind_serve_and_behind_envoy() -> None:
    names = ",".join(BUILTIN_PROFILES)
    assert [c.profile for c in parse_contenders(names)] == list(BUILTIN_PROFILES)
    envoy = parse_contenders(",".join(f"epp-envoy:{p}" for p in BUILTIN_PROFILES))
    assert all(c.envoy for c in envoy) and [c.profile for c in envoy] == list(BUILTIN_PROFILES)
    [plain] = parse_contenders("epp-envoy")
    assert plain == Contender("epp-envoy", profile="default", envoy=True)
    peers = parse_contenders("sglang-router,vllm-router:round_robin")
    assert [c.name for c in peers] == ["sglang-router cache_aware", "vllm-router round_robin"]
    assert all(c.peer is not None and c.profile is None for c in peers)


def test_epp_envoy_with_several_picker_replicas() -> None:
    [two, three] = parse_contenders("epp-envoy@2,epp-envoy:round-robin@3")
    assert two == Contender("epp-envoy@2", profile="default", envoy=True, pickers=2)
    assert three.profile == "round-robin" and three.pickers == 3
    config = yaml.safe_load(EnvoyConfig(9002, [8000], more_epp_ports=(9012, 9022)).render())
    ext_proc = _cluster(config, "ext_proc")
    ports = [e["endpoint"]["address"]["socket_address"]["port_value"]
             for e in ext_proc["load_assignment"]["endpoints"][0]["lb_endpoints"]]  # fmt: skip
    assert ports == [9002, 9012, 9022] and ext_proc["lb_policy"] == "LEAST_REQUEST"
    table = picker_markdown(
        [("epp-envoy@2", [PickerStats(110, 0.11), PickerStats(90, 0.09)]), ("default", [])]
    )
    assert "| epp-envoy@2 | 2 | 110, 90 | +10.0% | 1000, 1000 |" in table and "default" not in table


@pytest.mark.parametrize(
    "text",
    [
        "nope",
        "epp-envoy:nope",
        "missing-profile.yaml",
        "epp-envoy:missing.yaml",
        "epp-envoy@0",
        "epp-envoy@x",
    ],
)
def test_unknown_contenders_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_contenders(text)


def test_contender_slug_is_a_file_name() -> None:
    assert Contender("sglang-router cache_aware").slug == "sglang-router-cache_aware"
    assert Contender("epp-envoy:bench/results/x.yaml").slug == "epp-envoy-bench-results-x.yaml"


def test_kv_events_only_when_a_profile_reads_them(tmp_path: Path) -> None:
    assert not needs_kv_events(parse_contenders("default,round-robin,epp-envoy,sglang-router"))
    assert needs_kv_events(parse_contenders("sglang-router,precise-prefix"))
    assert needs_kv_events(parse_contenders("round-robin,epp-envoy:precise-prefix"))
    own = tmp_path / "own.yaml"  # an EndpointPickerConfig file of one's own that uses the scorer
    own.write_text(builtin_config_text("precise-prefix"))
    assert needs_kv_events(parse_contenders(f"round-robin,{own}"))
    own.write_text(builtin_config_text("default"))
    assert not needs_kv_events(parse_contenders(f"round-robin,epp-envoy:{own}"))


def test_kv_events_fleet_argv_and_endpoint_labels(tmp_path: Path) -> None:
    spec = FleetSpec(3, "/m", kv_events=True)
    ports = FleetPorts.allocate(spec)
    assert ports.kv_events is not None
    kv_ports = set(range(ports.kv_events, ports.kv_events + 3))
    assert not kv_ports & set(ports.http)
    for i in range(3):
        argv = fleet_argv(spec, ports, i)
        assert argv[argv.index("--port") + 1] == str(ports.http[i])
        assert argv[argv.index("--replicas") + 1] == "1"
        assert argv[argv.index("--seed") + 1] == str(i)
        config = json.loads(argv[argv.index("--kv-events-config") + 1])
        assert config == {
            "enable_kv_cache_events": True,
            "publisher": "zmq",
            "endpoint": f"tcp://*:{ports.kv_events + i}",
            "topic": "kv-events",
        }
    _, endpoints = write_manifests(tmp_path, ports, 8080)
    listed = orjson.loads(endpoints.read_bytes())["endpoints"]
    assert [e["port"] for e in listed] == ports.http
    assert [e["labels"][KV_EVENTS_PORT_LABEL] for e in listed] == [str(ports.kv_events + i) for i in range(3)]

    plain = FleetPorts([9000, 9001])
    assert "--kv-events-config" not in fleet_argv(FleetSpec(2, "/m"), plain, 1)
    _, endpoints = write_manifests(tmp_path, plain, 8080)
    assert all(
        e["labels"] == {"app": "bench-fleet"} for e in orjson.loads(endpoints.read_bytes())["endpoints"]
    )


def test_max_num_seqs_fleet_profile_loads_in_the_sim(tmp_path: Path) -> None:
    from inferpool.bench.compare import write_sim_profile
    from inferpool.sim.profile import load_profile

    path = write_sim_profile(tmp_path, 8)
    argv = fleet_argv(FleetSpec(2, "/m", sim_profile=str(path)), FleetPorts([9000, 9001]), 0)
    assert argv[argv.index("--profile") + 1] == str(path)
    profile = load_profile(str(path))
    assert profile.max_num_seqs == 8
    default = load_profile("llama-3.1-8b-h100")
    assert profile.num_gpu_blocks == default.num_gpu_blocks and profile.step == default.step
    assert "--profile" not in fleet_argv(FleetSpec(2, "/m"), FleetPorts([9000, 9001]), 0)
    small = load_profile(str(write_sim_profile(tmp_path, 16, 3000)))  # --max-num-seqs 16 --kv-blocks 3000
    assert (small.max_num_seqs, small.num_gpu_blocks) == (16, 3000) and small.step == default.step


def _cluster(config: dict, name: str) -> dict:  # type: ignore[type-arg]
    return next(c for c in config["static_resources"]["clusters"] if c["name"] == name)


def test_envoy_config_for_the_bench_plaintext_epp_and_served_header() -> None:
    reference = yaml.safe_load(EnvoyConfig(epp_port=9002, pool_ports=[8000, 8001]).render())
    assert "transport_socket" in _cluster(reference, "ext_proc")
    bench = yaml.safe_load(
        EnvoyConfig(epp_port=9002, pool_ports=[8000, 8001], epp_tls=False, report_served=True).render()
    )
    assert "transport_socket" not in _cluster(bench, "ext_proc")
    assert _cluster(bench, "original_destination_cluster")["type"] == "ORIGINAL_DST"
    manager = bench["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["http_filters"][0]["name"] == "envoy.filters.http.ext_proc"
    [host] = manager["route_config"]["virtual_hosts"]
    assert host["response_headers_to_add"][0]["header"] == {"key": SERVED_HEADER, "value": "%UPSTREAM_HOST%"}


def _result(i: int, tag: str, status: int = 200, ttft: float = 0.1) -> RequestResult:
    ok = status == 200
    return RequestResult(
        i, tag, status, 0.0, ttft if ok else None, 1.0 if ok else 0.01, [], 10, 8 if ok else 0
    )


def test_per_class_breakdown_counts_shed_and_other_errors() -> None:
    assert request_classes("criticality-overload") == ("critical", "standard", "sheddable")
    assert request_classes("shared-prefix") == ()
    results = [
        _result(0, "critical"),
        _result(1, "critical", ttft=2.0),  # succeeded but misses the 1 s TTFT bound
        _result(2, "standard"),
        _result(3, "standard", 503),
        _result(4, "sheddable", 429),
        _result(5, "sheddable", 429),
        _result(6, "sheddable"),
    ]
    by_class = summarize_by_tag(results, 10.0, Slo(ttft=1.0), request_classes("criticality-overload"))
    table = class_table([("default", by_class)])
    rows = {
        line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:-1]]
        for line in table.splitlines()[2:]
    }
    # requests, succeeded, shed, other errors, p50 TTFT, p99 TTFT, goodput
    assert rows["critical"][:4] == ["2", "2", "0", "0"] and rows["critical"][-1] == "0.10"
    assert rows["standard"][:4] == ["2", "1", "0", "1"] and rows["standard"][4] == "100.0"
    assert rows["sheddable"][:4] == ["3", "1", "2", "0"] and rows["sheddable"][-1] == "0.10"


def _fake_run_contender(broken: str, broken_rate: float):  # type: ignore[no-untyped-def]
    """Stands in for starting processes: every request served, except `broken` at `broken_rate`."""

    def run(
        contender: Contender,
        fleet: FleetSpec,
        trace: list[BenchRequest],
        client: ClientConfig,
        slo: Slo,
        workdir: Path,
        progress: bool = True,
        classes: tuple[str, ...] = (),
        class_window_s: float | None = None,
    ) -> ContenderRun:
        rate = len(trace) / 4.0
        if contender.name == broken and abs(rate - broken_rate) < broken_rate / 2:
            raise RuntimeError(f"{contender.name} exited (1)")
        results = [
            _result(r.index, r.tag, 429 if contender.profile and r.tag == "sheddable" else 200) for r in trace
        ]
        summary = summarize(results, 4.0, slo)
        return ContenderRun(
            contender, summary, results, [(0.0, [1, 2])], summarize_by_tag(results, 4.0, slo, classes)
        )

    return run


def test_a_contender_broken_at_one_rate_loses_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compare, "run_contender", _fake_run_contender("epp-envoy", 8.0))
    argv = ["compare", "--fleet", "2", "--workload", "criticality-overload", "--rates", "2,8", "--duration", "4",
            "--contenders", "default,epp-envoy,round-robin", "--out", str(tmp_path)]  # fmt: skip
    done = CliRunner().invoke(bench_app, argv)
    assert done.exit_code == 1, done.output  # the failure is reported, after everything else is written
    report = (tmp_path / "compare.md").read_text()
    sweep = report[report.index("## Latency vs rate") :]
    assert "| epp-envoy | 8 | failed: RuntimeError: epp-envoy exited (1) |" in sweep
    for name in ("default", "round-robin"):
        for rate in ("2", "8"):
            assert f"| {name} | {rate} | " in sweep
            assert (tmp_path / f"criticality-overload-rate{rate}-{name}.json").exists()
    assert (tmp_path / "criticality-overload-rate2-epp-envoy.json").exists()
    assert not (tmp_path / "criticality-overload-rate8-epp-envoy.json").exists()
    by_class = orjson.loads((tmp_path / "criticality-overload-rate2-default.json").read_bytes())["by_class"]
    assert set(by_class) == {"critical", "standard", "sheddable"} and by_class["sheddable"]["shed"] > 0
    assert "### By class" in report and "| round-robin | sheddable |" in report
    assert (tmp_path / "criticality-overload-vs-rate.png").stat().st_size > 5000
    assert (tmp_path / "criticality-overload-rate8-cdf.png").exists()


def test_sweep_table_rows_and_failed_points() -> None:
    s = summarize([_result(0, "a"), _result(1, "a", 429)], 2.0, Slo())
    table = sweep_markdown([SweepPoint(2, s, "default"), SweepPoint(4, None, "default", "boom | bang")])
    lines = table.splitlines()
    assert lines[0].startswith("| contender | rate (req/s) |")
    assert lines[2].startswith("| default | 2 | 0.50 | 0.50 | 100.0 |") and lines[2].endswith("| 1 | 0 |")
    assert lines[3] == "| default | 4 | failed: boom / bang | | | | | | |"
    assert sweep_markdown([SweepPoint(2, s)]).startswith("| rate (req/s) |")


def test_seeds_give_medians_with_spreads_and_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three seeds: one run each in its own folder, then median (min–max) per contender."""
    ttft_by_name = {"default": 0.1, "round-robin": 0.2, "sglang-router cache_aware": 0.4}

    def run(contender: Contender, fleet: FleetSpec, trace: list[BenchRequest], client: ClientConfig,
            slo: Slo, workdir: Path, progress: bool = True, classes: tuple[str, ...] = (),
            class_window_s: float | None = None) -> ContenderRun:  # fmt: skip
        ttft = ttft_by_name[contender.name] * fleet.seed  # seeds 1, 2, 3: median at seed 2
        results = [_result(r.index, r.tag, ttft=ttft) for r in trace]
        return ContenderRun(contender, summarize(results, 4.0, slo), results, [], {})

    monkeypatch.setattr(compare, "run_contender", run)
    monkeypatch.setattr(compare.Peer, "version", lambda self: "0.3.2")
    monkeypatch.setattr(compare.Peer, "installed", lambda self: True)  # nothing to install up front
    argv = ["compare", "--fleet", "2", "--workload", "shared-prefix", "--rate", "4", "--duration", "4",
            "--groups", "4", "--system-tokens", "100", "--seeds", "1,2,3",
            "--contenders", "default,round-robin,sglang-router", "--out", str(tmp_path)]  # fmt: skip
    done = CliRunner().invoke(bench_app, argv)
    assert done.exit_code == 0, done.output
    for seed in (1, 2, 3):
        document = orjson.loads((tmp_path / f"seed{seed}" / "shared-prefix-rate4-default.json").read_bytes())
        assert document["meta"]["seed"] == seed and document["meta"]["version"].startswith("inferpool ")
    peer = orjson.loads(
        (tmp_path / "seed1" / "shared-prefix-rate4-sglang-router-cache_aware.json").read_bytes()
    )
    assert peer["meta"]["version"] == "sglang-router 0.3.2"
    table = (tmp_path / "compare.md").read_text()
    assert "median (min–max) over 3 seeds" in table
    row = next(line for line in table.splitlines() if line.startswith("| default |"))
    assert row.split("|")[4].strip() == "200 (100–300)"  # p99 TTFT ms over seeds 1, 2, 3
    assert "- default vs round-robin (medians): p99 TTFT 0.50×" in table
    assert "- default vs sglang-router cache_aware (medians): p99 TTFT 0.25×" in table
    # the seeds' table records what ran, as each seed's compare.md and result files do
    assert "## Versions" in table and "- sglang-router cache_aware: sglang-router 0.3.2" in table


def test_fleet_layouts_parse_and_refuse() -> None:
    from inferpool.bench.compare import FleetLayout

    assert FleetLayout.parse("1P3D") == FleetLayout(1, 3) == FleetLayout.parse("1p:3d")
    two = FleetLayout.parse("2P:2D")
    assert (two.name, two.replicas, two.roles()) == ("2P2D", 4, ["prefill", "prefill", "decode", "decode"])
    for bad in ("0P4D", "4P0D", "2P", "PD", "2D2P", "2P2D2B"):
        with pytest.raises(ValueError, match="layout"):
            FleetLayout.parse(bad)
    [aggregated, split, random] = parse_contenders("default,default@1P3D,round-robin@2P:2D")
    assert aggregated.layout is None
    assert (split.name, split.profile, split.layout) == ("default@1P3D", "default", FleetLayout(1, 3))
    assert (random.profile, random.layout, random.slug) == ("round-robin", two, "round-robin-2P-2D")
    with pytest.raises(ValueError, match="layout"):
        parse_contenders("default@3P0D")
    with pytest.raises(ValueError, match="behind inferpool serve only"):
        parse_contenders("epp-envoy:default@2P2D")
    with pytest.raises(ValueError, match="unknown contender"):
        parse_contenders("nope@2P2D")


def test_pd_fleet_runs_nixl_and_labels_each_endpoint_with_its_role(tmp_path: Path) -> None:
    from inferpool.bench.compare import PD_KV_TRANSFER_CONFIG, FleetLayout
    from inferpool.roles import ROLE_LABEL, can_decode, can_prefill

    layout = FleetLayout(1, 3)
    ports = FleetPorts([9000, 9001, 9002, 9003])
    for i in range(4):
        argv = fleet_argv(FleetSpec(4, "/m", layout=layout), ports, i)
        assert json.loads(argv[argv.index("--kv-transfer-config") + 1]) == PD_KV_TRANSFER_CONFIG
        assert PD_KV_TRANSFER_CONFIG == {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
    assert "--kv-transfer-config" not in fleet_argv(FleetSpec(4, "/m"), ports, 0)  # aggregated: no connector
    _, endpoints = write_manifests(tmp_path, ports, 8080, layout)
    labels = [e["labels"] for e in orjson.loads(endpoints.read_bytes())["endpoints"]]
    assert [x[ROLE_LABEL] for x in labels] == ["prefill", "decode", "decode", "decode"]
    assert [can_prefill(x) for x in labels] == [True, False, False, False]
    assert [can_decode(x) for x in labels] == [False, True, True, True]
    _, endpoints = write_manifests(tmp_path, ports, 8080)
    assert all(ROLE_LABEL not in e["labels"] for e in orjson.loads(endpoints.read_bytes())["endpoints"])
    with pytest.raises(ValueError, match="1P3D is 4 replicas, the fleet 2"):
        write_manifests(tmp_path, FleetPorts([9000, 9001]), 8080, layout)


def test_a_layout_must_match_the_fleet_size(tmp_path: Path) -> None:
    argv = ["compare", "--fleet", "2", "--workload", "long-answer", "--rate", "1", "--duration", "2",
            "--contenders", "default,default@1P3D", "--out", str(tmp_path)]  # fmt: skip
    done = CliRunner().invoke(bench_app, argv)
    words = " ".join(done.output.replace("│", " ").split())  # the error box wraps the message
    assert done.exit_code == 2 and "layout 1P3D is 4 replicas, the fleet 2" in words, done.output


def test_pd_tables_per_seed_and_over_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Layouts get the P/D table: TTFT and ITL percentiles, throughput, goodput, prefill legs and
    fallbacks, per seed and as median (min–max) over seeds, with ratios to the aggregated fleet."""
    from inferpool.bench.stats import PrefillLegs

    ttft = {"default": 0.2, "default@1P1D": 0.3}
    itl = {"default": 0.04, "default@1P1D": 0.01}
    fleets: list[FleetSpec] = []

    def run(contender: Contender, fleet: FleetSpec, trace: list[BenchRequest], client: ClientConfig,
            slo: Slo, workdir: Path, progress: bool = True, classes: tuple[str, ...] = (),
            class_window_s: float | None = None) -> ContenderRun:  # fmt: skip
        fleets.append(fleet)
        results = [
            RequestResult(r.index, r.tag, 200, 0.0, ttft[contender.name] * fleet.seed, 1.0,
                          [itl[contender.name]] * 9, 10, 10)
            for r in trace
        ]  # fmt: skip
        legs = PrefillLegs(len(trace), fleet.seed - 1) if contender.layout else None
        return ContenderRun(contender, summarize(results, 4.0, slo), results, [], {}, [], legs)

    monkeypatch.setattr(compare, "run_contender", run)
    argv = ["compare", "--fleet", "2", "--workload", "long-answer", "--rate", "2", "--duration", "4",
            "--seeds", "1,2,3", "--slo", "ttft=1s,tpot=20ms", "--contenders", "default,default@1P1D",
            "--out", str(tmp_path)]  # fmt: skip
    done = CliRunner().invoke(bench_app, argv)
    assert done.exit_code == 0, done.output
    assert {f.replicas for f in fleets} == {2}
    seed2 = (tmp_path / "seed2" / "compare.md").read_text()
    assert "### Prefill/decode (SLO ttft<=1.00s, tpot<=20ms)" in seed2
    pd_rows = seed2[seed2.index("### Prefill/decode") :].splitlines()
    split = next(line for line in pd_rows if line.startswith("| default@1P1D |"))
    cells = [c.strip() for c in split.split("|")[1:-1]]
    # p50/p90/p99 TTFT, p50/p90/p99 ITL, output tok/s, goodput, prefill legs, fallbacks
    assert cells[1:4] == ["600"] * 3 and cells[4:7] == ["10"] * 3 and cells[-1] == "1"
    aggregated = next(line for line in pd_rows if line.startswith("| default |"))
    assert aggregated.split("|")[-3:-1] == [" - ", " - "]  # no prefill legs without a layout
    document = orjson.loads((tmp_path / "seed2" / "long-answer-rate2-default-1P1D.json").read_bytes())
    assert document["meta"]["layout"] == "1P1D" and document["meta"]["prefill"]["fallbacks"] == 1
    meta = document["meta"]  # when it ran, and the machine's load around it
    assert len(meta["loadavg_before"]) == len(meta["loadavg_after"]) == 3 and meta["ended"] >= meta["started"]
    over = (tmp_path / "compare.md").read_text()
    pd_part = over[over.index("# Prefill/decode") :]
    row = next(line for line in pd_part.splitlines() if line.startswith("| default@1P1D |"))
    assert row.split("|")[3].strip() == "600 (300–900)" and row.split("|")[-2].strip() == "1 (0–2)"
    # medians: TTFT 1.5x the aggregated fleet's (600 vs 400 ms), ITL 0.25x (10 vs 40 ms)
    assert "- default@1P1D vs default (medians): p99 TTFT 1.50×, p99 ITL 0.25×" in pd_part


def test_prefill_legs_are_read_from_the_gateway_metrics() -> None:
    """The count comes from the gateway's own exposition: its per-leg counter, prefill legs only."""
    from inferpool.bench.compare import prefill_legs_of
    from inferpool.bench.stats import PrefillLegs
    from inferpool.observe.metrics import GatewayMetrics
    from inferpool.records import PrefillLeg, RequestRecord

    metrics = GatewayMetrics()
    assert prefill_legs_of(metrics.exposition().decode()) == PrefillLegs(0, 0)  # aggregated: no legs

    def record(i: int, prefill: PrefillLeg | None) -> RequestRecord:
        return RequestRecord(request_id=str(i), pool="default/bench", model="m", target_model="m",
                             status=200, started_at=0.0, e2e_s=1.0, routed=True, endpoint="replica-2",
                             prefill=prefill)  # fmt: skip

    for i in range(5):
        metrics.observe(record(i, PrefillLeg("replica-0", "127.0.0.1:8000", 200, 0.05)))
    for i in range(5, 7):
        failed = PrefillLeg("replica-1", "127.0.0.1:8001", 503, 0.01, "HTTP 503", fell_back=True)
        metrics.observe(record(i, failed))
    metrics.observe(record(7, None))  # not split: a decode leg only, no prefill leg
    assert prefill_legs_of(metrics.exposition().decode()) == PrefillLegs(7, 2)


def test_prefill_prefix_hit_rate_from_the_replicas_vllm_counters() -> None:
    """Two simulated replicas' own metrics: a prompt seen twice on one of them is half hits there."""
    from inferpool.bench.compare import prefix_hit_rate_of
    from inferpool.sim.clock import VirtualClock
    from inferpool.sim.engine import Engine, SimRequest
    from inferpool.sim.metrics import MetricsConfig, SimMetrics
    from inferpool.sim.profile import load_profile

    pages = []
    for repeats in (2, 1):  # replica 0 sees the prompt twice, replica 1 once
        engine = Engine(load_profile("llama-3.1-8b-h100"), clock=VirtualClock())
        metrics = SimMetrics(engine, MetricsConfig("m", 1))
        for i in range(repeats):
            engine.add_request(SimRequest(f"r{i}", list(range(1000, 1320)), 2, ignore_eos=True))
            engine.run_until_idle()
        pages.append(metrics.render().decode())
    # replica 0: 640 tokens queried, 320 - 16 hit (vLLM never hits the last block of a full match)
    assert prefix_hit_rate_of(pages[:1]) == pytest.approx(304 / 640)
    assert prefix_hit_rate_of(pages) == pytest.approx(304 / 960)
    assert prefix_hit_rate_of([]) is None


def test_ramp_steps_are_measured_over_their_own_window_and_tabled_over_seeds() -> None:
    """cache-pressure: each step's rates over its 1/5 of the arrivals; one table per step with
    medians (min–max) over seeds and ratios to the first contender and the best peer."""
    from inferpool.bench.table import class_seeds_table
    from inferpool.bench.workloads import class_window_s

    assert class_window_s("cache-pressure", 60.0) == 12.0
    assert class_window_s("criticality-overload", 60.0) is None  # classes arrive throughout
    slo = Slo(ttft=1.0)
    steps = request_classes("cache-pressure")
    ttft = {"default": 0.4, "precise": 0.1, "sglang-router cache_aware": 0.8}
    by_seed: dict[int, list[SweepPoint]] = {}
    for seed in (101, 102, 103):
        points = []
        for name, base in ttft.items():
            # 12 requests in each step; TTFT grows with the step and the seed
            results = [
                _result(i, step, ttft=base * (k + 1) * (seed - 100))
                for k, step in enumerate(steps)
                for i in range(12)
            ]
            by_class = summarize_by_tag(results, 12.0, slo, steps)
            points.append(SweepPoint(10.0, summarize(results, 60.0, slo), name, by_class=by_class))
        by_seed[seed] = points
    table = class_seeds_table(by_seed, list(ttft), steps)
    assert table.count("## step-") == 5 and "## step-1 (10 req/s): median (min–max) over 3 seeds" in table
    step1 = table[table.index("## step-1") : table.index("## step-2")]
    row = next(line for line in step1.splitlines() if line.startswith("| precise |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "12 (12–12)"  # requests in the step, each seed
    assert cells[3] == "200 (100–300)"  # p90 TTFT ms: 100 ms × seed factor 1..3, median 200
    # 12 requests in a 12 s window: 1 req/s of goodput where all met the SLO (seed 101 and 102)
    assert "- precise vs default (medians): p90 TTFT 0.25×" in step1
    assert "- precise vs sglang-router cache_aware (medians): p90 TTFT 0.12×" in step1
    assert "sglang-router cache_aware vs" not in step1  # peers are the references, not compared
