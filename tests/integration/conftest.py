"""Shared helpers for tests that start real processes on loopback.

`free_port()` picks a port at run time; `Proc` starts a command in its own process group,
keeps its output in a file, waits for a line or a URL, and on teardown sends SIGINT, waits,
then SIGKILLs the group, so a failed test never leaves orphans or busy ports.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from free_ports import free_port as free_port  # re-exported: the tier's modules import it from here
from inferpool.ports import port_is_free as local_port_is_free

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INFERPOOL = str(BIN / "inferpool")


def port_is_free(port: int) -> bool:
    """Whether a server could bind the port now on 127.0.0.1 (TIME_WAIT is no owner)."""
    return local_port_is_free("127.0.0.1", port)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def wait_until(check, timeout: float = 60.0, interval: float = 0.05, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


class Proc:
    """A child process in its own session; output goes to a temp file that tests can read."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.argv = argv
        self.log = tempfile.NamedTemporaryFile(prefix="inferpool-proc-", suffix=".log", delete=False)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd, env=full_env, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for_line(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        regex = re.compile(pattern, re.M)
        found: list[re.Match[str]] = []

        def check() -> bool:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.argv[:3]} exited {self.popen.returncode}:\n{self.output()[-3000:]}"
                )
            m = regex.search(self.output())
            if m:
                found.append(m)
            return bool(m)

        wait_until(check, timeout, what=f"/{pattern}/ in output of {' '.join(self.argv[:3])}")
        return found[0]

    def interrupt(self, timeout: float = 30.0) -> int:
        """SIGINT, as Ctrl-C does; returns the exit code (SIGKILLs the group if it hangs)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(10)

    def close(self) -> None:
        self.interrupt(15)
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # anything the child left in its group
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture
def spawn() -> Iterator[callable]:  # type: ignore[valid-type]
    """spawn(argv) -> Proc; every process is stopped at teardown."""
    procs: list[Proc] = []

    def start(argv: list[str], **kw: object) -> Proc:
        proc = Proc(argv, **kw)  # type: ignore[arg-type]
        procs.append(proc)
        return proc

    yield start
    for proc in reversed(procs):
        proc.close()


def sim_argv(port: int, *extra: str) -> list[str]:
    """`inferpool sim` (falls back to the sim's typer command if the CLI lacks the registration)."""
    probe = subprocess.run([INFERPOOL, "sim", "--help"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        return [INFERPOOL, "sim", "--port", str(port), *extra]
    code = "import typer; from inferpool.sim.cli import sim_command; typer.run(sim_command)"
    return [sys.executable, "-c", code, "--port", str(port), *extra]


# -- a gateway in front of sims: the start-up every serve test shares ----------------------------

X_K8S_GROUP = "inference.networking.x-k8s.io"  # v1alpha2 pools
K8S_GROUP = "inference.networking.k8s.io"  # v1 pools


def gateway_manifests(
    pools_and_models: str,
    listener: int,
    routes: list[tuple[str | None, str]] | None = None,
    group: str = X_K8S_GROUP,
) -> str:
    """`pools_and_models` (YAML documents) plus a Gateway listening on `listener` and one HTTPRoute;
    `routes` lists (path prefix or None for every path, backend pool name), by default /v1 → pool."""
    rules = []
    for prefix, pool in routes or [("/v1", "pool")]:
        match = f"matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    " if prefix else ""
        rules.append(f"  - {match}backendRefs: [{{name: {pool}, group: {group}, kind: InferencePool}}]")
    return (
        pools_and_models.strip()
        + f"""
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  gatewayClassName: inferpool
  listeners:
  - {{name: http, protocol: HTTP, port: {listener}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: route}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
"""
        + "\n".join(rules)
        + "\n"
    )


def start_sims(  # type: ignore[no-untyped-def]
    spawn, ports: list[int], *extra: str, timeout: float = 60, env: dict[str, str] | None = None
) -> list[Proc]:
    """One `inferpool sim --model tiny` per port (seeded by its port unless `extra` seeds it), all healthy."""
    procs = []
    for port in ports:
        seeded = extra if "--seed" in extra else (*extra, "--seed", str(port))
        procs.append(spawn(sim_argv(port, "--model", "tiny", *seeded), env=env))
    for port in ports:
        wait_until(lambda p=port: http_ok(f"http://127.0.0.1:{p}/health"), timeout, what=f"sim on {port}")
    return procs


def sim_endpoint(port: int | None, name: str, **labels: str) -> dict[str, object]:
    """An endpoints-file entry for a sim on loopback, labelled app=sim (the pools' selector)."""
    entry: dict[str, object] = {"address": "127.0.0.1", "name": name, "labels": {"app": "sim", **labels}}
    if port is not None:  # none: the server joins the pool on each of the pool's target ports
        entry["port"] = port
    return entry


class ServeProc:
    """`inferpool serve --no-auth` from manifests and an endpoints file, once it prints its URLs."""

    def __init__(self, proc: Proc, url: str, admin: str) -> None:
        self.proc, self.url, self.admin = proc, url, admin


def start_serve(  # type: ignore[no-untyped-def]
    spawn,
    tmp_path: Path,
    manifests: str,
    endpoints: list[dict[str, object]],
    *args: str,
    ready: bool = False,
    timeout: float = 60,
) -> ServeProc:
    """Write the manifests and endpoints into `tmp_path`, start serve with `args` (a profile,
    limits) and wait for its gateway and admin lines; `ready` also waits for /readyz."""
    (tmp_path / "gw.yaml").write_text(manifests)
    (tmp_path / "endpoints.yaml").write_text(json.dumps({"endpoints": endpoints}))
    proc = spawn(
        [INFERPOOL, "serve", "--no-auth", "-f", str(tmp_path / "gw.yaml"),
         "--endpoints", str(tmp_path / "endpoints.yaml"), "--admin-port", "0", *args]
    )  # fmt: skip
    url = proc.wait_for_line(r"^gateway\s+(http://\S+)", timeout).group(1)
    admin = proc.wait_for_line(r"^admin\s+(http://\S+)", timeout).group(1)
    if ready:
        wait_until(lambda: http_ok(f"{admin}/readyz"), timeout, what="gateway ready (endpoints scraped)")
    return ServeProc(proc, url, admin)
