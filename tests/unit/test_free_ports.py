"""The tests' port helper never hands out one port twice, even when the kernel offers it again."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import free_ports
from inferpool import ports
from inferpool.bench import procs


def _offer(monkeypatch: pytest.MonkeyPatch, ports: list[int]) -> None:
    """What bind(("127.0.0.1", 0)) says, call by call; every port counts as free."""
    offered: Iterator[int] = iter(ports)
    monkeypatch.setattr(procs, "kernel_port", lambda host: next(offered))
    monkeypatch.setattr(procs, "port_is_free", lambda host, port: True)
    monkeypatch.setattr(procs, "listen_range", lambda: None)  # the kernel picks (port 0)


def test_a_port_is_handed_out_once_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(procs.PORT_SLICE_ENV, raising=False)  # a worker's slice would refuse some of these
    monkeypatch.setattr(free_ports, "_handed_out", set())
    _offer(monkeypatch, [40001, 40001, 40002, 40001, 40003])
    assert [free_ports.free_port() for _ in range(3)] == [40001, 40002, 40003]


def test_parallel_workers_pick_only_in_their_own_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    block = procs.PORT_BLOCK
    # blocks 625 and 627 are slice 1 of 2, 626 is slice 0; a run of two from the last port of
    # block 626 crosses into 627
    _offer(monkeypatch, [625 * block + 1, 627 * block - 1, 626 * block + 3])
    monkeypatch.setenv(procs.PORT_SLICE_ENV, "0/2")
    assert procs.free_ports(2) == [626 * block + 3, 626 * block + 4]
    _offer(monkeypatch, [626 * block, 628 * block - 2])
    monkeypatch.setenv(procs.PORT_SLICE_ENV, "1/2")
    assert procs.free_ports(2) == [628 * block - 2, 628 * block - 1]
    monkeypatch.delenv(procs.PORT_SLICE_ENV)
    _offer(monkeypatch, [626 * block])
    assert procs.free_ports(1) == [626 * block]  # no slice: any port


@pytest.mark.parametrize("value", ["2/2", "x/2", "1", "-1/2"])
def test_a_malformed_slice_is_a_clear_error(monkeypatch, value: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(procs.PORT_SLICE_ENV, value)
    with pytest.raises(ValueError, match=procs.PORT_SLICE_ENV):
        procs.port_slice()


def test_ports_are_picked_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # outgoing connections take their local ports from the ephemeral range: a port picked there
    # can be taken between the check and the server's bind
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("32768\t60999\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", ranges)
    assert ports.listen_range() == (ports.PICK_FLOOR, 32768)
    monkeypatch.setenv(procs.PORT_SLICE_ENV, "1/3")
    for _ in range(50):
        run = procs.free_ports(3)
        assert all(ports.PICK_FLOOR <= p < 32768 and (p // procs.PORT_BLOCK) % 3 == 1 for p in run), run
        assert run == list(range(run[0], run[0] + 3))
    ranges.write_text("10100 60999\n")  # too little room below it: the kernel picks
    assert ports.listen_range() is None
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "missing")
    assert ports.listen_range() is None


def test_a_port_in_use_or_handed_out_is_not_picked(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("10300 60999\n")  # room for 300 ports: 10000..10299
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", ranges)
    busy = {p for p in range(10_000, 10_300) if p % 3}  # two in three in use
    monkeypatch.setattr(procs, "port_is_free", lambda host, port: port not in busy)
    monkeypatch.delenv(procs.PORT_SLICE_ENV, raising=False)
    handed: list[int] = []
    for _ in range(40):
        (port,) = procs.free_ports(1, exclude=handed)
        assert port not in busy and port not in handed
        handed.append(port)


def test_a_held_port_refuses_other_servers_and_serves_the_ones_that_share_it() -> None:
    """`reserve_port`: what `inferpool epp --workers` holds its gRPC ports with until they serve."""
    held = ports.reserve_port("127.0.0.1")
    port = held.getsockname()[1]
    with held:
        assert not ports.port_is_free("127.0.0.1", port)  # a server without SO_REUSEPORT
        with socket.socket() as sharing:
            sharing.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sharing.bind(("127.0.0.1", port))
            sharing.listen()
            # a connection goes to the listening socket, never to the one holding the port
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                accepted, _ = sharing.accept()
                accepted.close()
