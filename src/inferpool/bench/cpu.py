"""CPU sets for pinning benchmark processes, and the CPU time a process tree spent, from /proc.

The overhead bench puts the proxy on its own core(s) and the client and backends on others
(`taskset`, inherited by every thread and child), then charges the proxy the utime + stime
of every process in its session: Envoy and its picker, a gateway, a router and its helpers.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def parse_cpus(text: str) -> frozenset[int]:
    """'0', '0-3', '0,2,4-5' → CPU numbers (taskset's list syntax)."""
    cpus: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first, dash, last = part.partition("-")
        try:
            low, high = int(first), int(last) if dash else int(first)
        except ValueError:
            raise ValueError(f"{text!r} is no CPU list (e.g. 0 or 0-3 or 0,2)") from None
        if low < 0 or high < low:
            raise ValueError(f"{text!r} is no CPU list (e.g. 0 or 0-3 or 0,2)")
        cpus.update(range(low, high + 1))
    if not cpus:
        raise ValueError("an empty CPU list")
    return frozenset(cpus)


def cpu_list(cpus: frozenset[int]) -> str:
    """The set as taskset takes it: '0,1,3'."""
    return ",".join(str(c) for c in sorted(cpus))


def default_split(available: frozenset[int] | None = None) -> tuple[frozenset[int], frozenset[int]]:
    """Proxy on the first CPU this process may use, client and backends on the second (or the same
    one when there is only one)."""
    allowed = sorted(available if available is not None else os.sched_getaffinity(0))
    proxy = frozenset(allowed[:1])
    client = frozenset(allowed[1:2]) or proxy
    return proxy, client


def pinned(argv: list[str], cpus: frozenset[int]) -> list[str]:
    """`argv` run on `cpus` only (taskset execs, so the pid stays the command's own)."""
    return ["taskset", "-c", cpu_list(cpus), *argv]


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:  # the process is gone
        return None
    return text.rpartition(")")[2].split()


def session_members(session: int) -> list[int]:
    """Every live process whose session id is `session` (children started with start_new_session
    lead their own session, so this is the child and everything it started)."""
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and len(fields) > 3 and int(fields[3]) == session:
            members.append(int(entry.name))
    return members


def process_cpu_seconds(sessions: list[int]) -> dict[str, float]:
    """utime + stime per live process in these sessions, keyed "COMMAND PID"."""
    spent = {}
    for session in sessions:
        for pid in session_members(session):
            try:
                text = (PROC / str(pid) / "stat").read_text()
            except OSError:
                continue
            command = text[text.find("(") + 1 : text.rfind(")")]
            fields = text.rpartition(")")[2].split()
            if len(fields) > 12:
                spent[f"{command} {pid}"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return spent


def cpu_seconds(sessions: list[int]) -> float:
    """utime + stime of all live processes in these sessions, all threads included, in seconds."""
    ticks = 0
    for session in sessions:
        for pid in session_members(session):
            fields = _stat_fields(pid)
            if fields is not None and len(fields) > 12:
                ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")
