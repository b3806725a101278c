"""The `inferpool` entry point: every command is reachable, and a command imports only its own
module's dependencies (the other commands' modules are imported when they run)."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inferpool.cli import COMMANDS, app, click_command


def test_help_lists_every_command_and_each_resolves() -> None:
    listed = CliRunner().invoke(app, ["--help"])
    assert listed.exit_code == 0, listed.output
    # the first column of the help's command panel, in COMMANDS' order (colours taken out:
    # rich adds them where FORCE_COLOR is set)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", listed.output)
    assert re.findall(r"^│ ([a-z][a-z-]*) ", plain, re.MULTILINE) == list(COMMANDS)
    for name in COMMANDS:
        shown = CliRunner().invoke(app, [name, "--help"])
        assert shown.exit_code == 0, (name, shown.output)
        assert "Usage:" in shown.output


def test_each_line_in_help_is_the_commands_own() -> None:
    # root help shows COMMANDS' lines without loading the commands: each must be what typer
    # would show from the command itself (the first paragraph of its help, lines joined)
    for name, line in COMMANDS.items():
        command = click_command(name)
        assert command.short_help is None, name
        assert not command.hidden and not command.deprecated, name
        assert not getattr(command, "rich_help_panel", None), name  # typer: falsy = the default panel
        first = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ").strip()
        assert line == first, name


def test_an_unknown_command_is_a_usage_error() -> None:
    done = CliRunner().invoke(app, ["no-such-command"])
    assert done.exit_code == 2
    assert "No such command" in done.output


_PROBE = """
import sys
from inferpool.cli import click_command
click_command("sim")
print(*sorted(m for m in ("inferpool.gateway.proxy", "inferpool.extproc.server", "inferpool.bench.compare",
                          "inferpool.sim.engine") if m in sys.modules))
"""


def test_a_command_imports_its_own_module_only() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["inferpool.sim.engine"]


_HELP_PROBE = """
import sys
from typer.testing import CliRunner
from inferpool.cli import app
assert CliRunner().invoke(app, ["--help"]).exit_code == 0
print(*sorted(m for m in sys.modules if m.startswith("inferpool.") and m != "inferpool.cli"))
"""


def test_root_help_imports_no_command() -> None:
    done = subprocess.run([sys.executable, "-c", _HELP_PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


_BAD_POOL = """apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: p
spec:
  targetPorts: [{number: "x"}]
"""


@pytest.mark.parametrize(
    ("args", "status", "says"),
    [
        (["epp", "-f", "{tmp}/missing"], 1, "no such file or directory"),
        (["epp", "-f", "{tmp}/manifests"], 1, "spec.targetPorts[0].number"),
        (["sim", "--profile", "nope"], 2, "unknown profile 'nope'"),
        (["sim", "--profile", "{tmp}/broken.yaml"], 2, "is not valid YAML"),
        (["sim", "--speed", "-1"], 2, "speed must be > 0"),
        (["bench", "compare", "--workload", "nope", "--rate", "1"], 2, "unknown workload 'nope'"),
        (["bench", "compare", "--rates", "2,x"], 2, "give rates > 0"),
        (["keys", "add", "k", "--keys-file", "{tmp}/no-such-dir/keys.yaml"], 1, "cannot write"),
        (["bench", "compare", "--arrival", "nope", "--rate", "1"], 2, "unknown arrival profile 'nope'"),
        (["bench", "compare", "--slo", "ttft=soon", "--rate", "1"], 2, "not a duration: 'soon'"),
        (["bench", "compare", "--fleet", "0", "--rate", "1"], 2, "greater than or equal to 1"),
        (["bench", "simulate", "--replicas", "10,x"], 2, "give fleet sizes"),
        (["bench", "simulate", "--rate", "-3"], 2, "-3: must be > 0"),
        (
            ["bench", "overhead", "--smoke", "--client-cpus", "4096"],
            2,
            "CPU 4096 is not one this process may use",
        ),
        (["top", "--admin", "127.0.0.1:9090", "--once"], 2, "give the admin URL"),
        (["top", "--interval", "-1"], 2, "--interval"),
        (["top", "--decisions", "-1"], 2, "--decisions"),
        (["epp", "-f", "{tmp}/missing", "--grpc-port", "70000"], 2, "--grpc-port"),
        (["epp", "-f", "{tmp}/missing", "--metrics-port", "-1"], 2, "--metrics-port"),
        (["epp", "-f", "{tmp}/missing", "--log-level", "loud"], 2, "Invalid value for --log-level"),
        (["epp", "-f", "{tmp}/missing", "--refresh-metrics-interval", "0"], 2, "must be above 0"),
        (["epp", "-f", "{tmp}/missing", "--fallback-endpoints", "0"], 2, "--fallback-endpoints"),
        (["epp", "-f", "{tmp}/missing", "--config-text", "kind: [x"], 2, "Invalid value for --config-text"),
    ],
    ids=[
        "epp-missing",
        "epp-invalid",
        "sim-profile",
        "sim-profile-yaml",
        "sim-speed",
        "workload",
        "rates",
        "keys",
        "arrival",
        "slo",
        "fleet",
        "fleet-sizes",
        "rate",
        "cpus",
        "top-admin",
        "top-interval",
        "top-decisions",
        "epp-port-range",
        "epp-negative-port",
        "epp-log-level",
        "epp-refresh-zero",
        "epp-fallback-zero",
        "epp-config-text",
    ],
)
def test_bad_input_is_one_clear_message(
    args: list[str], status: int, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if args[0] == "epp":  # the picker sets its process's CPU policy: pytest's must stay as it is
        monkeypatch.setattr("inferpool.extproc.command.apply_cpu_policy", lambda policy: True)
        # free ports: on the defaults (9002, 9003, 9090) another picker, a demo or a parallel
        # test worker would turn the expected message into "Failed to bind"
        for flag in ("--grpc-port", "--grpc-health-port", "--metrics-port"):
            if flag not in args:
                args = [*args, flag, "0"]
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "pool.yaml").write_text(_BAD_POOL)
    (tmp_path / "broken.yaml").write_text("step: [1, 2\n")
    done = CliRunner().invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert not isinstance(done.exception, Exception) or isinstance(done.exception, SystemExit), done.exception
    assert done.exit_code == status, done.output
    assert says in " ".join(done.output.replace("│", " ").split()), done.output


def _help_pages() -> list[tuple[list[str], Any]]:
    """(argv, click command) for every command and every subcommand of a group."""
    pages = []
    for name in COMMANDS:
        command = click_command(name)
        pages.append(([name], command))
        for sub, subcommand in getattr(command, "commands", {}).items():
            pages.append(([name, sub], subcommand))
    return pages


def test_every_help_shows_each_flag_whole_at_80_columns() -> None:
    """Help is plain text (inferpool.clihelp): typer's rich table cut long flag names to fit 80
    columns (`--otlp-traces-endpo…`, `--metrics-staleness-thresh…`)."""
    for argv, command in _help_pages():
        shown = CliRunner().invoke(app, [*argv, "--help"], terminal_width=80, env={"COLUMNS": "80"})
        assert shown.exit_code == 0, (argv, shown.output)
        flags = [opt for param in command.params for opt in (*param.opts, *param.secondary_opts)]
        missing = [flag for flag in flags if flag.startswith("--") and flag not in shown.output]
        assert not missing, (argv, missing)


def test_the_pickers_upstream_flags_keep_their_own_section() -> None:
    shown = CliRunner().invoke(app, ["epp", "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert "\nUpstream EPP flags:\n" in shown.output  # the help panels stay, as sections
