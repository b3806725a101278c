"""The picker's CPU policy: every thread under it, threads started later too, and back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inferpool.extproc.cpu_policy import apply_cpu_policy

# Run in a child: the policy is the whole process's, and pytest's must stay as it is.
CHILD = """
import os, threading
from inferpool.extproc.cpu_policy import apply_cpu_policy

def policies():
    return {os.sched_getscheduler(int(t)) for t in os.listdir("/proc/self/task")}

# from the default policy, whatever the parent runs under; daemon threads: a failed check ends the
# child at once instead of leaving it waiting on them
os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
started = threading.Event()
before = threading.Thread(target=started.wait, daemon=True)  # exists before the policy is set
before.start()
assert policies() == {os.SCHED_OTHER}, policies()
assert apply_cpu_policy("batch")
after = threading.Thread(target=started.wait, daemon=True)  # started after it: inherits it
after.start()
assert policies() == {os.SCHED_BATCH}, policies()
assert apply_cpu_policy("normal") and policies() == {os.SCHED_OTHER}
started.set()
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux scheduling policy")
def test_batch_covers_every_thread_and_those_started_later_and_normal_undoes_it() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_an_unknown_policy_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown CPU policy 'fifo'; known: batch, normal"):
        apply_cpu_policy("fifo")
