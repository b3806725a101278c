"""`inferpool sim` and `python -m inferpool.sim.calibrate` refuse bad arguments in one line,
before anything listens (a port past 65535 was wrapped by the OS onto another port)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from inferpool.sim.cli import sim_command


def invoke(*argv: str) -> tuple[int, str]:
    app = typer.Typer()
    app.command()(sim_command)
    done = CliRunner().invoke(app, list(argv))
    return done.exit_code, " ".join(done.output.replace("│", " ").split())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "less than or equal to 65535"),
        (["--port", "-5"], "greater than or equal to 0"),
        (["--port", "65535", "--replicas", "2"], "the replicas' ports would run to 65536, past 65535"),
        (["--port", "65530", "--replicas", "2", "--data-parallel-size", "4"], "would run to 65537"),
    ],
)
def test_ports_past_the_range_are_refused(argv: list[str], message: str) -> None:
    code, output = invoke(*argv)
    assert code == 2 and message in output, output


def test_calibrate_names_an_unknown_profile_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "inferpool.sim.calibrate", "--profile", "nosuch"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "python -m inferpool.sim.calibrate: error: unknown profile 'nosuch'" in done.stderr
    assert "Traceback" not in done.stderr
