"""`inferpool epp --workers N` picks the ports its workers bind later: never one twice, and
below the kernel's ephemeral range, where no outgoing connection can take it in between."""

from __future__ import annotations

from dataclasses import replace

import pytest

from inferpool import ports
from inferpool.extproc.app import EppApp, EppConfig, listening_lines
from inferpool.extproc.workers import worker_configs
from inferpool.state import Datastore


def test_picked_ports_are_distinct_and_below_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("32768 60999\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", ranges)
    base = EppConfig()
    config = replace(base, workers=6, grpc=replace(base.grpc, host="127.0.0.1", port=0, health_port=0))
    for _ in range(20):
        configs = worker_configs(config)
        assert len(configs) == 6
        grpc = configs[0].grpc
        internal = [c.metrics_port for c in configs[1:]]
        picked = [grpc.port, grpc.health_port, *internal]
        assert len(set(picked)) == len(picked), picked
        assert all(ports.PICK_FLOOR <= p < 32768 for p in picked), picked
        assert all(c.grpc == grpc for c in configs)  # every worker binds the same gRPC ports


async def test_the_token_generated_for_the_workers_is_printed() -> None:
    # auth is on by default: without the token printed, /metrics and the dashboard are unreadable
    first, *_ = worker_configs(replace(EppConfig(), workers=2))
    assert first.metrics_token and first.metrics_token_generated
    app = EppApp(first, Datastore())
    assert f"  metrics bearer token: {first.metrics_token}" in listening_lines(app)
    given, *_ = worker_configs(replace(EppConfig(), workers=2, metrics_token="mine"))
    assert not given.metrics_token_generated  # the operator's own token is never printed
    assert not any("token" in line for line in listening_lines(EppApp(given, Datastore())))
