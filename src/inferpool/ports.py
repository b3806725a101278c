"""Listening ports picked at run time, where a bind to port 0 would not do.

A process that picks a port for another one to bind later (a child server) leaves a window
between the check and the bind. Binding port 0 picks from the kernel's ephemeral range,
which the local ports of outgoing connections come from, so any connection opened in that window
can take the port ("address already in use"). Ports are therefore picked at random between
PICK_FLOOR and the start of that range (inferpool.bench.procs.free_ports picks them). Below
PICK_FLOOR are the ports servers are configured with (8000, 9090...).

A port that several processes share with SO_REUSEPORT needs no pick: it is held from the
kernel's pick until they have bound it (`reserve_port`).
"""

from __future__ import annotations

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


def reserve_port(host: str) -> socket.socket:
    """Hold a port for processes that will bind it with SO_REUSEPORT (the EPP's workers): a
    socket bound to port 0 on `host` with SO_REUSEPORT, never listening. The kernel picks the port
    and nothing without SO_REUSEPORT (another server, an outgoing connection) can take it while
    the socket is open; connections only ever go to listening sockets, so close it once they
    serve. Its port: `.getsockname()[1]`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), 0))
    except OSError:
        sock.close()
        raise
    return sock
