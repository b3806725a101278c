"""The tests' port helper never hands out one port twice, even when the kernel offers it again."""

from __future__ import annotations

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
        one = ports.free_port("127.0.0.1", exclude={run[0]})
        assert ports.PICK_FLOOR <= one < 32768 and one != run[0], one
    ranges.write_text("10100 60999\n")  # too little room below it: the kernel picks
    assert ports.listen_range() is None
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "missing")
    assert ports.listen_range() is None


def test_a_port_in_use_or_handed_out_is_not_picked(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("10300 60999\n")  # room for 300 ports: 10000..10299
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", ranges)
    busy = {p for p in range(10_000, 10_300) if p % 3}  # two in three in use
    monkeypatch.setattr(ports, "port_is_free", lambda host, port: port not in busy)
    handed: set[int] = set()
    for _ in range(40):
        port = ports.free_port("127.0.0.1", exclude=handed)
        assert port not in busy and port not in handed
        handed.add(port)
