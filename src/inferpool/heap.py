"""The garbage collector in a long-running data plane.

CPython's oldest-generation collection walks every tracked object. After start-up a gateway or
picker holds ≈90,000 of them (aiohttp, grpc, pydantic models, protobuf descriptors, the
configuration) that will live as long as the process; one full pass over them took 16–22 ms
here, and under load one runs every few seconds, holding every stream's tokens that long. So
once started, the start-up heap is moved out of the collector's sight (`gc.freeze`): later
passes walk only what requests created since. Nothing is leaked by it: frozen objects are
still freed by reference counting when released, only cycles among them are not collected.

The built-in gateway also collects its young generation less often. With CPython's default
threshold (700 net new container objects) it ran a young collection every ≈16 requests under
closed-loop load (≈850 in a 6 s run of `inferpool bench overhead`'s closed test, ≈0.25 ms each,
≈25 µs of CPU per request), and found almost nothing: what it walked were the objects of the
requests in flight, which reference counting frees when they end. At 10,000 the same run made
one young collection (1–3 ms). The picker's gRPC objects are mostly not tracked by the
collector (≈55 young collections in its run, ≈7 µs per request), so it keeps the default and
its shorter pauses.
"""

from __future__ import annotations

import gc


def freeze_startup_heap(young_threshold: int | None = None) -> int:
    """Collect what start-up left behind, then freeze the rest; returns how many objects froze.
    `young_threshold`: collect the youngest generation after this many net new container
    objects instead of CPython's 700 (the older generations keep their thresholds)."""
    gc.collect()
    gc.freeze()
    if young_threshold is not None:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
    return gc.get_freeze_count()


# `inferpool serve`: see the module docstring
GATEWAY_YOUNG_THRESHOLD = 10_000
