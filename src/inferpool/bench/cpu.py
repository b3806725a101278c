"""CPU sets for pinning benchmark processes, and the CPU time a process tree spent, from /proc.

The overhead bench puts the proxy on its own core(s) and the client and backends on others
(`taskset`, inherited by every thread and child), then charges the proxy the utime + stime
of every process in its session: Envoy and its picker, a gateway, a router and its helpers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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


def niced(argv: list[str], nice: int) -> list[str]:
    """`argv` at scheduling niceness `nice` (`nice` execs, so the pid stays the command's own, and
    every thread the command starts inherits it). 0 leaves argv as it is."""
    return ["nice", "-n", str(nice), *argv] if nice else argv


def set_session_nice(pid: int, nice: int) -> bool:
    """Give the session that `pid` leads (its autogroup) the niceness `nice`; False where the
    kernel has no autogroups. With autogroups on (the default on most distributions), the
    scheduler first shares a core between sessions and only then between the processes of one, so
    a process's own niceness does not lower it against a process started in another session."""
    try:
        (PROC / str(pid) / "autogroup").write_text(str(nice))
    except OSError:
        return False
    return True


def autogroups_enabled() -> bool:
    try:
        return (PROC / "sys" / "kernel" / "sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def _stat(pid: int) -> tuple[str, list[str]] | None:
    """/proc/PID/stat as (command name, the fields after it); the name may hold spaces and
    parentheses, so it is cut at the first "(" and the last ")". None when the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    head, _, rest = text.rpartition(")")
    return head.partition("(")[2], rest.split()


def _cpu(fields: list[str]) -> float:
    """utime + stime (fields 14 and 15 of stat) in seconds; 0 for a short (zombie) line."""
    if len(fields) <= 12:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _members(sessions: list[int]) -> Iterator[tuple[str, int, list[str]]]:
    """("COMMAND PID", pid, stat fields) of every live process whose session id is one of
    `sessions`, in one pass over /proc (children started with start_new_session lead their own
    session, so a session is the child and everything it started)."""
    wanted = {str(session) for session in sessions}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None and len(stat[1]) > 3 and stat[1][3] in wanted:
            yield f"{stat[0]} {entry.name}", int(entry.name), stat[1]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far, all its threads (0 when it is gone)."""
    stat = _stat(pid)
    return 0.0 if stat is None else _cpu(stat[1])


def cpu_by_process(sessions: list[int]) -> dict[str, float]:
    """utime + stime of each live process in these sessions, in seconds, keyed "COMMAND PID"."""
    return {name: _cpu(fields) for name, _, fields in _members(sessions)}


def waits_by_process(sessions: list[int]) -> dict[str, tuple[float, int]]:
    """Each live process's time runnable but waiting for a CPU, in seconds, and how many times it
    was put on one, summed over its threads (/proc/PID/task/TID/schedstat), keyed as
    `cpu_by_process`. Where two processes share a core, the one that relays bytes waits behind
    the other: this is that wait. Empty where the kernel keeps no schedstat."""
    waits: dict[str, tuple[float, int]] = {}
    for name, pid, _ in _members(sessions):
        delay_ns = runs = 0
        try:
            threads = list((PROC / str(pid) / "task").iterdir())
        except OSError:  # the process ended meanwhile
            continue
        for thread in threads:
            try:
                fields = (thread / "schedstat").read_text().split()
                delay_ns += int(fields[1])
                runs += int(fields[2])
            except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
                continue
        waits[name] = (delay_ns / 1e9, runs)
    return waits


def cpu_seconds(sessions: list[int]) -> float:
    """utime + stime of all live processes in these sessions, all threads included, in seconds."""
    return sum(cpu_by_process(sessions).values())
