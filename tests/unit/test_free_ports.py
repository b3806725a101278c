"""The tests' port helper never hands out one port twice, even when the kernel offers it again."""

from __future__ import annotations

import free_ports
from inferpool.bench import procs


def test_a_port_is_handed_out_once_per_run(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    offered = iter([40001, 40001, 40002, 40001, 40003])  # what bind(("127.0.0.1", 0)) would say

    class Socket:
        def __enter__(self) -> Socket:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def bind(self, address: tuple[str, int]) -> None:
            self.port = next(offered)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(free_ports, "_handed_out", set())
    monkeypatch.setattr(procs.socket, "socket", Socket)
    monkeypatch.setattr(procs, "port_is_free", lambda host, port: True)
    assert [free_ports.free_port() for _ in range(3)] == [40001, 40002, 40003]
