"""Free TCP ports on 127.0.0.1 for the tests' servers, never the same one twice in a run.

Binding port 0 and closing the socket gives a port that is free now, and the kernel may give the
same port to the next such call before the first caller has bound it: an `inferpool epp` was
once handed one port for both its health and its metrics server. So every port handed out is
remembered for the rest of the run (pytest runs the tests in one process) and excluded from the
bench's own picker.
"""

from __future__ import annotations

from inferpool.bench.procs import free_ports

_handed_out: set[int] = set()


def free_port() -> int:
    (port,) = free_ports(1, exclude=_handed_out)
    _handed_out.add(port)
    return port
