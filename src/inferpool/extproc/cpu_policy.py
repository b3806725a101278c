"""The picker's Linux CPU scheduling policy: its threads do not preempt the proxy on waking.

Envoy relays every streamed chunk; the picker decides a request in bursts of a few hundred
microseconds. Where the two share a core, a picker thread that wakes under the default policy
(SCHED_OTHER) may take the core from Envoy at once, and chunks then wait behind the picker's
burst: measured with 128 paced streams, +2 to +5 ms at p99 over Envoy alone. Under SCHED_BATCH
the kernel does not preempt the running task for a waking picker thread: the picker runs when
the core is free or the running task's slice ends, and keeps its fair share of the core (its
weight is unchanged, unlike with `nice`). It also stops the picker's own threads preempting
each other, so each wake-up handles more messages: less CPU per request (docs/epp.md, "Sharing
a core with the proxy"). Setting it needs no privilege, and worker processes and threads started
afterwards inherit it.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

POLICIES = ("batch", "normal")


def apply_cpu_policy(policy: str) -> bool:
    """Put every thread of this process under `policy` ('batch' or 'normal'); threads and
    processes started later inherit it. False (and a warning) where the system refuses it."""
    if policy not in POLICIES:
        raise ValueError(f"unknown CPU policy {policy!r}; known: {', '.join(POLICIES)}")
    if not hasattr(os, "sched_setscheduler"):  # not Linux: nothing to set
        return False
    target = os.SCHED_BATCH if policy == "batch" else os.SCHED_OTHER
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # no /proc: the calling thread (the main one, before others start)
    for tid in threads:
        try:
            os.sched_setscheduler(tid, target, os.sched_param(0))
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except OSError as err:
            log.warning("could not set the %s CPU policy (%s); the picker keeps its present one", policy, err)
            return False
    return True
