"""`inferpool epp --workers N` leaves no port picked for a worker to bind later: the shared gRPC
ports are held from the kernel's pick until the workers serve, and the workers other than the
first serve their metrics on Unix sockets in a directory of their own."""

from __future__ import annotations

import stat
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from inferpool import ports
from inferpool.extproc.app import EppApp, EppConfig, listening_lines
from inferpool.extproc.workers import Supervisor, hold_grpc_ports, worker_configs
from inferpool.state import Datastore


def test_ports_asked_as_0_are_held_until_the_workers_bind_them(tmp_path: Path) -> None:
    base = EppConfig()
    config = replace(base, workers=6, grpc=replace(base.grpc, host="127.0.0.1", port=0, health_port=0))
    (grpc_port, health_port), held = hold_grpc_ports(config)
    try:
        assert grpc_port != health_port and len(held) == 2
        # nobody else can take them in between: a server without SO_REUSEPORT cannot bind them
        assert not ports.port_is_free("127.0.0.1", grpc_port)
        assert not ports.port_is_free("127.0.0.1", health_port)
        configs = worker_configs(config, (grpc_port, health_port), tmp_path)
    finally:
        for sock in held:
            sock.close()
    assert len(configs) == 6
    grpc = configs[0].grpc
    assert (grpc.port, grpc.health_port) == (grpc_port, health_port) and grpc.reuse_port
    assert all(c.grpc == grpc for c in configs)  # every worker binds the same gRPC ports
    sockets = [c.metrics_socket for c in configs[1:]]
    assert configs[0].metrics_socket is None and configs[0].metrics_port == base.metrics_port
    assert configs[0].peer_metrics == tuple(sockets) and len(set(sockets)) == 5
    assert all(path is not None and path.parent == tmp_path for path in sockets)


def test_configured_ports_are_used_as_they_are() -> None:
    base = EppConfig()
    config = replace(base, workers=2, grpc=replace(base.grpc, port=9102, health_port=9103))
    assert hold_grpc_ports(config) == ((9102, 9103), [])


def test_the_sockets_directory_is_private_and_removed_at_stop() -> None:
    base = EppConfig()
    supervisor = Supervisor(
        replace(base, workers=2, grpc=replace(base.grpc, host="127.0.0.1", port=0, health_port=0))
    )
    directory = supervisor.sockets
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700  # only this user reaches the workers' metrics
    supervisor.stop()
    assert not directory.exists()


def test_a_sockets_path_too_long_is_a_clear_error(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    with pytest.raises(ValueError, match="longer than a Unix socket's path may be"):
        worker_configs(replace(EppConfig(), workers=2), (9002, 9003), deep)


async def test_the_token_generated_for_the_workers_is_printed(tmp_path: Path) -> None:
    # auth is on by default: without the token printed, /metrics and the dashboard are unreadable
    first, second = worker_configs(replace(EppConfig(), workers=2), (9002, 9003), tmp_path)
    assert first.metrics_token and first.metrics_token_generated
    app = EppApp(first, Datastore())
    assert f"  metrics bearer token: {first.metrics_token}" in listening_lines(app)
    assert f"  metrics   unix:{second.metrics_socket} /metrics" in listening_lines(
        EppApp(second, Datastore())
    )
    given, *_ = worker_configs(replace(EppConfig(), workers=2, metrics_token="mine"), (9002, 9003), tmp_path)
    assert not given.metrics_token_generated  # the operator's own token is never printed
    assert not any("token" in line for line in listening_lines(EppApp(given, Datastore())))


def test_an_unwritable_temporary_directory_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/inferpool-test")
    with pytest.raises(OSError, match="set TMPDIR to a writable directory"):
        Supervisor(replace(EppConfig(), workers=2))
