"""`inferpool epp` under upstream's command line: the args upstream's inferencepool chart renders,
Go's flag syntax, its environment variables and its metric specs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from inferpool.cli import app
from inferpool.extproc import command
from inferpool.extproc.app import EppConfig
from inferpool.extproc.upstream_flags import flag_metric_map, go_style_args, metric_series
from inferpool.logformat import JsonFormatter
from inferpool.scrape.engines import VLLM, Series, engine_map

# what upstream's chart mounts and passes as --config-file
UPSTREAM_PLUGINS_FILE = Path(__file__).resolve().parents[2] / "data" / "epp" / "upstream-default-plugins.yaml"
UPSTREAM_PLUGINS = UPSTREAM_PLUGINS_FILE.read_text()


def test_go_style_args_become_clicks() -> None:
    long_names = {"--pool-name", "--v", "--secure-serving", "--no-secure-serving", "-f"}
    booleans = {"--secure-serving": "--no-secure-serving"}
    args = [
        "-pool-name",
        "x",
        "-v",
        "2",
        "--secure-serving=false",
        "-f",
        "m.yaml",
        "-pool-name=y",
        "--",
        "-v",
    ]
    assert go_style_args(args, long_names, booleans) == [
        "--pool-name", "x", "--v", "2", "--no-secure-serving", "-f", "m.yaml", "--pool-name=y", "--", "-v",
    ]  # fmt: skip
    assert go_style_args(["--secure-serving=1", "--secure-serving=T"], long_names, booleans) == [
        "--secure-serving",
        "--secure-serving",
    ]
    assert go_style_args(["-unknown", "--other=false"], long_names, booleans) == ["-unknown", "--other=false"]


def test_metric_specs_as_upstream_writes_them() -> None:
    assert metric_series("vllm:num_requests_waiting", "--x") == Series("vllm:num_requests_waiting")
    assert metric_series('m{b="2", a=1}', "--x") == Series("m", (("a", "1"), ("b", "2")))
    assert metric_series('"sglang:num_queue_reqs"', "--x") == Series(
        "sglang:num_queue_reqs"
    )  # upstream chart quotes
    for bad in ("", "1bad", "m{a}", "m{a=1"):
        with pytest.raises(ValueError, match="--x"):
            metric_series(bad, "--x")
    assert flag_metric_map() is None
    only_queue = flag_metric_map("q{k=v}")
    assert only_queue is not None
    assert only_queue.waiting == (Series("q", (("k", "v"),)),)
    assert (only_queue.running, only_queue.kv_usage, only_queue.lora_info) == (
        VLLM.running,
        VLLM.kv_usage,
        VLLM.lora_info,
    )
    no_lora = flag_metric_map(lora_info="")
    assert no_lora is not None and no_lora.lora_info is None
    cache = flag_metric_map(cache_info='"sglang:cache_config_info"', base="sglang")
    assert cache is not None and cache.waiting == engine_map("sglang").waiting
    assert cache.block_size[0] == Series("sglang:cache_config_info", (), "block_size")
    assert cache.num_blocks[0] == Series("sglang:cache_config_info", (), "num_gpu_blocks")
    assert cache.block_size[1:] == engine_map("sglang").block_size  # the engine's own, after it


UPSTREAM_ENV = (
    "POOL_NAME", "POOL_NAMESPACE", "NAMESPACE", "GRPC_PORT", "GRPC_HEALTH_PORT", "REFRESH_METRICS_INTERVAL",
    "SECURE_SERVING", "MODEL_SERVER_METRICS_PATH", "MODEL_SERVER_METRICS_PORT", "OTEL_EXPORTER_OTLP_ENDPOINT",
    "DESTINATION_ENDPOINT_HINT_KEY", "MODEL_SERVER_METRICS_SCHEME", "MODEL_SERVER_METRICS_HTTPS_INSECURE_SKIP_VERIFY",
)  # fmt: skip


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[EppConfig]:
    """The EppConfig each `inferpool epp` run would serve (nothing is started)."""
    configs: list[EppConfig] = []

    async def run(config: EppConfig) -> None:
        configs.append(config)

    monkeypatch.setattr(command, "_run", run)
    monkeypatch.setattr(command, "apply_cpu_policy", lambda policy: True)  # pytest's own stays as it is
    for name in UPSTREAM_ENV:
        monkeypatch.delenv(name, raising=False)
    return configs


def test_the_args_upstreams_chart_renders_are_taken(started: list[EppConfig]) -> None:
    # epp-deployment.yaml of upstream's inferencepool chart, a v1alpha2 pool on Triton, one replica
    plugins = UPSTREAM_PLUGINS_FILE
    args = [
        "epp", "--pool-name", "vllm-llama3-8b-instruct", "--pool-namespace", "default",
        "--pool-group", "inference.networking.x-k8s.io", "--zap-encoder", "json",
        "--config-file", str(plugins),
        "--total-queued-requests-metric", "nv_trt_llm_request_metrics{request_type=waiting}",
        "--kv-cache-usage-percentage-metric", "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=fraction}",
        "--lora-info-metric", "",
        "--tracing=false", "--metrics-endpoint-auth=false",
        "--cache-info-metric", '"nv_trt_llm_kv_cache_info"',
    ]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    [config] = started
    assert (config.pool_name, config.pool_namespace, config.pool_group) == (
        "vllm-llama3-8b-instruct",
        "default",
        "inference.networking.x-k8s.io",
    )
    assert config.config_file == plugins and config.kubernetes_mode
    assert not config.metrics_auth and config.grpc.secure and config.otlp_traces_endpoint is None
    assert config.metric_map is not None and config.metric_map.lora_info is None
    assert config.metric_map.waiting == (
        Series("nv_trt_llm_request_metrics", (("request_type", "waiting"),)),
    )


def test_go_syntax_and_environment(started: list[EppConfig], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAMESPACE", "team-a")  # what upstream's chart sets from the pod
    monkeypatch.setenv("GRPC_PORT", "19002")
    monkeypatch.setenv("MODEL_SERVER_METRICS_PORT", "8001")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    args = ["epp", "-pool-name=p", "-secure-serving=false", "--tracing", "--config-text", UPSTREAM_PLUGINS,
            "-ha-enable-leader-election=true", "--enable-pprof=false", "--refresh-prometheus-metrics-interval", "5s",
            "--health-checking", "--destination-endpoint-hint-key", "x-gateway-destination-endpoint",
            "--destination-endpoint-hint-metadata-namespace=envoy.lb"]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    [config] = started
    assert (config.pool_name, config.pool_namespace, config.grpc.port) == ("p", "team-a", 19002)
    assert not config.grpc.secure and config.leader_election and config.model_server_metrics_port == 8001
    assert config.grpc.health_on_ext_proc  # upstream's header defaults spelt out: accepted
    assert config.otlp_traces_endpoint == "http://127.0.0.1:4317"
    assert config.config_file is not None and config.config_file.read_text() == UPSTREAM_PLUGINS
    # flags win over the environment, as with upstream's binary
    again = CliRunner().invoke(app, ["epp", "--pool-name", "p", "--pool-namespace", "ns", "--grpc-port", "1"])
    assert again.exit_code == 0, again.output
    assert (started[1].pool_namespace, started[1].grpc.port) == ("ns", 1)
    # NAMESPACE names the pod's namespace: manifests carry their own
    manifests = Path(__file__).resolve().parents[3] / "examples" / "gke-quickstart"
    local = CliRunner().invoke(app, ["epp", "-f", str(manifests), "--pool-name", "p"])
    assert local.exit_code == 0, local.output
    assert started[2].pool_namespace == "default"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--secure-serving=maybe"], "'maybe' is not a boolean"),
        (["--tracing"], "set OTEL_EXPORTER_OTLP_ENDPOINT"),
        (["--zap-encoder", "logfmt"], "use console or json"),
        (["--total-queued-requests-metric", "q{oops}"], "'oops' in 'q{oops}' is not label=value"),
        (["--config-file", "x.yaml", "--config-text", "y"], "not both"),
        (["--refresh-prometheus-metrics-interval", "soon"], "--refresh-prometheus-metrics-interval"),
        (
            ["--destination-endpoint-hint-key", "x-picked"],
            "inferpool's is fixed, 'x-gateway-destination-endpoint'",
        ),
    ],
)
def test_upstream_flags_that_cannot_work_say_why(
    started: list[EppConfig], args: list[str], says: str
) -> None:
    done = CliRunner().invoke(app, ["epp", "--pool-name", "p", *args])
    assert done.exit_code == 2 and not started
    assert says in " ".join(done.output.replace("│", " ").split()), done.output


def test_json_log_lines_carry_zaps_keys() -> None:
    record = logging.LogRecord("inferpool.x", logging.WARNING, __file__, 1, "pool %s synced", ("p",), None)
    line = orjson.loads(JsonFormatter(worker=2).format(record))
    assert line == {"level": "warning", "ts": record.created, "logger": "inferpool.x",
                    "msg": "pool p synced", "worker": 2}  # fmt: skip
    probe = "from inferpool.logformat import configure_logging; import logging\n"
    probe += "configure_logging('info', 'json'); logging.getLogger('t').info('hi'); logging.getLogger('t').debug('no')"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [only] = done.stderr.splitlines()
    assert orjson.loads(only)["msg"] == "hi"


def test_metrics_auth_off_wins_over_a_token(
    started: list[EppConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a token from the environment (a Secret mounted for another purpose) must not turn auth back on
    monkeypatch.setenv("INFERPOOL_METRICS_TOKEN", "from-a-secret")
    guide = str(Path(__file__).resolve().parents[3] / "examples" / "gke-quickstart")
    done = CliRunner().invoke(app, ["epp", "-f", guide, "--no-metrics-endpoint-auth"])
    assert done.exit_code == 0, done.output
    done = CliRunner().invoke(app, ["epp", "-f", guide, "--metrics-token", "on-the-line"])
    assert done.exit_code == 0, done.output
    off, on = started
    assert not off.metrics_auth and off.metrics_token is None
    assert on.metrics_auth and on.metrics_token == "on-the-line"


def test_manifests_without_endpoints_warn_that_no_server_will_be_known(
    started: list[EppConfig], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    guide = str(Path(__file__).resolve().parents[3] / "examples" / "gke-quickstart")
    with caplog.at_level(logging.WARNING, logger="inferpool.extproc.command"):
        assert CliRunner().invoke(app, ["epp", "-f", guide]).exit_code == 0
    assert "-f without --endpoints" in caplog.text
    caplog.clear()
    endpoints = tmp_path / "endpoints.yaml"
    endpoints.write_text("endpoints: []\n")
    with caplog.at_level(logging.WARNING, logger="inferpool.extproc.command"):
        assert CliRunner().invoke(app, ["epp", "-f", guide, "--endpoints", str(endpoints)]).exit_code == 0
    assert "--endpoints" not in caplog.text
