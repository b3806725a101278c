"""Listening ports picked at run time, where a bind to port 0 would not do.

A process that picks a port for another one to bind later (a worker, a child server) leaves a
window between the check and the bind. Binding port 0 picks from the kernel's ephemeral range,
which the local ports of outgoing connections come from, so any connection opened in that window
can take the port ("address already in use"). Ports are therefore picked at random between
PICK_FLOOR and the start of that range. Below PICK_FLOOR are the ports servers are configured
with (8000, 9090...).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

PICK_FLOOR = 10_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
MIN_ROOM = 256  # fewer ports than this below the ephemeral range: let the kernel pick


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could bind `port` on `host` now (a socket in TIME_WAIT owns nothing)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def listen_range() -> tuple[int, int] | None:
    """[low, high) to pick listening ports from, below the ephemeral range; None where the system
    does not say what that range is (then the kernel picks: port 0)."""
    try:
        first_ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (PICK_FLOOR, first_ephemeral) if first_ephemeral - PICK_FLOOR >= MIN_ROOM else None


def kernel_port(host: str) -> int:
    """A port the kernel says is free on `host` now (bind to port 0), from its ephemeral range."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port(host: str, exclude: frozenset[int] | set[int] = frozenset()) -> int:
    """One free port on `host` for a server that binds it later, outside `exclude` (ports handed
    out but not bound yet)."""
    pick_from = listen_range()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(*pick_from) if pick_from is not None else kernel_port(host)
        if port not in exclude and port_is_free(host, port):
            return port
    raise RuntimeError(f"no free port on {host}")
