"""`inferpool bench` refuses what cannot run with one line naming the option, before any fleet or
load starts, and says so (exit 1) when a run served nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from free_ports import free_port
from inferpool.bench import peers
from inferpool.bench.command import bench_app
from inferpool.bench.procs import failure_reason


def invoke(*argv: str) -> tuple[int, str]:
    done = CliRunner().invoke(bench_app, list(argv))
    assert "Traceback" not in done.output
    return done.exit_code, " ".join(done.output.replace("│", " ").split())  # rich wraps the error box


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "127.0.0.1:8000"], "give a URL with http:// or https://"),
        (["--speed", "0"], "Invalid value for '--speed': 0: must be > 0"),
        (["--speed", "-1"], "Invalid value for '--speed': -1: must be > 0"),
        (["--workload", "shared-prefix", "--groups", "0"], "Invalid value for '--groups'"),
        (["--workload", "multi-lora", "--adapters", "0"], "Invalid value for '--adapters'"),
        (["--rate", "0.1", "--duration", "1"], "0.1 req/s over 1 s is less than one request"),
        (["--rates", "10,0.01", "--duration", "5"], "0.01 req/s over 5 s is less than one request"),
    ],
)
def test_run_refuses_before_any_load(argv: list[str], message: str) -> None:
    defaults = {"--target": "http://127.0.0.1:9", "--rate": "2", "--duration": "3"}
    for flag, value in defaults.items():
        if flag not in argv:
            argv = [*argv, flag, value]
    code, output = invoke("run", *argv)
    assert code == 2 and message in output, output


def test_run_that_served_nothing_exits_1_with_the_first_error() -> None:
    nothing_there = free_port()
    done = CliRunner().invoke(
        bench_app, ["run", "--target", f"http://127.0.0.1:{nothing_there}", "--rate", "4", "--duration", "1"]
    )
    assert done.exit_code == 1, done.output
    assert "nothing was served (first error: ClientConnectorError" in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--speed", "-2"], "Invalid value for '--speed': -2: must be > 0"),
        (["--rate", "0.5", "--duration", "1"], "0.5 req/s over 1 s is less than one request"),
        (["--contenders", "sglang-router:nosuch"], "sglang-router 0.3.2 has no policy 'nosuch'"),
        (["--contenders", "vllm-router:manual"], "vllm-router 0.1.17 has no policy 'manual'"),
    ],
)
def test_compare_refuses_before_any_fleet_starts(argv: list[str], message: str, tmp_path: Path) -> None:
    defaults = {"--fleet": "1", "--rate": "2", "--duration": "3", "--contenders": "default"}
    for flag, value in defaults.items():
        if flag not in argv:
            argv = [*argv, flag, value]
    code, output = invoke("compare", *argv, "--out", str(tmp_path))
    assert code == 2 and message in output, output
    assert not (tmp_path / "logs").exists()  # no fleet was started


def test_simulate_refuses_an_unknown_profile() -> None:
    code, output = invoke("simulate", "--replicas", "2", "--duration", "0.5", "--profile", "nosuch")
    assert code == 2 and "nosuch: not a built-in profile" in output, output


def test_a_failed_contender_is_reported_with_the_last_line_its_process_logged() -> None:
    err = RuntimeError(
        "sglang-router-nosuch exited (2): (logs in /tmp/x/logs)\nusage: sglang-router ...\n"
        "sglang-router: error: argument --policy: invalid choice: 'nosuch'\n"
    )
    assert failure_reason(err) == (
        "RuntimeError: sglang-router-nosuch exited (2): (logs in /tmp/x/logs) ... "
        "sglang-router: error: argument --policy: invalid choice: 'nosuch'"
    )
    assert failure_reason(ValueError("one line")) == "ValueError: one line"


def test_a_peer_that_cannot_be_installed_says_what_pip_said_and_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERPOOL_PEERS_DIR", str(tmp_path / "peers"))
    # a venv that exists but a pip that fails, as with no reachable package index
    venv = tmp_path / "peers" / "sglang-router" / "bin"
    venv.mkdir(parents=True)
    (venv / "pip").write_text(
        f"#!{sys.executable}\nimport sys\nsys.exit('ERROR: No matching distribution found')\n"
    )
    (venv / "pip").chmod(0o755)
    with pytest.raises(peers.PeerInstallError) as info:
        peers.ensure_installed(peers.Peer("sglang-router", "cache_aware"))
    message = str(info.value)
    assert "could not install sglang-router==0.3.2" in message
    assert "ERROR: No matching distribution found" in message and "make peers" in message
    assert subprocess.run([str(venv / "pip")], capture_output=True).returncode != 0
